"""The one way evframe builds components from config: every ``_target_`` is checked against an allow-list first.

A config is data that may come from a command line, a sweep or a CI file; ``_target_: os.system`` must never run.
:func:`check_targets` walks the *whole* composed config (nested nodes and lists included) and refuses any target
that is outside the allowed prefixes, cannot be imported, or resolves (through module attributes) to an object
defined outside the allowed packages. It runs before anything is instantiated.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

#: Module prefixes a config may name by default. Users extend them with the config key ``allowed_targets``.
DEFAULT_ALLOWED_PREFIXES: tuple[str, ...] = (
    "evframe.",
    "torch.optim.",
    "torch.nn.",
    "torchvision.ops.",
    "torchvision.transforms.",
    "torchvision.models.",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.",
    "lightning.pytorch.profilers.",
    "lightning.pytorch.strategies.",
    "lightning.pytorch.plugins.",
    "lightning.pytorch.accelerators.",
)


class DisallowedTargetError(ValueError):
    """A ``_target_`` in the config is not allowed or cannot be resolved."""


def iter_targets(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yields ``(config_key, target_string)`` for every ``_target_`` in ``node``, depth first.

    Interpolations are not resolved here on purpose: a target hidden behind an interpolation is checked where it is
    defined, and a node copied by interpolation is checked again at its destination when the config is resolved.
    """
    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none():
            return
        keys = list(node.keys())
        if "_target_" in keys:
            yield (path or "<root>"), str(node._get_node("_target_")._value())
        for key in keys:
            if key == "_target_":
                continue
            child = node._get_node(key)
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from iter_targets(child, sub)
    elif isinstance(node, ListConfig):
        if node._is_missing() or node._is_none():
            return
        for i in range(len(node)):
            child = node._get_node(i)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from iter_targets(child, f"{path}[{i}]")


def _locate(target: str) -> Any:
    """Imports ``a.b.c.Name`` as the longest importable module prefix, then walks the remaining attributes."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no importable module in '{target}'")


def _defined_under(obj: Any, prefixes: Iterable[str]) -> bool:
    """Whether ``obj`` is defined inside one of the allowed packages (an attribute walk can leave them)."""
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    # "torch.optim." -> package "torch.optim"; "lightning.pytorch.Trainer" (an exact name) -> "lightning.pytorch"
    packages = {p[:-1] if p.endswith(".") else p.rsplit(".", 1)[0] for p in prefixes}
    return any(module == pkg or module.startswith(pkg + ".") for pkg in packages)


def allowed_prefixes(extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """Default prefixes plus the user's ``allowed_targets`` (a bare module name ``mypkg`` means ``mypkg.``)."""
    user = tuple(p if p.endswith(".") or p[:1].isupper() else f"{p}." for p in (extra or ()))
    return DEFAULT_ALLOWED_PREFIXES + user


def check_targets(cfg: DictConfig | ListConfig, extra_prefixes: Iterable[str] | None = None) -> list[str]:
    """Checks every ``_target_`` in ``cfg``; returns the list of targets, raises on the first bad one.

    Raises:
        DisallowedTargetError: naming the config key, the target and the allowed choices.
    """
    prefixes = allowed_prefixes(extra_prefixes)
    shown = ", ".join(p + ("*" if p.endswith(".") else "") for p in prefixes)
    seen = []
    for key, target in iter_targets(cfg):
        if not any(target.startswith(p) for p in prefixes):
            raise DisallowedTargetError(
                f"config key '{key}': _target_ '{target}' is not allowed. Allowed: {shown}. "
                "To allow your own package add it to the config list `allowed_targets` (e.g. allowed_targets=[mypkg])."
            )
        try:
            obj = _locate(target)
        except (ImportError, AttributeError) as err:
            raise DisallowedTargetError(f"config key '{key}': _target_ '{target}' cannot be imported ({err}).") from err
        if not _defined_under(obj, prefixes):
            raise DisallowedTargetError(
                f"config key '{key}': _target_ '{target}' resolves to {getattr(obj, '__module__', '?')}."
                f"{getattr(obj, '__qualname__', obj)}, which is defined outside the allowed packages ({shown})."
            )
        if not callable(obj):
            raise DisallowedTargetError(f"config key '{key}': _target_ '{target}' is not callable.")
        seen.append(target)
    return seen


def instantiate(cfg: Any, *args: Any, allowed_targets: Iterable[str] | None = None, **kwargs: Any) -> Any:
    """Checks all targets in ``cfg`` then instantiates it with Hydra (recursively).

    Args:
        cfg: a DictConfig/ListConfig (or plain dict) with ``_target_`` entries.
        allowed_targets: extra allowed prefixes (the config's ``allowed_targets``).
        *args, **kwargs: forwarded to the target, as in :func:`hydra.utils.instantiate`.
    """
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    if isinstance(cfg, (DictConfig, ListConfig)):
        check_targets(cfg, allowed_targets)
    return hydra_instantiate(cfg, *args, **kwargs)
