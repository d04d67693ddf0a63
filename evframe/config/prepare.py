"""Turns the composed Hydra config into the validated, fully resolved config a run uses.

Order matters: user files and user functions first (they may change what derived values resolve to), then the
sensor size of a folder dataset, then resolution, then the safety check of every ``_target_``, and last the
consistency of derived values. Nothing is instantiated before all of this succeeded.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from evframe.config.instantiate import DisallowedTargetError, allowed_prefixes, check_targets


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
    """Registers ``preprocess.custom.function`` under ``preprocess.name`` (its module must be allowed)."""
    custom = cfg.preprocess.get("custom")
    if not custom:
        return
    from evframe.preprocess import register_from_string

    function = str(custom.function)
    module = function.split(":")[0]
    prefixes = allowed_prefixes(cfg.get("allowed_targets"))
    if not any(f"{module}.".startswith(p) or module.startswith(p) for p in prefixes):
        raise DisallowedTargetError(
            f"config key 'preprocess.custom.function': '{function}' is outside the allowed packages; "
            f"add '{module.split('.')[0]}' to `allowed_targets`."
        )
    register_from_string(str(cfg.preprocess.name), function, int(custom.num_channels))


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
    register_custom_preprocess(cfg)
    fill_sensor_size(cfg)
    OmegaConf.resolve(cfg)
    check_targets(cfg, cfg.get("allowed_targets"))
    validate_derived(cfg)
    return cfg
