"""The detection config group: task=detection composes with each model, derived values follow the preprocess, and
every component is built through the allow-listed instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from evframe.config import instantiate, register_resolvers
from evframe.config.prepare import ConfigError, prepare_config
from evframe.run import CONFIG_DIR
from evframe.tasks.detection import DetectionCallback, DetectionDataModule, DetectionLightningModule


def composed(tmp_path: Path, *overrides: str) -> DictConfig:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["task=detection", "logger=none", *overrides])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.data_dir = str(tmp_path / "datasets")  # nothing generated: classes come from the preset
        cfg.paths.output_dir = str(tmp_path / "run")
    return prepare_config(cfg)


@pytest.mark.parametrize("model,extractor,cell", [("vanilla", "Vanilla", "lstm"),
                                                  ("vanilla_vgg", "Vanilla_VGG", "lstm"),
                                                  ("vanilla_vggru", "Vanilla_VGGRU", "gru")])
def test_task_detection_builds_each_model(tmp_path: Path, model: str, extractor: str, cell: str) -> None:
    cfg = composed(tmp_path, f"model={model}")
    assert cfg.optimized_metric == "val/mAP" and cfg.optimized_metric_mode == "max"
    module = instantiate(cfg.task.module)
    assert isinstance(module, DetectionLightningModule)
    assert type(module.model.feature_extractor).__name__ == extractor
    assert module.model.feature_extractor.levels[0].cell == cell
    assert module.classes == ["car", "pedestrian", "two_wheeler"] and module.model.num_classes == 3
    assert module.model.in_channels == 2  # histo
    assert isinstance(instantiate(cfg.task.datamodule), DetectionDataModule)
    assert any(isinstance(instantiate(node), DetectionCallback) for node in cfg.callbacks.values())


def test_derived_values_follow_the_preprocess(tmp_path: Path) -> None:
    cfg = composed(tmp_path, "preprocess=event_cube", "preprocess.downsample=0")
    assert cfg.model.in_channels == 6
    assert cfg.model.base_size == 32  # 32 sensor pixels at full resolution, 16 network pixels at half
    assert composed(tmp_path, "preprocess.downsample=1").model.base_size == 16
    with pytest.raises(ConfigError, match="model.in_channels=3"):
        composed(tmp_path, "model.in_channels=3")


def test_mode_export_is_a_known_mode(tmp_path: Path) -> None:
    cfg = composed(tmp_path, "mode=export")
    assert cfg.task.export._target_.endswith("export_lightning_model")
