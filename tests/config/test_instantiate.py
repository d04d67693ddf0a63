"""The allow-listed instantiate: bad targets fail before anything is built, naming the key and the choices."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from evframe.config import DisallowedTargetError, check_targets, instantiate
from evframe.config.instantiate import iter_targets


def test_allowed_targets_instantiate_recursively() -> None:
    cfg = OmegaConf.create({"_target_": "torch.nn.Sequential",
                            "_args_": [{"_target_": "torch.nn.Conv2d", "in_channels": 2, "out_channels": 3,
                                        "kernel_size": 1}]})
    module = instantiate(cfg)
    assert isinstance(module, torch.nn.Sequential)
    assert module[0].out_channels == 3


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval", "shutil.rmtree"])
def test_disallowed_target_is_refused_with_key_and_choices(target: str) -> None:
    cfg = OmegaConf.create({"model": {"_target_": "torch.nn.Identity", "x": {"_target_": target, "_args_": ["ls"]}}})
    with pytest.raises(DisallowedTargetError) as err:
        instantiate(cfg)
    message = str(err.value)
    assert "model.x" in message and target in message and "evframe.*" in message


def test_targets_inside_lists_are_checked() -> None:
    cfg = OmegaConf.create({"callbacks": [{"_target_": "torch.nn.Identity"}, {"_target_": "os.system"}]})
    with pytest.raises(DisallowedTargetError, match=r"callbacks\[1\]"):
        check_targets(cfg)


def test_attribute_walk_to_foreign_object_is_refused() -> None:
    # evframe.config.instantiate imports importlib; reaching importlib.import_module through it must not pass
    cfg = OmegaConf.create({"_target_": "evframe.config.instantiate.importlib.import_module", "_args_": ["os"]})
    with pytest.raises(DisallowedTargetError, match="defined outside"):
        check_targets(cfg)


def test_unknown_evframe_target_fails_clearly() -> None:
    cfg = OmegaConf.create({"a": {"b": {"_target_": "evframe.models.temporal.NoSuchThing"}}})
    with pytest.raises(DisallowedTargetError, match=r"a\.b.*cannot be imported"):
        check_targets(cfg)


def test_user_prefix_extends_allow_list() -> None:
    cfg = OmegaConf.create({"_target_": "collections.OrderedDict"})
    with pytest.raises(DisallowedTargetError):
        check_targets(cfg)
    assert check_targets(cfg, ["collections"]) == ["collections.OrderedDict"]
    assert isinstance(instantiate(cfg, allowed_targets=["collections"]), dict)


def test_iter_targets_finds_every_nested_target() -> None:
    cfg = OmegaConf.create({"a": {"_target_": "x.A", "b": [{"_target_": "x.B"}, {"c": {"_target_": "x.C"}}]}})
    assert list(iter_targets(cfg)) == [("a", "x.A"), ("a.b[0]", "x.B"), ("a.b[1].c", "x.C")]


# ------------------------------------------------------------------------------------------------ function references
def test_reference_with_a_colon_is_checked_like_a_target() -> None:
    from evframe.config.instantiate import allowed_prefixes, check_reference
    from evframe.preprocess.functions import histo

    prefixes = allowed_prefixes()
    assert check_reference("k", "evframe.preprocess.functions:histo", prefixes) is histo
    with pytest.raises(DisallowedTargetError, match=r"config key 'k': function 'os:system' is not allowed\. "
                                                    r"Allowed: evframe\.\*"):
        check_reference("k", "os:system", prefixes, what="function")
    # the module is allowed, but the attribute walk leaves it: os.system is defined in posix (os on other systems)
    with pytest.raises(DisallowedTargetError, match=r"'evframe.run:os.system' resolves to .*system, which is defined "
                                                    r"outside the allowed packages"):
        check_reference("k", "evframe.run:os.system", prefixes, what="function")


@pytest.mark.parametrize("reference", ["evframe.run:main.__globals__", "evframe.run.main.__class__",
                                       "evframe.config.instantiate:importlib.__builtins__"])
def test_special_attributes_are_never_walked(reference: str) -> None:
    from evframe.config.instantiate import allowed_prefixes, check_reference

    with pytest.raises(DisallowedTargetError, match="special attribute '__"):
        check_reference("k", reference, allowed_prefixes())


# ------------------------------------------------------------------------------------------------ hydra.callbacks
def _hydra_cfg(callbacks: dict, **top: object) -> DictConfig:
    return OmegaConf.create({"allowed_targets": [], **top, "hydra": {"callbacks": callbacks}})


def test_hydra_callbacks_are_checked_with_their_key_and_interpolations_resolved() -> None:
    from evframe.config.instantiate import HydraTargetError, check_hydra_callbacks

    ok = {"log": {"_target_": "hydra.experimental.callbacks.LogJobReturnCallback"}}
    assert check_hydra_callbacks(_hydra_cfg(ok)) == ["hydra.experimental.callbacks.LogJobReturnCallback"]
    # a target given by interpolation is checked as Hydra would instantiate it
    hidden = _hydra_cfg({"x": {"_target_": "${opener}", "_args_": ["f", "w"]}}, opener="builtins.open")
    with pytest.raises(HydraTargetError, match=r"'hydra.callbacks.x': _target_ 'builtins.open' is not "
                                                       r"allowed. Allowed: evframe\.\*.*hydra.experimental.callbacks"):
        check_hydra_callbacks(hidden)
    # the user's allowed_targets extend the choices here too
    user = _hydra_cfg({"x": {"_target_": "collections.OrderedDict"}}, allowed_targets=["collections"])
    assert check_hydra_callbacks(user) == ["collections.OrderedDict"]


def test_guarded_hydra_callbacks_refuse_before_instantiating(tmp_path) -> None:
    from hydra._internal.callbacks import Callbacks

    from evframe.config.instantiate import HydraTargetError, guard_hydra

    guard_hydra()
    guard_hydra()  # a second call does not wrap twice
    marker = tmp_path / "FILE"
    with pytest.raises(HydraTargetError, match=r"hydra\.callbacks\.x"):
        Callbacks(_hydra_cfg({"ok": {"_target_": "hydra.experimental.callbacks.LogJobReturnCallback"},
                              "x": {"_target_": "builtins.open", "_args_": [str(marker), "w"]}}))
    assert not marker.exists()  # not even the allowed callback before it was built
    built = Callbacks(_hydra_cfg({"ok": {"_target_": "hydra.experimental.callbacks.LogJobReturnCallback"}}))
    assert [type(c).__name__ for c in built.callbacks] == ["LogJobReturnCallback"]


def test_logging_factories_classes_and_external_objects_are_checked(tmp_path) -> None:
    from evframe.config.instantiate import HydraTargetError, check_hydra_logging

    default = {"handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
                            "file": {"class": "logging.FileHandler", "filename": str(tmp_path / "run.log")}},
               "formatters": {"simple": {"format": "%(message)s"}}}
    assert check_hydra_logging(_hydra_cfg({}, hydra_logging=None)) == []
    cfg = OmegaConf.create({"hydra": {"job_logging": default}})
    assert check_hydra_logging(cfg) == ["logging.StreamHandler", "sys.stdout", "logging.FileHandler"]
    refused = {
        ("()", "builtins.open"): r"'hydra.job_logging.handlers.x.\(\)': factory 'builtins.open' is not allowed. "
                                 r"Allowed: logging\.\*, colorlog\.\*, evframe\.\*",
        ("class", "subprocess.Popen"): r"'hydra.job_logging.handlers.x.class': class 'subprocess.Popen' is not allowed",
        ("()", "logging.config.fileConfig"): r"factory 'logging.config.fileConfig' is not allowed.*"
                                             r"\(not logging.config.\*\)",
        ("()", "logging.os.system"): r"factory 'logging.os.system' resolves to .*system, which is defined outside",
        ("stream", "ext://antigravity"): r"'hydra.job_logging.handlers.x.stream': ext://antigravity is not allowed",
    }
    for (key, value), message in refused.items():
        bad = OmegaConf.create({"hydra": {"job_logging": {"handlers": {"x": {key: value}}}}})
        with pytest.raises(HydraTargetError, match=message):
            check_hydra_logging(bad)
