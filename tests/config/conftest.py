from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from evframe.config import register_resolvers
from evframe.run import CONFIG_DIR


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_cfg(overrides) -> the composed config, with hydra-only values filled as a run would."""
    register_resolvers()

    def _compose(overrides: list[str] | None = None, config_dir: str = CONFIG_DIR) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides or []), return_hydra_config=False)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            for name in list(cfg.get("logger") or {}):
                if "name" in cfg.logger[name] and "override_dirname" in str(cfg.logger[name]._get_node("name")):
                    cfg.logger[name].name = "test"
        GlobalHydra.instance().clear()
        return cfg

    return _compose
