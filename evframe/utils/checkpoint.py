"""Loading weights from Lightning checkpoints without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch


def load_module_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Loads the ``state_dict`` of a Lightning checkpoint into ``module`` (``weights_only=True``: tensors only).

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: the checkpoint's weights do not match ``module`` (listing missing and unexpected keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = state.get("state_dict", state)
    result = module.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not match {type(module).__name__}: missing {result.missing_keys[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}"
        )
