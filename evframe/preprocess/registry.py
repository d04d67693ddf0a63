"""Name -> preprocessing function table (built-ins register themselves; users add theirs, also from config).

A preprocessing function turns events into a tensor. Every registered function is called by
:func:`evframe.preprocess.compute` as::

    fn(events, num_tbins, height, width, delta_t, start_ts=0, downsample=0, **kwargs)
        -> torch.Tensor | np.ndarray, float32 (num_tbins, C, height >> downsample, width >> downsample)

with ``events`` an (N,) :data:`~evframe.io.dtypes.EVENT_DTYPE` array whose coordinates were already checked to lie
inside ``height x width``. ``C`` is given at registration, either a number or a function of the kwargs (e.g.
``event_cube``'s channels depend on ``num_utbins`` and ``split_polarity``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ChannelSpec = int | Callable[..., int]


@dataclass(frozen=True)
class PreprocessEntry:
    """One registered function.

    Attributes:
        name: registry key. function: the callable (signature in the module docstring).
        channels: int, or callable(**kwargs) -> int. checks_bounds: True when the function itself rejects events
            outside the sensor (the compiled built-ins do it inside their single pass), so :func:`compute` skips
            its own, slower, numpy check.
    """

    name: str
    function: Callable
    channels: ChannelSpec
    checks_bounds: bool = False
    signature: inspect.Signature | None = field(default=None, compare=False)


_REGISTRY: dict[str, PreprocessEntry] = {}


def _check_channel_spec(name: str, num_channels: Any) -> ChannelSpec:
    if isinstance(num_channels, bool) or not (isinstance(num_channels, int) or callable(num_channels)):
        raise TypeError(f"preprocess '{name}': num_channels must be a positive int or a callable(**kwargs) -> int, "
                        f"got {num_channels!r}")
    if isinstance(num_channels, int) and num_channels <= 0:
        raise ValueError(f"preprocess '{name}': num_channels must be positive, got {num_channels}")
    return num_channels


def _signature(function: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # some builtins / C callables have none: then kwargs are not pre-checked
        return None


def _add(name: str, function: Callable, num_channels: ChannelSpec, checks_bounds: bool, overwrite: bool) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"preprocess name must be a non-empty string, got {name!r}")
    if not callable(function):
        raise TypeError(f"preprocess '{name}': {function!r} is not callable")
    spec = _check_channel_spec(name, num_channels)
    old = _REGISTRY.get(name)
    if old is not None and not overwrite and (old.function is not function or old.channels != spec):
        raise ValueError(f"preprocess '{name}' is already registered (to {_describe(old.function)}); pass "
                         "overwrite=True to replace it or choose another name")
    _REGISTRY[name] = PreprocessEntry(name, function, spec, checks_bounds, _signature(function))


def _describe(function: Callable) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"


def register(name: str, num_channels: ChannelSpec, *, overwrite: bool = False,
             checks_bounds: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering a preprocessing function under ``name``.

    Args:
        name: key used by :func:`compute`, configs and HDF5 attrs.
        num_channels: C of the output, an int or a callable taking the function's kwargs and returning an int.
        overwrite: replace an existing, different registration (re-registering the same function is a no-op).
        checks_bounds: the function raises itself for coordinates outside the sensor (internal use).

    Returns:
        The decorator, which returns the function unchanged.
    """

    def decorator(function: Callable) -> Callable:
        _add(name, function, num_channels, checks_bounds, overwrite)
        return function

    return decorator


def register_from_string(name: str, target: str, num_channels: ChannelSpec, *, overwrite: bool = False) -> Callable:
    """Registers the function named by ``"package.module:function"`` (e.g. from a config file) under ``name``.

    ``function`` may be a dotted attribute path (``"pkg.mod:Class.method"``).

    Returns:
        The imported function.
    Raises:
        ValueError: malformed target, module not importable, attribute missing or not callable.
    """
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise ValueError(f"preprocess '{name}': function target {target!r} must look like 'package.module:function'")
    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"preprocess '{name}': cannot import module '{module_name}' of '{target}': {err}") from err
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"preprocess '{name}': module '{module_name}' has no attribute '{attr_path}' "
                             f"(from '{target}')")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"preprocess '{name}': '{target}' is a {type(obj).__name__}, not a callable")
    _add(name, obj, num_channels, False, overwrite)
    return obj


def unregister(name: str) -> None:
    """Removes ``name`` (KeyError listing the registered names if absent); mainly for tests."""
    _entry(name)
    del _REGISTRY[name]


def available() -> list[str]:
    """Sorted names of the registered preprocessing functions."""
    return sorted(_REGISTRY)


def _entry(name: str) -> PreprocessEntry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown preprocess function {name!r}; available: {', '.join(available())}") from None


def entry(name: str) -> PreprocessEntry:
    """The :class:`PreprocessEntry` of ``name`` (KeyError listing the available names)."""
    return _entry(name)


def get(name: str) -> Callable:
    """The function registered as ``name`` (KeyError listing the available names)."""
    return _entry(name).function


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raises TypeError naming the argument when ``name``'s function does not accept one of ``kwargs``."""
    sig = _entry(name).signature
    if sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    # the first five parameters are passed by position (events, num_tbins, height, width, delta_t), whatever
    # their names; start_ts and downsample by keyword
    names = list(sig.parameters)
    fixed = set(names[:5]) | {"start_ts", "downsample"}
    accepted = [p for p in names if p not in fixed]
    for key in kwargs:
        if key in fixed or key not in sig.parameters:
            raise TypeError(f"preprocess '{name}' does not take the argument '{key}'; its options are: "
                            f"{', '.join(accepted) if accepted else '(none)'}")


def num_channels(name: str, **kwargs: Any) -> int:
    """Number of output channels C of ``name`` for these kwargs (e.g. ``event_cube`` -> 6, or 3 unsplit).

    Raises:
        KeyError: unknown name. TypeError: a kwarg the function does not take. ValueError: invalid kwarg value.
    """
    spec = _entry(name).channels
    check_kwargs(name, kwargs)
    if isinstance(spec, int):
        return spec
    try:
        value = spec(**kwargs)
    except TypeError as err:
        raise ValueError(f"preprocess '{name}': cannot compute its channel count from kwargs {kwargs}: {err}") from err
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"preprocess '{name}': channel count for kwargs {kwargs} must be a positive int, "
                         f"got {value!r}")
    return value
