"""The runner's lifecycle guarantees, in process: W&B is always finished, bad modes fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import evframe.runner as runner
from evframe.config.prepare import ConfigError


def test_wandb_is_finished_when_the_run_fails(compose_cfg, monkeypatch, tmp_path: Path) -> None:
    import wandb

    def failing_train(cfg):
        wandb.init(mode="offline", dir=str(tmp_path), project="evframe-test")
        wandb.log({"x": 1.0})
        raise RuntimeError("boom in the middle of training")

    monkeypatch.setattr(runner, "train", failing_train)
    cfg = compose_cfg(["smoke=true", "logger=csv"])
    with pytest.raises(RuntimeError, match="boom"):
        runner.run(cfg)
    assert wandb.run is None  # finish() ran
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert any(offline.glob("*.wandb"))
    assert (Path(cfg.paths.output_dir) / "config.yaml").is_file()  # the config was saved before the failure


def test_unknown_mode_fails_before_anything_runs(compose_cfg) -> None:
    with pytest.raises(ConfigError, match="mode=fit is not one of"):
        runner.run(compose_cfg(["smoke=true", "mode=fit"]))


def test_mode_test_without_checkpoint_is_a_clear_error(compose_cfg) -> None:
    with pytest.raises(ConfigError, match="ckpt_path"):
        runner.test(compose_cfg(["smoke=true", "mode=test"]))
