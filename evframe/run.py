"""Entry point: ``python -m evframe.run task=flow model=midinet2 [key=value ...]`` (``--multirun`` sweeps).

The config tree ships inside the package (``evframe/conf``), so this works from any directory once installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from evframe.config import guard_hydra, register_resolvers
from evframe.utils.distributed import sweep_job_argv

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

# resolvers must exist before Hydra composes (the run directory name uses one)
register_resolvers()
# Hydra calls what `hydra.callbacks` and its logging configs name before main() runs: checked against the
# allow-list first
guard_hydra()
# a DDP rank process of a sweep job runs that job only (see evframe.utils.distributed.announce_sweep_job)
sys.argv = sweep_job_argv(sys.argv)
# Every evframe process owns its W&B service. One started by a process that already uses W&B (a test harness, a
# notebook, a scheduler script) inherits WANDB_SERVICE and would log through the parent's service: a run killed
# there (SIGKILL) leaves its stream open, and the resumed run is refused with "run ID ... is in use".
os.environ.pop("WANDB_SERVICE", None)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Runs one job; the returned validation metric is what sweepers (grid, Optuna) optimise."""
    from evframe.runner import run

    return run(cfg)


if __name__ == "__main__":
    main()
