"""Checkpoints that are safe to write, to find and to load.

- :class:`AtomicCheckpointIO`: Lightning ``CheckpointIO`` plugin that writes every checkpoint to a temporary file in
  the same folder, fsyncs it and renames it over the target (``os.replace``), so a reader (or a resumed run) never
  sees a half-written ``last.ckpt``, even if the process is killed mid-write. Loading defaults to
  ``weights_only=True``.
- :class:`InterruptCheckpoint`: saves ``checkpoints/interrupted.ckpt`` when SIGTERM, Ctrl+C or a scheduler's
  requeue signal (submitit's USR2 before a SLURM time limit) stops training.
- :class:`RunMetadata`: callback storing the run's resolved config, its W&B run id and the RNG states in every
  checkpoint (all plain values and tensors, so they load with ``weights_only=True``).
- :func:`resolve_ckpt_path`: ``ckpt_path=last`` -> the newest checkpoint of this run directory (a requeued job) or of
  the latest run of the same experiment directory; any other value must be an existing file.
- :func:`read_checkpoint` / :func:`checkpoint_for` / :func:`check_checkpoint_matches`: load without unpickling
  arbitrary objects, refuse a file that cannot serve the run (not a torch file, truncated, no ``state_dict``, no
  training state to resume) and a checkpoint of another task or model, with a message naming the file and what is
  wrong.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: key of evframe's entry in a Lightning checkpoint dict
METADATA_KEY = "evframe"
#: config keys that must be equal for a checkpoint to be loaded into a run (a different task or network)
IDENTITY_KEYS: tuple[str, ...] = ("task.name", "task.module._target_", "model", "preprocess.name", "preprocess.kwargs")
#: file names a run directory's ``checkpoints/`` may hold that ``ckpt_path=last`` considers (besides ``hpc_ckpt_*``
#: that Lightning writes in the run directory itself on SLURM's requeue signal)
RESUMABLE_NAMES: tuple[str, ...] = ("last.ckpt", "interrupted.ckpt")

# os.umask can only be read by setting it; done once at import, before any thread writes files
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, unreadable, unsafe to unpickle, or from another task/model."""


# ------------------------------------------------------------------------------------------------------ writing
def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the directory entry is on disk (POSIX); not possible on every platform
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: a temporary file in the same folder (same file system, so the
    rename is atomic), flushed and fsynced, then ``os.replace``-d over ``path``. On any failure the temporary file is
    removed and ``path`` keeps its previous content. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic, durable local writes and ``weights_only=True`` loading.

    Lightning's own writer goes through an fsspec transaction whose temporary file lives in the system temp folder,
    so on another file system the final move is a copy that a kill can cut short, and nothing is fsynced. Remote
    paths (``s3://``...) keep Lightning's behaviour.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location, weights_only=True if weights_only is None else weights_only)


# ------------------------------------------------------------------------------------------------------ metadata
def _rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }


def _set_rng_states(states: Mapping[str, Any]) -> None:
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        s = states["numpy"]
        np.random.set_state((s["name"], s["key"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                             s["cached_gaussian"]))
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))


def wandb_run_id(loggers: Iterable[Any]) -> str | None:
    """The id of the first W&B logger's run (None without one)."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            version = logger.version
            return None if version is None else str(version)
    return None


class BestModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose best score survives a resume into another run directory.

    Lightning keeps ``best_model_score`` and the top-k bookkeeping only when the resumed run writes to the same
    directory. A run started with ``ckpt_path=<another run's checkpoint>`` would then call its first epoch the best
    and test that, even when an epoch before the interruption scored better. This subclass restores the best
    score, path and top-k entries whatever the directory, keeping only the checkpoint files that still exist
    (Lightning never deletes files outside the current directory, so the earlier best stays where it was).
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            return
        kept = {path: score for path, score in (state_dict.get("best_k_models") or {}).items()
                if Path(path).exists()}
        best_path = state_dict.get("best_model_path") or ""
        if not best_path or not Path(best_path).exists():
            return  # the earlier best file is gone: nothing to test later, start the ranking afresh
        self.best_model_path = best_path
        self.best_model_score = state_dict.get("best_model_score")
        self.best_k_models = kept
        self.kth_best_model_path = state_dict.get("kth_best_model_path", "") if kept else ""
        if kept:
            self.kth_value = state_dict.get("kth_value", self.kth_value)


class RunMetadata(L.Callback):
    """Stores ``checkpoint["evframe"] = {"config", "wandb_run_id", "rng"}`` in every checkpoint and, when training
    resumes from one, restores the RNG states (so a resumed run draws what the uninterrupted run would have).

    The runner hands the resolved config over with :meth:`set_config` (a callback built from config cannot
    reference the whole config itself).
    """

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None

    def set_config(self, config: Mapping[str, Any]) -> None:
        """The run's resolved config as plain values (``OmegaConf.to_container(cfg, resolve=True)``)."""
        self.config = dict(config)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[METADATA_KEY] = {"config": self.config, "wandb_run_id": wandb_run_id(trainer.loggers),
                                    "rng": _rng_states()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        meta = checkpoint.get(METADATA_KEY) or {}
        if trainer.state.fn == "fit" and meta.get("rng"):
            _set_rng_states(meta["rng"])


class InterruptCheckpoint(Checkpoint):
    """Saves ``<dirpath>/<filename>.ckpt`` when training is interrupted: SIGTERM (Lightning turns it into
    ``SIGTERMException`` after the current batch, on every rank at the same step), Ctrl+C, or a scheduler's requeue
    signal. An ordinary error does not save: its state may be half-updated, and under DDP a save after an error seen
    by one rank only would wait forever for the others. The file is removed when a fit ends normally.

    The requeue signal: submitit (``hydra/launcher=slurm``) asks SLURM for ``requeue_signal`` (USR2) some time
    before the job's limit, and handles it by requeueing the job and exiting at once, which would lose the epoch
    in progress. When a handler is installed for that signal at the start of a fit, it is wrapped: the signal stops
    training the way SIGTERM does (after the current batch, all ranks together), the checkpoint is saved, and only
    then is the scheduler's handler called to requeue and exit. The requeued job runs in the same directory and
    resumes from the checkpoint. Without such a handler (a plain run) the signal is left alone.

    Like Lightning's ``OnExceptionCheckpoint``, but not one: Lightning makes every ``fit()`` of a trainer that has an
    ``OnExceptionCheckpoint`` look for a checkpoint to resume, while evframe's runner chooses it itself.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike, filename: str = "interrupted",
                 requeue_signal: str | None = "SIGUSR2") -> None:
        super().__init__()
        if not filename:
            raise ValueError("InterruptCheckpoint: filename cannot be empty")
        self.dirpath = str(dirpath)
        self.filename = filename
        self.requeue_signal = _signal_number(requeue_signal) if requeue_signal else None
        self._scheduler_handler: Any = None  # the handler the wrapper defers to
        self._requeue_pending = False
        self._fitting = False

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.requeue_signal is None or threading.current_thread() is not threading.main_thread():
            return
        self._fitting, self._requeue_pending = True, False
        current = signal.getsignal(self.requeue_signal)
        if current is self._on_requeue_signal or not callable(current):
            return  # already wrapped (a second fit), or nobody handles the signal: nothing to defer to
        self._scheduler_handler = current
        signal.signal(self.requeue_signal, self._on_requeue_signal)

    def _on_requeue_signal(self, signum: int, frame: Any) -> None:
        if not self._fitting:  # outside training (testing, after the fit): the scheduler's handler does its job
            self._scheduler_handler(signum, frame)
            return
        self._requeue_pending = True
        # Lightning's own graceful stop: every rank leaves after the same batch with SIGTERMException
        signal.raise_signal(signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._fitting = False
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.ckpt_path)
        if self._requeue_pending and self._scheduler_handler is not None:
            self._requeue_pending = False
            self._scheduler_handler(self.requeue_signal, None)  # submitit: requeues the job, then exits (rank 0)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # reached only when fit ends normally (not after an exception)
            self._fitting = False
            trainer.strategy.remove_checkpoint(self.ckpt_path)


def _signal_number(name: str) -> int:
    key = str(name).upper()
    key = key if key.startswith("SIG") else f"SIG{key}"
    number = getattr(signal, key, None)
    if not isinstance(number, int):
        raise ValueError(f"InterruptCheckpoint: requeue_signal '{name}' is not a signal of this platform")
    return int(number)


# ------------------------------------------------------------------------------------------------------ finding
def _resumable_in(run_dir: Path) -> list[Path]:
    found = [run_dir / "checkpoints" / name for name in RESUMABLE_NAMES]
    found += list(run_dir.glob("hpc_ckpt_*.ckpt"))
    return [p for p in found if p.is_file()]


def newest(paths: Iterable[Path]) -> Path | None:
    """The most recently modified of ``paths`` (None if empty)."""
    paths = list(paths)
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def find_resumable(run_dir: str | os.PathLike) -> Path | None:
    """The newest of ``last.ckpt``, ``interrupted.ckpt`` (saved on SIGTERM) and Lightning's ``hpc_ckpt_*.ckpt`` in
    one run directory, or None."""
    return newest(_resumable_in(Path(run_dir)))


def resolve_ckpt_path(ckpt_path: str | os.PathLike | None, output_dir: str | os.PathLike) -> Path | None:
    """Turns the config's ``ckpt_path`` into a file.

    ``None`` -> None. ``"last"`` -> the newest resumable checkpoint of ``output_dir`` itself (a requeued job runs in
    the same directory), else of the most recent sibling run directory that has one (the latest run of the same
    experiment directory, ``outputs/<task>/runs``). Anything else must be an existing file.

    Raises:
        CheckpointError: no checkpoint to resume / no such file.
    """
    if ckpt_path is None or str(ckpt_path) == "":
        return None
    output_dir = Path(output_dir)
    if str(ckpt_path) == "last":
        own = find_resumable(output_dir)
        if own is not None:
            return own
        experiment_dir = output_dir.parent
        siblings = [d for d in experiment_dir.iterdir() if d.is_dir() and d != output_dir] \
            if experiment_dir.is_dir() else []
        candidates = [c for d in siblings if (c := find_resumable(d)) is not None]
        found = newest(candidates)
        if found is None:
            raise CheckpointError(f"ckpt_path=last: no {' / '.join(RESUMABLE_NAMES)} in any run directory under "
                                  f"{experiment_dir} (nor hpc_ckpt_*.ckpt); give ckpt_path=<file> instead")
        return found
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"ckpt_path: '{path}' is a directory; give a checkpoint file (e.g. "
                              f"{path / 'checkpoints' / 'last.ckpt'}) or ckpt_path=last")
    if not path.is_file():
        raise CheckpointError(f"ckpt_path: checkpoint file '{path}' does not exist")
    return path.resolve()


# ------------------------------------------------------------------------------------------------------ loading
#: what each use of a checkpoint needs besides a ``state_dict`` of tensors: Lightning's loader reads its version
#: (test, resume), and resuming a fit restores the loops, the optimizers and the schedulers
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "weights": (),
    "test": ("pytorch-lightning_version",),
    "resume": ("pytorch-lightning_version", "epoch", "global_step", "loops", "optimizer_states", "lr_schedulers"),
}
#: the checkpoint use of each run mode
MODE_PURPOSE: dict[str, str] = {"train": "resume", "test": "test", "predict": "weights", "export": "weights"}
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_PICKLE_PROTOCOL = 0x80  # the first byte of a pickle (protocol >= 2): torch's format before zip archives


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint dict with ``weights_only=True`` (tensors and plain values only; nothing else is unpickled)
    and, for torch's zip format, memory-mapped, so reading its metadata is cheap.

    Raises:
        CheckpointError: naming the file: missing, a directory, empty, not a torch file, truncated/corrupt, holding
            objects that would need arbitrary unpickling (naming the refused global), or not a dict.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint '{path}' is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err})") from err
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a torch checkpoint")
    is_zip = head.startswith(_ZIP_MAGIC)
    if not is_zip and head[0] != _PICKLE_PROTOCOL:
        raise CheckpointError(f"{path}: not a torch checkpoint (torch.save writes a zip archive; this file starts "
                              f"with {head!r})")
    try:
        # mmap needs the zip format; the older pickle format is read whole
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(str(err))
        if "GLOBAL" not in reason:  # not a refused class or function: a pickle torch's format does not know
            raise CheckpointError(f"{path}: not a readable torch checkpoint (torch says: {reason})") from err
        refused = reason.split(" Please use", 1)[0]  # torch's advice to allow the global is not evframe's
        raise CheckpointError(
            f"{path}: refused to load: the checkpoint holds objects other than tensors and plain values, and "
            f"evframe never unpickles arbitrary objects (weights_only=True). torch says: {refused}") from err
    except Exception as err:  # a damaged file makes torch's readers fail in many ways (zip, pickle, storage sizes)
        hint = " (the zip archive is incomplete: a truncated or damaged file)" if "central directory" in str(err) \
            else ""
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable torch checkpoint{hint} ({type(err).__name__}: "
                              f"{first_line})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: a checkpoint must hold a dict, found {type(state).__name__}")
    return state


def _unpickler_reason(text: str) -> str:
    """The useful part of torch's weights-only refusal: the line after ``WeightsUnpickler error:`` (the refused
    global, or the pickle instruction it does not know), else the first line."""
    lines = [line.strip() for line in text.strip().splitlines()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or next((follow for follow in lines[i + 1:] if follow), line)
    return lines[0] if lines else "no message"


#: the suffix of the entries a module's ``get_extra_state`` adds to its state dict (plain values, not tensors)
EXTRA_STATE_SUFFIX = "_extra_state"


def _not_weights(weights: Mapping[Any, Any]) -> list[str]:
    """The entries of a state dict that are neither a tensor under a name nor a module's extra state."""
    return [f"{k!r} ({type(v).__name__})" for k, v in weights.items()
            if not isinstance(k, str) or not (isinstance(v, torch.Tensor) or k.endswith(EXTRA_STATE_SUFFIX))]


def _is_bare_state_dict(state: Mapping[str, Any]) -> bool:
    """A file written by ``torch.save(model.state_dict())``: parameter names to tensors (and extra states)."""
    return any(isinstance(v, torch.Tensor) for v in state.values()) and not _not_weights(state)


def checkpoint_weights(state: Mapping[str, Any], path: str | os.PathLike, allow_bare: bool = False) -> dict:
    """The ``state_dict`` of a loaded checkpoint, checked to map parameter names to tensors (a module's
    ``get_extra_state`` entries, ``<prefix>_extra_state``, may hold plain values).

    Args:
        state: the checkpoint dict (:func:`read_checkpoint`).
        allow_bare: accept a file that is itself a state dict (``torch.save(model.state_dict())``).
    Raises:
        CheckpointError: no ``state_dict`` (listing the keys found), or one that is not a mapping of tensors.
    """
    if "state_dict" not in state:
        if allow_bare and _is_bare_state_dict(state):
            return dict(state)
        keys = ", ".join(sorted(map(str, state))[:12]) or "none"
        raise CheckpointError(f"{path}: no 'state_dict' in the checkpoint (its keys: {keys}); expected a Lightning "
                              "checkpoint (ModelCheckpoint's .ckpt files)")
    weights = state["state_dict"]
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(weights).__name__}, expected a mapping of parameter "
                              "names to tensors")
    bad = _not_weights(weights)
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(f"{path}: 'state_dict' must map parameter names to tensors; not a tensor: "
                              f"{', '.join(bad[:5])}{more}")
    return dict(weights)


def checkpoint_for(path: str | os.PathLike, purpose: str) -> dict[str, Any]:
    """Reads ``path`` and checks that it can serve ``purpose``; returns the checkpoint dict.

    Args:
        purpose: ``"weights"`` (predict, export: a ``state_dict``, or a bare state dict file), ``"test"`` (a
            Lightning checkpoint: ``state_dict`` and Lightning's version) or ``"resume"`` (also the training state:
            epoch, step, loops, optimizer and scheduler states), see :data:`REQUIRED_KEYS` and :data:`MODE_PURPOSE`.
    Raises:
        CheckpointError: naming the file and what is missing or wrong.
    """
    if purpose not in REQUIRED_KEYS:
        raise ValueError(f"checkpoint purpose '{purpose}' is not one of {sorted(REQUIRED_KEYS)}")
    state = read_checkpoint(path)
    checkpoint_weights(state, path, allow_bare=purpose == "weights")
    missing = [key for key in REQUIRED_KEYS[purpose] if key not in state]
    if missing:
        use = {"test": "testing", "resume": "resuming training"}[purpose]
        saved_weights_only = "; ModelCheckpoint(save_weights_only=True) writes such files" \
            if purpose == "resume" and "optimizer_states" in missing else ""
        raise CheckpointError(f"{path}: {use} needs {', '.join(repr(k) for k in missing)} in the checkpoint, which "
                              f"holds only {', '.join(sorted(map(str, state)))}{saved_weights_only}")
    return state


def _select(config: Mapping[str, Any] | None, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def config_differences(saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                       keys: Sequence[str] = IDENTITY_KEYS) -> list[str]:
    """``"key: checkpoint <a>, config <b>"`` for every leaf under ``keys`` that differs (sorted by key)."""
    diffs = []
    for key in keys:
        a, b = _flatten(_select(saved, key), key), _flatten(_select(current, key), key)
        for leaf in sorted(set(a) | set(b)):
            va, vb = a.get(leaf, _ABSENT), b.get(leaf, _ABSENT)
            if va != vb:
                diffs.append(f"{leaf}: checkpoint {va!r}, config {vb!r}")
    return diffs


def weight_differences(weights: Mapping[str, Any], module: torch.nn.Module, limit: int = 8) -> list[str]:
    """Missing, unexpected and differently shaped parameters/buffers of ``weights`` against ``module``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(expected[k].shape)}" for k in expected
              if k in weights and hasattr(weights[k], "shape") and tuple(weights[k].shape) != tuple(expected[k].shape)]
    out = []
    for title, items in (("missing in the checkpoint", missing), ("not in the model", unexpected),
                         ("shape differs", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            out.append(f"{title}: {', '.join(items[:limit])}{more}")
    return out


def check_checkpoint_matches(checkpoint: Mapping[str, Any], path: str | os.PathLike, config: Mapping[str, Any],
                             module: torch.nn.Module | None = None) -> None:
    """Refuses a checkpoint of another task or model before Lightning tries to load it.

    With evframe metadata the saved config is compared on :data:`IDENTITY_KEYS`; without it (a checkpoint written
    elsewhere) the weights are compared with ``module``'s (names and shapes).

    Raises:
        CheckpointError: listing every difference.
    """
    meta = checkpoint.get(METADATA_KEY) or {}
    saved = meta.get("config")
    if saved is not None:
        diffs = config_differences(saved, config)
        if diffs:
            raise CheckpointError(f"{path} was trained with another task or model than this run's config:\n  "
                                  + "\n  ".join(diffs))
    if module is not None and "state_dict" in checkpoint:
        diffs = weight_differences(checkpoint_weights(checkpoint, path), module)
        if diffs:
            raise CheckpointError(f"{path}: its weights do not fit {type(module).__name__}:\n  " + "\n  ".join(diffs))


def load_module_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Loads the ``state_dict`` of a Lightning checkpoint (or a file that is a bare state dict) into ``module``
    (``weights_only=True``: tensors only).

    Raises:
        CheckpointError: no such checkpoint, unsafe content, no ``state_dict``, or weights that do not match
            ``module`` (listing the missing, unexpected and differently shaped entries).
    """
    weights = checkpoint_weights(read_checkpoint(path), path, allow_bare=True)
    diffs = weight_differences(weights, module)
    if diffs:
        raise CheckpointError(f"{path}: its weights do not fit {type(module).__name__}:\n  " + "\n  ".join(diffs))
    module.load_state_dict(weights, strict=True)
