"""Config machinery: resolvers for derived values, the safe instantiate function, validation and printing."""

from evframe.config.instantiate import DisallowedTargetError, check_targets, instantiate
from evframe.config.resolvers import register_resolvers

__all__ = ["DisallowedTargetError", "check_targets", "instantiate", "register_resolvers"]
