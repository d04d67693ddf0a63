"""The one way evframe builds components from config: every ``_target_`` is checked against an allow-list first.

A config is data that may come from a command line, a sweep or a CI file; ``_target_: os.system`` must never run.
:func:`check_targets` walks the *whole* composed config (nested nodes and lists included) and refuses any target
that is outside the allowed prefixes, cannot be imported, or resolves (through module attributes) to an object
defined outside the allowed packages. It runs before anything is instantiated.

The same rules apply to config values that name a function (``preprocess.custom.function: "pkg.mod:fn"``, see
:func:`check_reference`) and to the parts of Hydra's own config that Hydra calls before the task function runs:
``hydra.callbacks`` (instantiated) and the factories of ``hydra.hydra_logging`` / ``hydra.job_logging`` (Python's
``logging.config.dictConfig`` calls every ``()`` and handler ``class``): :func:`guard_hydra` makes Hydra check
them as soon as it has composed a config.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from hydra.errors import CompactHydraException
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


def iter_targets(node: Any, path: str = "", resolve: bool = False) -> Iterator[tuple[str, str]]:
    """Yields ``(config_key, target_string)`` for every ``_target_`` in ``node``, depth first.

    By default interpolations are not resolved: a target hidden behind an interpolation is checked where it is
    defined, and a node copied by interpolation is checked again at its destination when the config is resolved (an
    unresolved ``${...}`` target never matches an allowed prefix, so it is refused rather than trusted). With
    ``resolve=True`` each ``_target_`` value is resolved first (for configs that are instantiated unresolved, as
    Hydra does with ``hydra.callbacks``); one that cannot be resolved is yielded as written.
    """
    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none():
            return
        keys = list(node.keys())
        if "_target_" in keys:
            yield (path or "<root>"), _target_value(node, resolve)
        for key in keys:
            if key == "_target_":
                continue
            child = node._get_node(key)
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from iter_targets(child, sub, resolve)
    elif isinstance(node, ListConfig):
        if node._is_missing() or node._is_none():
            return
        for i in range(len(node)):
            child = node._get_node(i)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from iter_targets(child, f"{path}[{i}]", resolve)


def _target_value(node: DictConfig, resolve: bool) -> str:
    raw = str(node._get_node("_target_")._value())
    if not resolve:
        return raw
    try:
        return str(node["_target_"])
    except Exception:  # an interpolation that does not resolve: the raw text is refused by the prefix check
        return raw


def _split_reference(reference: str) -> tuple[str | None, list[str]]:
    """``"pkg.mod:A.b"`` -> ``("pkg.mod", ["A", "b"])``; a dotted ``"pkg.mod.A.b"`` -> ``(None, [...all parts])``."""
    if ":" in reference:
        module, attrs = reference.split(":", 1)
        return module, attrs.split(".")
    return None, reference.split(".")


def _locate(target: str) -> Any:
    """Imports ``a.b.c.Name`` as the longest importable module prefix, then walks the remaining attributes
    (``a.b:Name.attr`` imports ``a.b`` exactly). Dunder attributes (``__globals__``, ``__class__``...) are refused:
    they lead out of any module."""
    module, parts = _split_reference(target)
    if any(not part for part in parts) or (module is not None and not module):
        raise ImportError(f"'{target}' is not a module path (empty name)")
    dunder = [part for part in parts if part.startswith("__")]
    if dunder:
        raise AttributeError(f"'{target}' walks through the special attribute '{dunder[0]}'")
    if module is not None:
        obj = importlib.import_module(module)
        for attr in parts:
            obj = getattr(obj, attr)
        return obj
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
    if not isinstance(module, str):  # an instance whose class sets no module name: nothing to trust
        return False
    # "torch.optim." -> package "torch.optim"; "lightning.pytorch.Trainer" (an exact name) -> "lightning.pytorch"
    packages = {p[:-1] if p.endswith(".") else p.rsplit(".", 1)[0] for p in prefixes}
    return any(module == pkg or module.startswith(pkg + ".") for pkg in packages)


def _describe(obj: Any) -> str:
    """``module.Name`` of a function or class; ``a <type> object`` of anything else (``sys.modules``: a dict)."""
    if hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', None) or '?'}.{obj.__qualname__}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def allowed_prefixes(extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """Default prefixes plus the user's ``allowed_targets`` (a bare module name ``mypkg`` means ``mypkg.``)."""
    user = tuple(p if p.endswith(".") or p[:1].isupper() else f"{p}." for p in (str(e) for e in (extra or ())))
    return DEFAULT_ALLOWED_PREFIXES + user


def describe_prefixes(prefixes: Iterable[str]) -> str:
    """The allowed choices as shown in error messages: ``"evframe.*, torch.optim.*, lightning.pytorch.Trainer"``."""
    return ", ".join(p + ("*" if p.endswith(".") else "") for p in prefixes)


def check_reference(key: str, reference: str, prefixes: Iterable[str], what: str = "_target_") -> Any:
    """Checks one config value naming a callable and returns the callable (imported, not called).

    Args:
        key: the config key, for the message (``"model.x"``, ``"preprocess.custom.function"``).
        reference: ``"pkg.mod.Name"`` (dotted, as a ``_target_``) or ``"pkg.mod:Name.attr"`` (module, colon,
            attribute path).
        prefixes: the allowed prefixes (:func:`allowed_prefixes`).
        what: how the value is called in the message (``_target_``, ``function``).
    Raises:
        DisallowedTargetError: naming the key, the value and the allowed choices when the module is outside the
            prefixes, the value cannot be imported, the attribute walk ends on an object defined outside the allowed
            packages, or the object is not callable.
    """
    prefixes = tuple(prefixes)
    shown = describe_prefixes(prefixes)
    # "pkg.mod:A.b" is checked as "pkg.mod.A.b"; where the attribute walk really ends is checked after the import
    dotted = reference.replace(":", ".", 1)
    if not any(dotted.startswith(p) for p in prefixes):
        raise DisallowedTargetError(
            f"config key '{key}': {what} '{reference}' is not allowed. Allowed: {shown}. "
            "To allow your own package add it to the config list `allowed_targets` (e.g. allowed_targets=[mypkg])."
        )
    try:
        obj = _locate(reference)
    except (ImportError, AttributeError) as err:
        raise DisallowedTargetError(f"config key '{key}': {what} '{reference}' cannot be imported ({err}).") from err
    if not _defined_under(obj, prefixes):
        raise DisallowedTargetError(
            f"config key '{key}': {what} '{reference}' resolves to {_describe(obj)}, which is defined outside the "
            f"allowed packages ({shown})."
        )
    if not callable(obj):
        raise DisallowedTargetError(f"config key '{key}': {what} '{reference}' is not callable.")
    return obj


def check_targets(cfg: DictConfig | ListConfig, extra_prefixes: Iterable[str] | None = None, path: str = "",
                  resolve: bool = False, prefixes: Iterable[str] | None = None) -> list[str]:
    """Checks every ``_target_`` in ``cfg``; returns the list of targets, raises on the first bad one.

    Args:
        cfg: the config (or a sub-node of it; ``path`` is then its key, for the messages).
        extra_prefixes: the user's ``allowed_targets``.
        resolve: resolve interpolated ``_target_`` values first (see :func:`iter_targets`).
        prefixes: the complete allowed prefixes, replacing the defaults plus ``extra_prefixes``.
    Raises:
        DisallowedTargetError: naming the config key, the target and the allowed choices.
    """
    allowed = tuple(prefixes) if prefixes is not None else allowed_prefixes(extra_prefixes)
    seen = []
    for key, target in iter_targets(cfg, path, resolve):
        check_reference(key, target, allowed)
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


# ------------------------------------------------------------------------------------------------ Hydra's own config
#: Hydra's own callbacks (job-return logging, job-info pickles) are allowed in ``hydra.callbacks`` besides the
#: prefixes of :func:`allowed_prefixes`
HYDRA_CALLBACK_PREFIXES: tuple[str, ...] = ("hydra.experimental.callbacks.",)
#: factories (``()``) and handler classes a logging config may name besides :func:`allowed_prefixes`: the standard
#: library's handlers, formatters and filters, and colorlog's formatter (Hydra's colorlog plugin) ...
LOGGING_PREFIXES: tuple[str, ...] = ("logging.", "colorlog.")
#: ... but not ``logging.config``, whose functions read and build other configs (``fileConfig`` evaluates its file)
LOGGING_REFUSED: tuple[str, ...] = ("logging.config.",)
#: the ``ext://`` objects a logging config may hand to a factory
LOGGING_EXTERNAL: tuple[str, ...] = ("sys.stdout", "sys.stderr")
#: the logging configs of a Hydra config (``hydra_logging`` while Hydra runs, ``job_logging`` for each job)
HYDRA_LOGGING_KEYS: tuple[str, ...] = ("hydra.hydra_logging", "hydra.job_logging")


class HydraTargetError(DisallowedTargetError, CompactHydraException):
    """A callable in Hydra's own config (``hydra.callbacks``, a logging factory) outside the allow-list. Hydra prints
    a compact exception as its message alone (no stack trace) and exits with status 1."""


def _user_prefixes(config: DictConfig) -> tuple[str, ...]:
    try:
        extra = OmegaConf.select(config, "allowed_targets") or []
    except Exception:  # an allowed_targets that does not resolve extends nothing
        extra = []
    return allowed_prefixes(extra)


def check_hydra_callbacks(config: DictConfig) -> list[str]:
    """Checks every ``_target_`` under ``hydra.callbacks`` of a full Hydra config (interpolations resolved, as
    Hydra will instantiate them) against the allow-list extended by the config's ``allowed_targets`` and
    :data:`HYDRA_CALLBACK_PREFIXES`. Returns the targets.

    Raises:
        HydraTargetError: naming the key (``hydra.callbacks.<name>``), the target and the allowed choices.
    """
    callbacks = OmegaConf.select(config, "hydra.callbacks")
    if not callbacks:
        return []
    prefixes = _user_prefixes(config) + HYDRA_CALLBACK_PREFIXES
    try:
        return check_targets(callbacks, path="hydra.callbacks", resolve=True, prefixes=prefixes)
    except DisallowedTargetError as err:
        raise HydraTargetError(str(err)) from None


def _logging_references(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """Yields ``(config_key, what, reference)`` for every ``()`` factory, ``class`` and ``ext://`` value under a
    logging config node (interpolations of these values resolved; the rest of the node is left as written)."""
    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none():
            return
        for key in list(node.keys()):
            child = node._get_node(key)
            sub = f"{path}.{key}"
            if isinstance(child, (DictConfig, ListConfig)):
                yield from _logging_references(child, sub)
                continue
            value = _resolved_leaf(node, key)
            if not isinstance(value, str):
                continue
            if key in ("()", "class"):
                yield sub, "factory" if key == "()" else "class", value
            elif value.startswith("ext://"):
                yield sub, "ext:// object", value[len("ext://"):]
    elif isinstance(node, ListConfig) and not (node._is_missing() or node._is_none()):
        for i in range(len(node)):
            yield from _logging_references(node._get_node(i), f"{path}[{i}]")


def _resolved_leaf(node: DictConfig, key: Any) -> Any:
    raw = node._get_node(key)._value()
    if not (isinstance(raw, str) and "${" in raw):
        return raw
    try:
        return node[key]
    except Exception:  # left as written: refused below if it is a factory
        return raw


def _check_ext(key: str, reference: str, prefixes: tuple[str, ...]) -> None:
    """An ``ext://`` value must name an object under ``prefixes`` (importing a module may run it)."""
    shown = f"{', '.join(LOGGING_EXTERNAL)}, {describe_prefixes(prefixes)}"
    if not any(reference.startswith(p) for p in prefixes):
        raise DisallowedTargetError(f"config key '{key}': ext://{reference} is not allowed. Allowed: {shown}.")
    try:
        obj = _locate(reference)
    except (ImportError, AttributeError) as err:
        raise DisallowedTargetError(f"config key '{key}': ext://{reference} cannot be imported ({err}).") from err
    if not _defined_under(obj, prefixes):
        raise DisallowedTargetError(f"config key '{key}': ext://{reference} resolves to {_describe(obj)}, which is "
                                    f"defined outside the allowed packages ({shown}).")


def check_hydra_logging(config: DictConfig) -> list[str]:
    """Checks the callables that ``logging.config.dictConfig`` would call or hand over for ``hydra.hydra_logging`` and
    ``hydra.job_logging``: every ``()`` factory and ``class`` must be under :data:`LOGGING_PREFIXES` (not
    :data:`LOGGING_REFUSED`) or the allow-list with ``allowed_targets``, and every ``ext://`` value one of
    :data:`LOGGING_EXTERNAL` or under those prefixes. Returns the references checked.

    Raises:
        HydraTargetError: naming the key (``hydra.job_logging.handlers.<name>.()``), the value and the choices.
    """
    prefixes = LOGGING_PREFIXES + _user_prefixes(config)
    shown = f"{describe_prefixes(prefixes)} (not {describe_prefixes(LOGGING_REFUSED)})"
    seen = []
    for root in HYDRA_LOGGING_KEYS:
        node = OmegaConf.select(config, root)
        if not isinstance(node, DictConfig):
            continue
        for key, what, reference in _logging_references(node, root):
            if what == "ext:// object" and reference in LOGGING_EXTERNAL:
                seen.append(reference)
                continue
            if any(reference.startswith(p) for p in LOGGING_REFUSED):
                raise HydraTargetError(f"config key '{key}': {what} '{reference}' is not allowed. Allowed: {shown}.")
            try:
                if what == "ext:// object":  # handed over, not called: where it is defined is what matters
                    _check_ext(key, reference, prefixes)
                else:
                    check_reference(key, reference, prefixes, what=what)
            except DisallowedTargetError as err:
                raise HydraTargetError(str(err)) from None
            seen.append(reference)
    return seen


def check_hydra_config(config: DictConfig) -> None:
    """:func:`check_hydra_callbacks` and :func:`check_hydra_logging` of a composed Hydra config.

    Raises:
        HydraTargetError: naming the key, the value and the allowed choices.
    """
    if OmegaConf.select(config, "hydra") is None:
        return
    check_hydra_callbacks(config)
    check_hydra_logging(config)


def guard_hydra() -> None:
    """Makes Hydra check its own config with :func:`check_hydra_config` before it calls anything the config names.

    Hydra configures logging from ``hydra.hydra_logging`` right after composing the config and builds its
    ``Callbacks`` object (every ``hydra.callbacks`` entry instantiated) before the task function, and so before
    evframe's own check of the config, runs. Two hooks, both wrapping Hydra's methods:

    - ``ConfigLoaderImpl.load_configuration``: every config Hydra composes (a run, a multirun, each job of a sweep,
      whose ``job_logging`` is configured in the job's process) is checked as soon as it exists;
    - ``Callbacks.__init__``: the callbacks are checked again where they are instantiated (a config that reaches
      Hydra by another way).

    Calling this again does nothing.
    """
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    if not getattr(ConfigLoaderImpl.load_configuration, "_evframe_guard", False):
        unchecked_load = ConfigLoaderImpl.load_configuration

        def checked_load(self: Any, *args: Any, **kwargs: Any) -> DictConfig:
            config = unchecked_load(self, *args, **kwargs)
            check_hydra_config(config)
            return config

        checked_load._evframe_guard = True  # type: ignore[attr-defined]
        ConfigLoaderImpl.load_configuration = checked_load  # type: ignore[method-assign]

    if not getattr(Callbacks.__init__, "_evframe_guard", False):
        unchecked_init = Callbacks.__init__

        def checked_init(self: Any, config: DictConfig | None = None) -> None:
            if config is not None:
                check_hydra_callbacks(config)
            unchecked_init(self, config)

        checked_init._evframe_guard = True  # type: ignore[attr-defined]
        Callbacks.__init__ = checked_init  # type: ignore[method-assign]
