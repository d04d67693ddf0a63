"""Box and flow labels from the layers of a rendered frame."""

from __future__ import annotations

import numpy as np

from evframe.data.synthetic.flow_gt import compose_flow
from evframe.data.synthetic.render import Layer, Scene
from evframe.io.dtypes import BBOX_DTYPE

#: a pixel belongs to an object where its warped alpha reaches this value
COVERAGE_THRESHOLD = 0.5


def visible_ids(scene: Scene, layers: list[Layer]) -> np.ndarray:
    """(H, W) int32 map of the top-most object index per pixel (-1 = background), painted in z-order."""
    ids = np.full((scene.height, scene.width), -1, np.int32)
    for layer in layers:
        h, w = layer.alpha.shape
        region = ids[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
        region[layer.alpha >= COVERAGE_THRESHOLD] = layer.index
    return ids


def boxes_at(scene: Scene, layers: list[Layer], t_us: int, min_visible_fraction: float,
             min_box_size: float) -> np.ndarray:
    """Boxes (BBOX_DTYPE) of the objects at time ``t_us``: tight box of the object's in-frame silhouette
    (occluded parts included, clipped to the frame), dropped when its visible area is below
    ``min_visible_fraction`` of its full area (occluded or out of frame) or its clipped side < ``min_box_size``.
    """
    ids = visible_ids(scene, layers)
    rows = []
    for layer in layers:
        obj = scene.objects[layer.index]
        cover = layer.alpha >= COVERAGE_THRESHOLD
        if not cover.any():
            continue
        a = layer.matrices[0]
        full_area = obj.sprite.area * abs(np.linalg.det(a))
        h, w = cover.shape
        visible = int((ids[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w] == layer.index).sum())
        ys, xs = np.nonzero(cover)
        x0, x1 = xs.min() + layer.x0, xs.max() + layer.x0 + 1
        y0, y1 = ys.min() + layer.y0, ys.max() + layer.y0 + 1
        if visible < min_visible_fraction * full_area or min(x1 - x0, y1 - y0) < min_box_size:
            continue
        rows.append((t_us, x0, y0, x1 - x0, y1 - y0, obj.class_id, obj.track_id, 1.0))
    boxes = np.array(rows, dtype=[(n, BBOX_DTYPE.fields[n][0]) for n in BBOX_DTYPE.names])
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for name in BBOX_DTYPE.names:
        out[name] = boxes[name]
    return out[np.argsort(out["track_id"], kind="stable")]


def flow_at(scene: Scene, layers: list[Layer], t_s: float) -> np.ndarray:
    """Exact flow (2, H, W) float32 px/s at ``t_s``: camera motion, overwritten by each covering object."""
    objects = [(*layer.matrices, layer.alpha >= COVERAGE_THRESHOLD, layer.x0, layer.y0) for layer in layers]
    return compose_flow(scene.height, scene.width, scene.camera.matrices(t_s), objects)
