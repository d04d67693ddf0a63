"""Videos of reconstructions: events, reconstruction and ground truth side by side, one frame per time bin."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from evframe.data.visualize import get_vis_func, make_grid
from evframe.tasks.e2v.lightning_module import frame_targets
from evframe.tasks.video_callback import model_batches


def gray_to_rgb(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """A frame ``(1, H, W)`` or ``(H, W)`` in [0, 1] as ``(H, W, 3)`` uint8."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().float().cpu().numpy()
    frame = np.asarray(frame, np.float32).reshape(frame.shape[-2:])
    gray = np.clip(np.round(frame * 255), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


@torch.no_grad()
def reconstruction_frames(module: torch.nn.Module, batches: Iterable[dict[str, Any]], preprocess_name: str,
                          max_batches: int, max_streams: int = 4, with_target: bool = True) -> Iterator[np.ndarray]:
    """Runs ``module`` (an :class:`EventToVideoLightningModel`) over ``batches`` and yields RGB frames.

    Each frame tiles up to ``max_streams`` streams; each tile is ``[events | reconstruction | ground truth]``
    (ground truth black where a bin has none; left out when ``with_target`` is False). The module's memory is
    cleared before and after and reset by each batch's ``mask_keep_memory``; its train/eval mode is restored.
    """
    vis = get_vis_func(preprocess_name)
    for batch, inputs in model_batches(module, batches, max_batches):
        pred = module(inputs).float().cpu()
        if with_target:
            target, valid = frame_targets({**batch, "inputs": inputs})
            target, valid = target.cpu(), valid.cpu()
        events = inputs.float().cpu().numpy()
        for t in range(inputs.shape[0]):
            tiles = []
            for b in range(min(inputs.shape[1], max_streams)):
                parts = [vis(events[t, b]), gray_to_rgb(pred[t, b])]
                if with_target:
                    parts.append(gray_to_rgb(target[t, b]) if bool(valid[t, b]) else np.zeros_like(parts[1]))
                tiles.append(np.concatenate(parts, axis=1))
            yield make_grid(tiles, ncols=1 if len(tiles) < 3 else 2)
