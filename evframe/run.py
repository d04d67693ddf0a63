"""Entry point: ``python -m evframe.run task=flow model=midinet2 [key=value ...]`` (``--multirun`` sweeps).

The config tree ships inside the package (``evframe/conf``), so this works from any directory once installed.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from evframe.config import register_resolvers

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

# resolvers must exist before Hydra composes (the run directory name uses one)
register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Runs one job; the returned validation metric is what sweepers (grid, Optuna) optimise."""
    from evframe.runner import run

    return run(cfg)


if __name__ == "__main__":
    main()
