"""task=e2v composes, its components instantiate through the allow-list, and derived values stay consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from evframe.config import instantiate, register_resolvers
from evframe.config.prepare import ConfigError, validate_derived
from evframe.run import CONFIG_DIR


def _compose(tmp_path: Path, *overrides: str) -> DictConfig:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["task=e2v", "logger=none", *overrides])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.mark.parametrize("model", ["e2v_unet", "e2v_unet_mid"])
def test_components_build_from_config(tmp_path: Path, model: str) -> None:
    from evframe.tasks.e2v import EventToVideo, EventToVideoCallback, EventToVideoDataModule, EventToVideoLightningModel

    cfg = _compose(tmp_path, f"model={model}")
    OmegaConf.resolve(cfg)
    validate_derived(cfg)
    assert cfg.preprocess.channels == 5 and cfg.model.in_channels == 5 and cfg.optimized_metric == "val/ssim"
    module = instantiate(cfg.task.module)
    assert isinstance(module, EventToVideoLightningModel) and isinstance(module.model, EventToVideo)
    assert module.model.archi == ("mid_rnn" if model == "e2v_unet_mid" else "all_rnn")
    datamodule = instantiate(cfg.task.datamodule)
    assert isinstance(datamodule, EventToVideoDataModule)
    assert (datamodule.depth, datamodule.batch_times, datamodule.timing.num_bins) == (5, 8, 16)
    assert isinstance(instantiate(cfg.callbacks.e2v), EventToVideoCallback)


def test_inconsistent_or_unsupported_settings_fail_clearly(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "model.in_channels=3")
    OmegaConf.resolve(cfg)
    with pytest.raises(ConfigError, match="model.in_channels=3 but preprocess 'event_cube' produces 5"):
        validate_derived(cfg)
    # the task's event-volume options do not fit another preprocessing: the composed config says so at once
    with pytest.raises(Exception, match="preprocess 'histo' does not take the argument 'num_utbins'"):
        OmegaConf.resolve(_compose(tmp_path, "preprocess=histo"))
    from evframe.tasks.e2v import EventToVideoDataModule

    cfg = _compose(tmp_path)
    OmegaConf.resolve(cfg)
    with pytest.raises(ValueError, match="preprocess 'histo' is not supported"):
        EventToVideoDataModule(cfg.dataset, {**OmegaConf.to_container(cfg.preprocess), "name": "histo"})
    with pytest.raises(ValueError, match="task=e2v trains on clips simulated on the fly .* dataset 'raw_stream'"):
        EventToVideoDataModule({"name": "raw_stream", "paths": ["a.raw"]}, OmegaConf.to_container(cfg.preprocess))
    cfg = _compose(tmp_path, "loss.weights.perceptual=1.0")
    OmegaConf.resolve(cfg)
    with pytest.raises(Exception, match="needs loss.perceptual.weights_path"):  # hydra wraps the ValueError
        instantiate(cfg.loss)


def test_worker_loader_runs_after_the_main_process_rendered_clips(tmp_path: Path) -> None:
    """The callback renders validation clips in the main process (OpenCV's thread pool starts there); the next
    epoch's loader forks its worker afterwards and must still deliver (a forked OpenCV pool can deadlock)."""
    import threading

    cfg = _compose(tmp_path, "dataset.height=24", "dataset.width=32", "dataset.clips_per_epoch=4")
    OmegaConf.resolve(cfg)
    datamodule = instantiate(cfg.task.datamodule)
    next(iter(datamodule.clip_loader("val", num_workers=0)))
    result: dict = {}

    def first_batch() -> None:
        result["batch"] = next(iter(datamodule.clip_loader("train", num_workers=1)))

    worker = threading.Thread(target=first_batch, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert "batch" in result, "the clip loader's worker did not deliver within 60 s"
    assert result["batch"]["inputs"].shape == (8, 4, 5, 24, 32)


def test_ddp_ranks_train_on_clips_of_their_own_and_evaluate_on_the_same_ones(tmp_path: Path) -> None:
    from types import SimpleNamespace

    cfg = _compose(tmp_path, "dataset.height=24", "dataset.width=32", "dataset.clips_per_epoch=4",
                   "dataset.val_clips=4")
    OmegaConf.resolve(cfg)
    batches = {}
    for rank in (0, 1):
        datamodule = instantiate(cfg.task.datamodule)
        datamodule.trainer = SimpleNamespace(global_rank=rank, current_epoch=0,
                                             strategy=SimpleNamespace(root_device=torch.device("cpu")))
        batches[rank] = {split: next(iter(datamodule.clip_loader(split, num_workers=0)))["images"]
                         for split in ("train", "val")}
    assert not torch.equal(batches[0]["train"], batches[1]["train"])
    assert torch.equal(batches[0]["val"], batches[1]["val"])
