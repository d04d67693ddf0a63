"""Drawing of input tensors and batches as RGB uint8 images (``SequentialDataLoader.show``).

Each preprocessing has a *vis function* ``(C, H, W) array -> (H, W, 3) uint8 RGB`` registered under its name;
unknown names fall back to the mean absolute value of the channels in gray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

VisFunc = Callable[[np.ndarray], np.ndarray]
_VIS_FUNCS: dict[str, VisFunc] = {}


def register_vis(*names: str) -> Callable[[VisFunc], VisFunc]:
    """Decorator registering a vis function under the given preprocessing names."""

    def wrap(func: VisFunc) -> VisFunc:
        for name in names:
            _VIS_FUNCS[name] = func
        return func

    return wrap


def get_vis_func(name: str) -> VisFunc:
    """The vis function of preprocessing ``name`` (generic gray rendering when none is registered)."""
    return _VIS_FUNCS.get(name, vis_generic)


def available_vis() -> list[str]:
    return sorted(_VIS_FUNCS)


def _as_numpy(tensor: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().numpy()
    tensor = np.asarray(tensor, dtype=np.float32)
    if tensor.ndim != 3:
        raise ValueError(f"vis functions take one (C, H, W) input, got shape {tensor.shape}")
    return tensor


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1] by its largest absolute value (all zeros stay zeros)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    return np.abs(x) / peak if peak > 0 else np.zeros_like(x)


def _signed_to_uint8(x: np.ndarray) -> np.ndarray:
    """Signed values to gray levels around 128 (0 -> 128, largest magnitude -> 0 or 255)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    scaled = x / peak if peak > 0 else np.zeros_like(x)
    return np.clip(np.round(128 + 127 * scaled), 0, 255).astype(np.uint8)


@register_vis("histo", "histo_quantized")
def vis_histo(tensor: np.ndarray) -> np.ndarray:
    """Two-channel histograms (channel 0: OFF events, channel 1: ON events): OFF in red, ON in blue, on black."""
    x = _as_numpy(tensor)
    neg, pos = _unit(x[0]), _unit(x[1] if len(x) > 1 else np.zeros_like(x[0]))
    img = np.zeros((*x.shape[1:], 3), dtype=np.float32)
    img[..., 0] = neg
    img[..., 2] = pos
    img[..., 1] = np.minimum(neg, pos)  # pixels with both polarities turn toward white
    return (img * 255).round().astype(np.uint8)


@register_vis("diff", "diff_quantized")
def vis_diff(tensor: np.ndarray) -> np.ndarray:
    """Signed polarity difference in gray: 128 where nothing happened, brighter for ON, darker for OFF."""
    x = _as_numpy(tensor)
    gray = _signed_to_uint8(x.sum(axis=0))
    return np.repeat(gray[..., None], 3, axis=2)


@register_vis("event_cube", "event_cube_per_bin")
def vis_event_cube(tensor: np.ndarray) -> np.ndarray:
    """Event cube: ON minus OFF per micro time bin (first half of channels OFF, second ON when split), the first
    three micro bins shown as R, G, B around gray."""
    x = _as_numpy(tensor)
    c = len(x)
    signed = x[c // 2:] - x[: c // 2] if c % 2 == 0 and c >= 6 else x
    rgb = np.zeros((3, *x.shape[1:]), dtype=np.float32)
    k = min(3, len(signed))
    rgb[:k] = signed[:k]
    if k < 3:
        rgb[k:] = signed[:1]
    return _signed_to_uint8(rgb).transpose(1, 2, 0).copy()


@register_vis("timesurface", "multi_channel_timesurface")
def vis_timesurface(tensor: np.ndarray) -> np.ndarray:
    """Time surfaces: first half of the channels (OFF) in red, second half (ON) in blue, brighter = more recent."""
    x = _as_numpy(tensor)
    half = max(1, len(x) // 2)
    neg = _unit(x[:half].max(axis=0))
    pos = _unit(x[half:].max(axis=0)) if len(x) > 1 else np.zeros_like(neg)
    img = np.stack([neg, np.minimum(neg, pos), pos], axis=-1)
    return (img * 255).round().astype(np.uint8)


def vis_generic(tensor: np.ndarray) -> np.ndarray:
    """Any tensor: mean absolute value of its channels in gray (brightest = largest)."""
    x = _as_numpy(tensor)
    gray = (_unit(np.abs(x).mean(axis=0)) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def make_grid(images: Sequence[np.ndarray], ncols: int | None = None) -> np.ndarray:
    """Tiles B images (h, w, 3) in rows of ``ncols`` (default ``ceil(sqrt(B))``); empty cells are black.

    Returns:
        uint8 (rows * h, ncols * w, 3).
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    h, w = images[0].shape[:2]
    ncols = ncols or math.ceil(math.sqrt(len(images)))
    nrows = math.ceil(len(images) / ncols)
    grid = np.zeros((nrows * h, ncols * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    return grid


def batch_frames(batch: dict, vis_func: VisFunc,
                 viz_labels: Callable[[np.ndarray, Any], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """For each time bin of a batch dict, the grid image of its B inputs (labels drawn by ``viz_labels``)."""
    inputs = batch["inputs"]
    num_tbins, batch_size = inputs.shape[:2]
    for t in range(num_tbins):
        frames = []
        for b in range(batch_size):
            frame = np.ascontiguousarray(vis_func(inputs[t, b]))
            label = batch["labels"][t][b]
            if viz_labels is not None and label is not None:
                frame = viz_labels(frame, label)
            frames.append(frame)
        yield make_grid(frames)


def show_batches(batches: Iterable[dict], vis_func: VisFunc,
                 viz_labels: Callable[[np.ndarray, Any], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Grid images of every time bin of every batch of ``batches`` (e.g. a ``SequentialDataLoader``)."""
    for batch in batches:
        yield from batch_frames(batch, vis_func, viz_labels)


def draw_boxes(frame: np.ndarray, boxes: np.ndarray, label_map: Sequence[str] | None = None,
               color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """``viz_labels`` for ``BBOX_DTYPE`` boxes: rectangles (and class names when ``label_map`` is given)."""
    import cv2

    for box in boxes:
        x, y, w, h = (int(round(float(box[k]))) for k in ("x", "y", "w", "h"))
        cv2.rectangle(frame, (x, y), (x + w, y + h), color, 1)
        if label_map is not None and int(box["class_id"]) < len(label_map):
            cv2.putText(frame, str(label_map[int(box["class_id"])]), (x, max(y - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.3, color, 1)
    return frame
