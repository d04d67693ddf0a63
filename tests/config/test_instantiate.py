"""The allow-listed instantiate: bad targets fail before anything is built, naming the key and the choices."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

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
