"""Videos of predicted flow: arrows over the event tensor, one frame per time bin, batches tiled in a grid."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from evframe.data.visualize import get_vis_func, make_grid
from evframe.tasks.flow.viz import draw_arrows
from evframe.tasks.video_callback import model_batches


@torch.no_grad()
def flow_video_frames(model: torch.nn.Module, batches: Iterable[dict[str, Any]], preprocess_name: str,
                      max_batches: int, mask_by_input: bool = True, step: int = 8) -> Iterator[np.ndarray]:
    """Runs ``model`` (a :class:`FlowLightningModule`) over ``batches`` and yields RGB frames with flow arrows.

    The model's memory is cleared before and after, and reset by each batch's ``mask_keep_memory``; its train/eval
    mode is restored afterwards.
    """
    vis = get_vis_func(preprocess_name)
    for _batch, inputs in model_batches(model, batches, max_batches):
        flow = model(inputs)[-1].float().cpu().numpy()
        inputs = inputs.cpu().numpy()
        for t in range(inputs.shape[0]):
            tiles = []
            for b in range(inputs.shape[1]):
                mask = np.abs(inputs[t, b]).sum(0) > 0 if mask_by_input else None
                tiles.append(draw_arrows(vis(inputs[t, b]), flow[t, b], step=step, mask=mask))
            yield make_grid(tiles)
