"""Config machinery: resolvers for derived values, the safe instantiate function, validation and printing."""

from evframe.config.instantiate import (
    DisallowedTargetError,
    check_reference,
    check_targets,
    guard_hydra,
    instantiate,
)
from evframe.config.resolvers import register_resolvers

__all__ = ["DisallowedTargetError", "check_reference", "check_targets", "guard_hydra", "instantiate",
           "register_resolvers"]
