"""The config tree: every group composes, tasks choose their components, derived values cannot be forced wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from evframe.config import DisallowedTargetError
from evframe.config.prepare import ConfigError, prepare_config
from evframe.run import CONFIG_DIR

GROUPS = ["task", "model", "dataset", "preprocess", "loss", "trainer", "logger", "callbacks", "experiment",
          "hparams_search", "debug", "paths", "hydra"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_documented_group_exists() -> None:
    for group in GROUPS:
        assert (Path(CONFIG_DIR) / group).is_dir(), group


def _task_of_model(compose_cfg, model: str) -> str:
    """The task a model belongs to, read from its composed ``_target_`` (``evframe.tasks.<task>.``...)."""
    parts = str(compose_cfg([f"model={model}"]).model._target_).split(".")
    return parts[2] if parts[:2] == ["evframe", "tasks"] else "flow"


@pytest.mark.parametrize("model", _options("model"))
def test_every_model_composes_and_resolves_with_its_task(compose_cfg, model: str) -> None:
    task = _task_of_model(compose_cfg, model)
    cfg = prepare_config(compose_cfg([f"task={task}", f"model={model}", "smoke=true"]))
    # the input channels are derived from the task's preprocess, never typed in the model file
    channel_keys = [k for k in ("n_input_channels", "in_channels") if k in cfg.model]
    assert channel_keys, f"model {model} declares neither n_input_channels nor in_channels"
    assert cfg.model[channel_keys[0]] == cfg.preprocess.channels
    if task == "flow":
        assert cfg.model.n_input_channels == 6  # event_cube_per_bin, the flow task's preprocess


@pytest.mark.parametrize("preprocess,channels", [("histo", 2), ("diff", 1), ("event_cube", 6), ("timesurface", 2),
                                                 ("histo_quantized", 2), ("diff_quantized", 1)])
def test_in_channels_follow_the_preprocess(compose_cfg, preprocess: str, channels: int) -> None:
    cfg = prepare_config(compose_cfg([f"preprocess={preprocess}", "smoke=true"]))
    assert cfg.preprocess.channels == channels
    assert cfg.model.n_input_channels == channels


def test_event_cube_without_polarity_split_has_three_channels(compose_cfg) -> None:
    cfg = prepare_config(compose_cfg(["preprocess.kwargs.split_polarity=false", "smoke=true"]))
    assert cfg.model.n_input_channels == 3
    assert cfg.loss.channels_per_micro_bin == 1


def test_forcing_a_wrong_in_channels_fails_at_start(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"model.n_input_channels=3 but preprocess 'histo' produces 2"):
        prepare_config(compose_cfg(["preprocess=histo", "model.n_input_channels=3", "smoke=true"]))


def test_input_size_follows_dataset_and_downsampling(compose_cfg) -> None:
    cfg = prepare_config(compose_cfg(["preprocess.downsample=1"]))
    assert (cfg.dataset.height, cfg.dataset.width) == (240, 304)
    assert (cfg.preprocess.height, cfg.preprocess.width) == (120, 152)


def test_command_line_model_wins_over_the_task_default(compose_cfg) -> None:
    assert compose_cfg([]).model._target_.endswith(".midinet2")
    assert compose_cfg(["model=eminet"]).model._target_.endswith(".eminet")
    assert compose_cfg(["experiment=flow_small"]).model._target_.endswith(".eminet")


def test_nested_disallowed_target_added_from_command_line_fails(compose_cfg) -> None:
    cfg = compose_cfg(["+model.x={_target_:os.system,_args_:[echo pwned]}", "smoke=true"])
    with pytest.raises(DisallowedTargetError, match=r"model\.x.*os\.system"):
        prepare_config(cfg)


def test_overrides_file_drives_a_run_config(compose_cfg, tmp_path: Path) -> None:
    ci = tmp_path / "ci.yaml"
    ci.write_text("trainer:\n  max_epochs: 1\nmodel:\n  base: 4\n")
    cfg = prepare_config(compose_cfg([f"overrides_file={ci}", "smoke=true"]))
    assert cfg.trainer.max_epochs == 1 and cfg.model.base == 4


def test_overrides_file_with_a_typo_is_an_error(compose_cfg, tmp_path: Path) -> None:
    ci = tmp_path / "ci.yaml"
    ci.write_text("trainer:\n  max_epoch: 1\n")
    with pytest.raises(ConfigError, match="ci.yaml"):
        prepare_config(compose_cfg([f"overrides_file={ci}", "smoke=true"]))


def test_experiment_from_an_extra_config_dir(tmp_path: Path) -> None:
    """CI style: `--config-dir DIR experiment=NAME` picks a YAML file kept outside the package."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "ci_small.yaml").write_text(
        "# @package _global_\nmodel:\n  base: 2\ntrainer:\n  max_epochs: 1\n")
    out = subprocess.run([sys.executable, "-m", "evframe.run", "--config-dir", str(tmp_path), "experiment=ci_small",
                          "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.model.base == 2 and cfg.trainer.max_epochs == 1


@pytest.mark.parametrize("debug", _options("debug"))
def test_debug_presets_compose_with_tiny_data(compose_cfg, debug: str) -> None:
    cfg = prepare_config(compose_cfg([f"debug={debug}"]))
    assert cfg.smoke is True and cfg.dataset.preset == "tiny"


@pytest.mark.parametrize("logger", _options("logger"))
def test_loggers_compose(compose_cfg, logger: str) -> None:
    cfg = prepare_config(compose_cfg([f"logger={logger}", "smoke=true"]))
    assert OmegaConf.is_dict(cfg.logger)


def test_wandb_is_offline_unless_asked(compose_cfg, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert prepare_config(compose_cfg(["smoke=true"])).logger.wandb.offline is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert prepare_config(compose_cfg(["smoke=true"])).logger.wandb.offline is False


def test_task_values_win_over_component_defaults(compose_cfg) -> None:
    cfg = compose_cfg([])
    assert cfg.trainer.max_epochs == 40  # task/flow.yaml, not trainer/default.yaml's 10
    assert cfg.trainer.reload_dataloaders_every_n_epochs == 1
    assert compose_cfg(["trainer.max_epochs=2"]).trainer.max_epochs == 2  # the command line wins over both


def test_flow_validates_and_tests_the_weight_average_and_null_turns_it_off(compose_cfg) -> None:
    from evframe.runner import build_trainer
    from evframe.utils.weight_averaging import EMAWeightAveraging

    def averaging(overrides: list[str]) -> list[EMAWeightAveraging]:
        trainer, _ = build_trainer(prepare_config(compose_cfg(["task=flow", "logger=none", "smoke=true", *overrides])))
        return [c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging)]

    (default,) = averaging([])
    assert default.decay == 0.995
    assert [c.decay for c in averaging(["callbacks.weight_averaging.decay=0.9"])] == [0.9]
    assert averaging(["callbacks.weight_averaging=null"]) == []
