"""Which process of a distributed run this is, known before Lightning's Trainer exists.

Lightning's DDP launcher starts ranks 1.. as new processes of the same command with ``LOCAL_RANK`` (and
``NODE_RANK``) set; SLURM (srun, submitit) starts every rank itself with ``SLURM_PROCID``. The config and the
entrypoint need the answer earlier than the Trainer gives it (run directory files, log file), so it is read from the
environment the same way Lightning does.
"""

from __future__ import annotations

import os

#: environment variables that carry a process's rank, in the order Lightning reads them
_RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """The process's rank from the environment (0 when none is set, as for a plain single-process run).

    The first of ``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK`` that is set gives it; a local rank
    0 on a node whose ``NODE_RANK`` is not 0 counts as 1 (not the global rank 0; the exact number is not needed).
    """
    for key in _RANK_KEYS:
        value = os.environ.get(key)
        if value not in (None, ""):
            rank = int(value)
            if rank == 0 and int(os.environ.get("NODE_RANK", "0") or 0) > 0:
                return 1  # local rank 0 of another node: not the global rank 0 (the exact number is not needed)
            return rank
    return 0


def is_primary_process() -> bool:
    """True on global rank 0, the only process that writes configs, logs, videos and checkpoints."""
    return process_rank() == 0


# ------------------------------------------------------------------------------------------- DDP inside a sweep
#: environment variable through which a sweep job's rank-0 process tells the rank processes Lightning starts for it
#: which job they belong to (``{"overrides": [...], "run_dir": "..."}``)
SWEEP_JOB_ENV = "EVFRAME_SWEEP_JOB"


def announce_sweep_job(run_dir: str | os.PathLike) -> None:
    """Called by rank 0 before training: inside a Hydra multirun, records this job's overrides and directory in
    the environment, which Lightning's DDP launcher copies to the rank processes it starts.

    Lightning starts them by running the original command line again with ``hydra.run.dir`` added: for a sweep
    that command is the whole ``--multirun`` (every job, in new sweep directories). :func:`sweep_job_argv` turns it
    back into this one job, run in this job's directory.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        os.environ.pop(SWEEP_JOB_ENV, None)
        return
    import json

    overrides = list(HydraConfig.get().overrides.task)
    os.environ[SWEEP_JOB_ENV] = json.dumps({"overrides": overrides, "run_dir": str(run_dir)})


def sweep_job_argv(argv: list[str]) -> list[str]:
    """The command line a DDP rank process (``LOCAL_RANK`` > 0) of a sweep job must run: the job's own overrides
    in its run directory, not the sweep. Any other process gets ``argv`` unchanged."""
    job = os.environ.get(SWEEP_JOB_ENV)
    if not job or os.environ.get("LOCAL_RANK", "0") in ("", "0"):
        return argv
    import json

    spec = json.loads(job)
    return [argv[0], *spec["overrides"], f'hydra.run.dir="{spec["run_dir"]}"', "hydra.output_subdir=null",
            f"hydra.job.name=train_ddp_process_{os.environ['LOCAL_RANK']}"]
