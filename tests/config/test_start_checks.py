"""What a run refuses at start, before any data is read or anything is built: Hydra callbacks, logging factories
and user functions outside the allow-list, and config values of the wrong type or range (each message names the
key, the value and what was expected)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evframe.config import DisallowedTargetError
from evframe.config.prepare import ConfigError, prepare_config, validate_values
from evframe.preprocess import available, unregister
from evframe.run import CONFIG_DIR


def _evframe(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m evframe.run *args`` run from ``cwd`` (its outputs go under ``cwd/outputs``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EVFRAME_ROOT", "WANDB_SERVICE")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "evframe.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


# ------------------------------------------------------------------------------------------------ hydra.callbacks
@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_a_hydra_callback_outside_the_allow_list_is_refused_before_hydra_builds_it(tmp_path: Path,
                                                                                    multirun: bool) -> None:
    args = ["--multirun"] if multirun else []
    out = _evframe(tmp_path, *args, "+hydra.callbacks.x={_target_:builtins.open,_args_:[FILE,w]}", "debug=fdr")
    assert out.returncode == 1, out.stdout + out.stderr
    assert not (tmp_path / "FILE").exists()  # builtins.open never ran
    assert not (tmp_path / "outputs").exists()  # nor did the job
    assert "config key 'hydra.callbacks.x': _target_ 'builtins.open' is not allowed. Allowed: evframe.*" in out.stderr
    assert "Traceback" not in out.stderr  # the message alone


@pytest.mark.parametrize("logging_config", ["hydra_logging", "job_logging"])
def test_a_logging_factory_outside_the_allow_list_is_refused_before_logging_is_configured(
        tmp_path: Path, logging_config: str) -> None:
    # Python's dictConfig calls a handler's "()" factory: Hydra configures hydra_logging right after composing
    out = _evframe(tmp_path, f"+hydra.{logging_config}.handlers.x={{\\(\\):builtins.open,file:FILE,mode:w}}",
                   "debug=fdr")
    assert out.returncode == 1, out.stdout + out.stderr
    assert not (tmp_path / "FILE").exists()
    assert (f"config key 'hydra.{logging_config}.handlers.x.()': factory 'builtins.open' is not allowed. "
            "Allowed: logging.*") in out.stderr, out.stderr


# ------------------------------------------------------------------------------------------------ user functions
CUSTOM = ["preprocess=custom", "preprocess.name=evil", "preprocess.custom.num_channels=2"]


def test_a_custom_preprocess_walking_out_of_evframe_is_refused_at_start(tmp_path: Path) -> None:
    out = _evframe(tmp_path, *CUSTOM, "preprocess.custom.function=evframe.run:os.system", "debug=fdr")
    assert out.returncode == 1, out.stdout + out.stderr
    assert ("config key 'preprocess.custom.function': function 'evframe.run:os.system' resolves to"
            in out.stderr), out.stderr
    assert "which is defined outside the allowed packages (evframe.*," in out.stderr
    assert not (tmp_path / "outputs" / "datasets").exists()  # refused before any data was generated


@pytest.mark.parametrize("function,message", [
    ("evframe.run:os.system", r"'evframe.run:os.system' resolves to .*defined outside the allowed packages"),
    ("os:system", r"'os:system' is not allowed\. Allowed: evframe\.\*"),
    ("evframe.run:sys.modules", r"'evframe.run:sys.modules' resolves to a builtins.dict object, which is defined "
                                r"outside"),
])
def test_custom_preprocess_functions_are_checked_like_targets(compose_cfg, function: str, message: str) -> None:
    cfg = compose_cfg([*CUSTOM, f"preprocess.custom.function={function}", "smoke=true"])
    with pytest.raises(DisallowedTargetError, match=r"config key 'preprocess.custom.function': function " + message):
        prepare_config(cfg)
    assert "evil" not in available()  # nothing was registered


def test_an_allowed_custom_preprocess_is_registered_and_sets_the_channels(compose_cfg) -> None:
    cfg = compose_cfg(["preprocess=custom", "preprocess.name=my_histo", "preprocess.custom.num_channels=2",
                       "preprocess.custom.function=evframe.preprocess.functions:histo", "smoke=true"])
    try:
        cfg = prepare_config(cfg)
        assert cfg.preprocess.channels == 2 and cfg.model.n_input_channels == 2
    finally:
        if "my_histo" in available():
            unregister("my_histo")


@pytest.mark.parametrize("override,message", [
    ("preprocess.custom.function=evframe.preprocess.functions.histo",
     r"preprocess.custom.function='evframe.preprocess.functions.histo': expected 'package.module:function'"),
    ("preprocess.custom.num_channels=abc", r"preprocess.custom.num_channels='abc': expected a positive integer"),
    ("preprocess.custom.num_channels=???", r"preprocess.custom.num_channels is required with preprocess.custom: a "
                                           r"positive integer"),
])
def test_malformed_custom_preprocess_is_named(compose_cfg, override: str, message: str) -> None:
    cfg = compose_cfg([*CUSTOM, "preprocess.custom.function=evframe.preprocess.functions:histo", override,
                       "smoke=true"])
    with pytest.raises(ConfigError, match=message):
        prepare_config(cfg)


# ------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("override,message", [
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected an integer >= -1 (-1: no limit) or null"),
    ("seed=abc", "seed='abc': expected an integer in [0, 4294967295]"),
    ("dataset.batch_size=abc", "dataset.batch_size='abc': expected an integer >= 1"),
    ("num_threads=-3", "num_threads=-3: expected an integer >= 1 (torch CPU threads; null: torch's default) or null"),
])
def test_bad_values_stop_the_run_naming_key_value_and_expectation(tmp_path: Path, override: str,
                                                                  message: str) -> None:
    out = _evframe(tmp_path, override, "debug=fdr")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"ConfigError: {message}" in out.stderr, out.stderr
    assert not (tmp_path / "outputs" / "datasets").exists()  # refused before any data was generated


@pytest.mark.parametrize("override", [
    "trainer.devices=auto", "trainer.devices=-1", "trainer.devices=[0,1]", "trainer.devices='0,1'",
    "++trainer.limit_train_batches=0.5", "++trainer.limit_train_batches=3", "trainer.max_epochs=-1",
    "++trainer.fast_dev_run=true", "num_threads=2", "num_threads=null", "dataset.max_duration=2.5e5",
    "task.datamodule.train_delta_t_scales=[0.5,1,2]",
])
def test_valid_values_pass(compose_cfg, override: str) -> None:
    prepare_config(compose_cfg([override, "smoke=true"]))


@pytest.mark.parametrize("override,message", [
    ("trainer.devices=0", r"trainer.devices=0: expected a number of devices >= 1, -1 \(all\)"),
    ("trainer.devices=[]", r"trainer.devices=\[\]: expected"),
    ("++trainer.limit_val_batches=1.5", r"trainer.limit_val_batches=1.5: expected a number of batches >= 0, a "
                                      r"fraction in \[0.0, 1.0\]"),
    ("++trainer.max_steps=-2", r"trainer.max_steps=-2: expected an integer >= -1"),
    ("trainer.max_epochs=true", r"trainer.max_epochs=True: expected an integer"),
    ("seed=1.5", r"seed=1.5: expected an integer in \[0, 4294967295\]"),
    ("seed=-1", r"seed=-1: expected an integer in \[0, 4294967295\]"),
    ("dataset.num_workers=-1", r"dataset.num_workers=-1: expected an integer >= 0"),
    ("dataset.max_duration=0", r"dataset.max_duration=0: expected a duration in us > 0 or null"),
    ("preprocess.delta_t=0", r"preprocess.delta_t=0: expected an integer >= 1 \(us per time bin\)"),
    ("preprocess.delta_t=abc", r"preprocess.delta_t='abc': expected an integer >= 1"),
    ("preprocess.num_tbins=0", r"preprocess.num_tbins=0: expected an integer >= 1"),
    ("preprocess.downsample=-1", r"preprocess.downsample=-1: expected an integer >= 0"),
    ("task.datamodule.train_delta_t_scales=[0.5,-1]", r"train_delta_t_scales=\[0.5, -1\]: expected a non-empty list"),
    ("mode=fit", r"mode='fit': expected one of train, test, predict, export"),
])
def test_invalid_values_are_named(compose_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare_config(compose_cfg([override, "smoke=true"]))


def test_a_bad_value_given_by_interpolation_is_caught_after_resolution(compose_cfg) -> None:
    cfg = compose_cfg(["+epochs=abc", "trainer.max_epochs=${epochs}", "smoke=true"])
    validate_values(cfg, resolved=False)  # an interpolation is left to the check after resolution
    with pytest.raises(ConfigError, match="trainer.max_epochs='abc'"):
        prepare_config(cfg)


def test_values_are_checked_before_the_dataset_is_probed(compose_cfg, tmp_path: Path) -> None:
    # the folder dataset reads its sensor size from the first recording: a bad batch size is named first
    cfg = compose_cfg(["dataset=folder", f"dataset.root={tmp_path / 'absent'}", "dataset.batch_size=0"])
    with pytest.raises(ConfigError, match="dataset.batch_size=0: expected an integer >= 1"):
        prepare_config(cfg)


def test_raw_stream_modes_are_checked(compose_cfg) -> None:
    base = ["dataset=raw_stream", "dataset.paths=[/absent.raw]", "dataset.height=4", "dataset.width=4", "smoke=true"]
    with pytest.raises(ConfigError, match=r"dataset.mode='events': expected delta_t or n_events"):
        prepare_config(compose_cfg([*base, "dataset.mode=events"]))
    with pytest.raises(ConfigError, match=r"dataset.n_events=0: dataset.mode=n_events needs a number of events"):
        prepare_config(compose_cfg([*base, "dataset.mode=n_events"]))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("override", [f"task={t}" for t in _options("task")]
                         + [f"trainer={t}" for t in _options("trainer")]
                         + [f"experiment={e}" for e in _options("experiment")]
                         + [f"hparams_search={h}" for h in _options("hparams_search")])
def test_every_shipped_option_passes_the_value_checks(compose_cfg, override: str) -> None:
    validate_values(compose_cfg([override, "smoke=true"]), resolved=False)
    prepare_config(compose_cfg([override, "smoke=true"]))
