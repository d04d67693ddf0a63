"""Turns the composed Hydra config into the validated, fully resolved config a run uses.

Order matters: user files first, then the types and ranges of the values evframe reads (those written as plain
values, so that a bad one is named before a resolver or a data probe trips over it), then user functions (checked
against the allow-list like a ``_target_``; they may change what derived values resolve to), then the sensor size
of a folder dataset, then resolution, then the values again (now also those given by interpolation), the safety
check of every ``_target_``, and last the consistency of derived values. Nothing is instantiated before all of
this succeeded, and the only data read (the sensor-size probe) comes after the values and user functions passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from evframe.config.instantiate import allowed_prefixes, check_reference, check_targets

#: the values of ``mode``
MODES: tuple[str, ...] = ("train", "test", "predict", "export")


class ConfigError(ValueError):
    """The composed config is inconsistent (a derived value forced to a wrong number, a missing file...)."""


def merge_overrides_file(cfg: DictConfig) -> DictConfig:
    """Merges the YAML file named by ``overrides_file`` over ``cfg`` (unknown keys are errors: they are typos)."""
    path = cfg.get("overrides_file")
    if not path:
        return cfg
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise ConfigError(f"overrides_file: '{path}' does not exist")
    extra = OmegaConf.load(path)
    if not isinstance(extra, DictConfig):
        raise ConfigError(f"overrides_file: '{path}' must hold a YAML mapping, got {type(extra).__name__}")
    try:
        return OmegaConf.merge(cfg, extra)
    except Exception as err:  # omegaconf raises several types; all mean "this file does not fit the config"
        raise ConfigError(f"overrides_file: '{path}' does not fit the config: {err}") from err


def register_custom_preprocess(cfg: DictConfig) -> None:
    """Registers ``preprocess.custom.function`` (``"pkg.module:function"``) under ``preprocess.name``.

    The function is checked like a ``_target_`` before it is registered: its module must be allowed (evframe's
    prefixes plus ``allowed_targets``) and the attribute path must end on a callable defined in an allowed package
    (``evframe.run:os.system`` is refused: ``os.system`` is not defined in evframe).

    Raises:
        ConfigError: missing or malformed ``function``, ``num_channels`` not a positive integer.
        DisallowedTargetError: naming the key, the function and the allowed choices.
    """
    custom = cfg.preprocess.get("custom")
    if not custom:
        return
    from evframe.preprocess import register_from_string

    key = "preprocess.custom.function"
    for name, expected in (("function", "'package.module:function'"), ("num_channels", "a positive integer")):
        if name not in custom or OmegaConf.is_missing(custom, name):
            raise ConfigError(f"preprocess.custom.{name} is required with preprocess.custom: {expected}")
    function = custom.function
    if not isinstance(function, str) or function.count(":") != 1 or not all(function.split(":")):
        raise ConfigError(f"{key}={function!r}: expected 'package.module:function' (one colon)")
    channels = custom.num_channels
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"preprocess.custom.num_channels={channels!r}: expected a positive integer")
    check_reference(key, function, allowed_prefixes(cfg.get("allowed_targets")), what="function")
    register_from_string(str(cfg.preprocess.name), function, channels)


# ------------------------------------------------------------------------------------------------ value checks
# A rule is (what the message says is expected, test of a plain Python value). Booleans are refused where an
# integer is expected: YAML's `true` is a bool, and bool is an int subclass in Python.
Rule = tuple[str, Callable[[Any], bool]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_rule(low: int, high: int | None = None, nullable: bool = False, note: str = "") -> Rule:
    bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    text = bound + (f" ({note})" if note else "") + (" or null" if nullable else "")
    return text, lambda v: (nullable and v is None) or (_is_int(v) and v >= low and (high is None or v <= high))


def _fraction_or_count(v: Any) -> bool:
    return v is None or (_is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0)


def _devices(v: Any) -> bool:
    if _is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):  # Lightning's "auto", "2", "-1" or a list of device indices "0,1"
        return v == "auto" or re.fullmatch(r"-1|\d+|\d+(,\s*\d+)*,?", v.strip()) is not None
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_is_int(i) and i >= 0 for i in v)
    return False


def _positive_numbers(v: Any) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and bool(v) and all(_is_number(x) and x > 0 for x in v))


#: the config values evframe (or the Lightning Trainer built from ``trainer``) reads, with what each must be; a key
#: absent from the composed config (another dataset, another task) is not checked
VALUE_RULES: dict[str, Rule] = {
    "mode": (f"one of {', '.join(MODES)}", lambda v: v in MODES),
    "seed": _int_rule(0, 2**32 - 1),
    "num_threads": _int_rule(1, nullable=True, note="torch CPU threads; null: torch's default"),
    "print_config": ("true or false", lambda v: isinstance(v, bool)),
    "smoke": ("true or false", lambda v: isinstance(v, bool)),
    "ckpt_path": ("a checkpoint file, 'last' or null", lambda v: v is None or isinstance(v, str)),
    "optimized_metric_mode": ("min or max", lambda v: v in ("min", "max")),
    "allowed_targets": ("a list of module names", lambda v: isinstance(v, (list, tuple))
                        and all(isinstance(x, str) and x for x in v)),
    "trainer.max_epochs": _int_rule(-1, nullable=True, note="-1: no limit"),
    "trainer.min_epochs": _int_rule(0, nullable=True),
    "trainer.max_steps": _int_rule(-1, nullable=True, note="-1: no limit"),
    "trainer.min_steps": _int_rule(0, nullable=True),
    "trainer.devices": ("a number of devices >= 1, -1 (all), 'auto', or a list of device indices", _devices),
    "trainer.num_nodes": _int_rule(1),
    "trainer.accumulate_grad_batches": _int_rule(1),
    "trainer.check_val_every_n_epoch": _int_rule(1, nullable=True),
    "trainer.log_every_n_steps": _int_rule(0, nullable=True),
    "trainer.num_sanity_val_steps": _int_rule(-1, nullable=True, note="-1: all"),
    "trainer.reload_dataloaders_every_n_epochs": _int_rule(0),
    "trainer.fast_dev_run": ("true, false or a number of batches >= 0",
                             lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0)),
    "trainer.gradient_clip_val": ("a number >= 0 or null", lambda v: v is None or (_is_number(v) and v >= 0)),
    **{f"trainer.limit_{split}_batches": ("a number of batches >= 0, a fraction in [0.0, 1.0], or null",
                                          _fraction_or_count) for split in ("train", "val", "test", "predict")},
    "dataset.batch_size": _int_rule(1),
    "dataset.num_workers": _int_rule(0, note="0: load in the training process"),
    "dataset.height": _int_rule(1, nullable=True, note="null: read from the data"),
    "dataset.width": _int_rule(1, nullable=True, note="null: read from the data"),
    "dataset.seed": _int_rule(0),
    "dataset.max_duration": ("a duration in us > 0 or null", lambda v: v is None or (_is_number(v) and v > 0)),
    "dataset.max_recordings": _int_rule(1, nullable=True),
    "dataset.mode": ("delta_t or n_events", lambda v: v in ("delta_t", "n_events")),
    "dataset.n_events": _int_rule(0, note="events per bin with dataset.mode=n_events"),
    "dataset.frames_per_bin": _int_rule(1),
    "dataset.batches_per_clip": _int_rule(1),
    "preprocess.delta_t": _int_rule(1, note="us per time bin"),
    "preprocess.num_tbins": _int_rule(1),
    "preprocess.downsample": _int_rule(0, note="coordinates >> downsample"),
    "preprocess.kwargs": ("a mapping of keyword arguments", lambda v: v is None or isinstance(v, Mapping)),
    "task.datamodule.labelling_delta_t": _int_rule(0, nullable=True, note="us; 0: every bin with a box"),
    "task.datamodule.train_delta_t_scales": ("a non-empty list of numbers > 0, or null", _positive_numbers),
}

_ABSENT = object()
_UNRESOLVED = object()


def _plain_value(cfg: DictConfig, key: str, resolved: bool) -> Any:
    """The value at dotted ``key`` as plain Python; ``_ABSENT`` when the key is not in the config; ``_UNRESOLVED``
    when it is ``???``, or when ``resolved`` is False and the value (or part of it) is an interpolation. Nothing is
    resolved unless ``resolved`` is True (membership tests of a DictConfig would run resolvers)."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
            return _ABSENT
        if part not in node.keys():
            return _ABSENT
        node = node._get_node(part)
        if node._is_missing():
            return _UNRESOLVED
        if node._is_interpolation():
            if not resolved:
                return _UNRESOLVED
            node = node._dereference_node()
    if isinstance(node, (DictConfig, ListConfig)):
        if node._is_none():
            return None
        if not resolved and "${" in str(OmegaConf.to_container(node, resolve=False)):
            return _UNRESOLVED
        return OmegaConf.to_container(node, resolve=resolved)
    return node._value()


def validate_values(cfg: DictConfig, resolved: bool = True) -> None:
    """Checks the type and range of every key of :data:`VALUE_RULES` present in ``cfg``.

    Args:
        cfg: the composed config.
        resolved: False checks only the values written without interpolation (before resolution, so that a resolver
            is never handed a bad value); True checks every value (after ``OmegaConf.resolve``).
    Raises:
        ConfigError: ``"<key>=<value>: expected <what>"`` for the first bad value.
    """
    for key, (expected, valid) in VALUE_RULES.items():
        value = _plain_value(cfg, key, resolved)
        if value is _ABSENT or value is _UNRESOLVED:
            continue
        if not valid(value):
            raise ConfigError(f"{key}={value!r}: expected {expected}")
    if resolved and OmegaConf.select(cfg, "dataset.mode", default=None) == "n_events":
        if not _is_int(n := OmegaConf.select(cfg, "dataset.n_events", default=None)) or n < 1:
            raise ConfigError(f"dataset.n_events={n!r}: dataset.mode=n_events needs a number of events per bin >= 1")


def fill_sensor_size(cfg: DictConfig) -> None:
    """Reads the sensor size from the dataset's first recording when the config leaves it null."""
    ds = cfg.dataset
    if ds.get("height") is not None and ds.get("width") is not None:
        return
    from evframe.data.folder import probe_file_size, probe_sensor_size

    paths = ds.get("paths")  # a dataset given as a list of recordings (dataset=raw_stream)
    height, width = probe_file_size(str(paths[0])) if paths else probe_sensor_size(str(ds.root))
    with open_dict(cfg):
        ds.height = ds.height if ds.height is not None else height
        ds.width = ds.width if ds.width is not None else width


def validate_derived(cfg: DictConfig) -> None:
    """Checks that values derived from the preprocess were not forced to something inconsistent."""
    from evframe.preprocess import num_channels

    pre = cfg.preprocess
    kwargs = OmegaConf.to_container(pre.kwargs, resolve=True) if pre.get("kwargs") else {}
    expected = int(num_channels(str(pre.name), **kwargs))
    if int(pre.channels) != expected:
        raise ConfigError(
            f"preprocess.channels={pre.channels} but preprocess '{pre.name}' produces {expected} channels; "
            "remove the override, it is derived."
        )
    for key in ("in_channels", "n_input_channels"):
        value = cfg.model.get(key) if cfg.get("model") is not None else None
        if value is not None and int(value) != expected:
            raise ConfigError(
                f"model.{key}={value} but preprocess '{pre.name}' produces {expected} channels "
                f"(kwargs {kwargs}). The model input follows from the preprocess: remove the model.{key} override "
                "or choose a preprocess with that many channels."
            )
    for key in ("height", "width"):
        value = pre.get(key)
        if value is not None and int(value) <= 0:
            raise ConfigError(f"preprocess.{key}={value}: dataset.{key} >> downsample must stay positive")


def prepare_config(cfg: DictConfig) -> DictConfig:
    """Returns the resolved, checked config (a new object; ``cfg`` itself is left as composed)."""
    cfg = merge_overrides_file(cfg.copy())
    validate_values(cfg, resolved=False)
    register_custom_preprocess(cfg)
    fill_sensor_size(cfg)
    OmegaConf.resolve(cfg)
    validate_values(cfg, resolved=True)
    check_targets(cfg, cfg.get("allowed_targets"))
    validate_derived(cfg)
    return cfg
