"""OmegaConf resolvers that derive values from other config entries, so nothing is typed twice.

``${ev.channels:${preprocess.name},${preprocess.kwargs}}``   channels produced by a preprocess function
``${ev.downsampled:${dataset.height},${preprocess.downsample}}``  size after ``>> downsample``
``${ev.micro_bin_channels:name,channels,kwargs}``              channels per micro time bin (flow loss)
``${ev.pick:${smoke},tiny,default}``                        first value if the condition holds, else second
``${ev.synthetic_size:${dataset.preset},height}``             sensor size of a synthetic dataset preset
``${ev.pid:}``                                                 process id (keeps run directories unique)
``${ev.wandb_offline:}``                                       True unless WANDB_MODE=online
``${ev.run_stamp:}``                          run directory name: time + pid, or the SLURM job and step of an srun
``${ev.root_dir:}``                           ``$EVFRAME_ROOT`` if set, else the directory the command was started from
``${ev.rank_zero:a,b}``                       ``a`` in the global rank-0 process, ``b`` in the others (DDP)
``${ev.slurm_per_node:${trainer.devices},${trainer.accelerator},gpus}``  SLURM tasks / GPUs per node of a trainer
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _channels(name: str, kwargs: DictConfig | dict | None = None) -> int:
    # imported lazily: composing a config must not pay for numba/torch imports until a value is needed
    from evframe.preprocess import num_channels

    plain: dict[str, Any] = {}
    if kwargs is not None:
        plain = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs)
    return int(num_channels(str(name), **plain))


def _micro_bin_channels(name: str, channels: int, kwargs: DictConfig | dict | None = None) -> int:
    from evframe.tasks.flow.losses import channels_per_micro_bin_for

    split = True if kwargs is None else bool(kwargs.get("split_polarity", True))
    return int(channels_per_micro_bin_for(str(name), int(channels), split))


def _downsampled(size: int | None, downsample: int) -> int | None:
    if size is None:
        return None
    return int(size) >> int(downsample)


def _pick(condition: Any, if_true: Any, if_false: Any) -> Any:
    return if_true if _truthy(condition) else if_false


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _synthetic_size(preset: str, which: str) -> int:
    from evframe.data.synthetic import get_config

    return int(getattr(get_config(str(preset)), str(which)))


def _wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE", "offline").lower() != "online"


def _run_stamp() -> str:
    # every task of one srun step (the ranks of a multi-node DDP job) must agree on the run directory, and a
    # requeued job (same job and step ids) lands in the directory it left, where it resumes
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if job and step and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return f"slurm{job}_step{step}"
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}_p{os.getpid()}"


def _root_dir() -> str:
    # Hydra's ${hydra:runtime.cwd} does not exist yet when a sweeper builds the sweep directory, and OmegaConf's
    # oc.env resolves its fallback argument eagerly: the working directory is read here instead. Cached, so every
    # job of a sweep (also those run by joblib or SLURM in other processes) agrees with the process that composed it.
    root = os.environ.get("EVFRAME_ROOT")
    return os.path.abspath(root) if root else os.getcwd()


def _rank_zero(if_primary: Any, otherwise: Any) -> Any:
    from evframe.utils.distributed import is_primary_process

    return if_primary if is_primary_process() else otherwise


def _slurm_per_node(devices: Any, accelerator: Any, what: str) -> int:
    # SLURM starts the ranks (one task per device) and must be told how many: Lightning's "auto" cannot be counted
    # before the job lands on a node
    try:
        count = int(devices)
    except (TypeError, ValueError):
        raise ValueError(f"hydra/launcher=slurm needs trainer.devices as a number of devices per node (one SLURM "
                         f"task each), got '{devices}': set e.g. trainer.devices=4") from None
    if what == "tasks":
        return count
    if what == "gpus":
        return count if str(accelerator) in ("gpu", "cuda", "auto") else 0
    raise ValueError(f"ev.slurm_per_node: unknown quantity '{what}' (tasks or gpus)")


def register_resolvers() -> None:
    """Registers evframe's resolvers once per process (safe to call repeatedly)."""
    resolvers = {
        "ev.channels": _channels,
        "ev.downsampled": _downsampled,
        "ev.micro_bin_channels": _micro_bin_channels,
        "ev.pid": lambda: os.getpid(),
        "ev.pick": _pick,
        "ev.synthetic_size": _synthetic_size,
        "ev.wandb_offline": _wandb_offline,
        "ev.slurm_per_node": _slurm_per_node,
        # not cached: a config copied to another rank's process must answer for that process
        "ev.rank_zero": _rank_zero,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    # cached: a value computed once per config, and carried with it (Hydra copies the cache into every sweep job,
    # also those run by joblib or SLURM in other processes, so all agree on one sweep directory)
    if not OmegaConf.has_resolver("ev.run_stamp"):
        OmegaConf.register_new_resolver("ev.run_stamp", _run_stamp, use_cache=True)
    if not OmegaConf.has_resolver("ev.root_dir"):
        OmegaConf.register_new_resolver("ev.root_dir", _root_dir, use_cache=True)
