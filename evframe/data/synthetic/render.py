"""Rendering of a scene (warped periodic background + sprites composited in z-order) at any time."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from evframe.data.synthetic.motion import SimilarityTrajectory
from evframe.data.synthetic.shapes import Sprite

_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


@dataclass
class SceneObject:
    """A sprite moving along ``trajectory`` (sprite centre = source origin)."""

    sprite: Sprite
    trajectory: SimilarityTrajectory
    class_id: int
    track_id: int

    def __post_init__(self) -> None:
        # premultiplied intensity: bilinear warping then composites without dark fringes
        self.premultiplied = (self.sprite.intensity * self.sprite.alpha).astype(np.float32)


@dataclass
class Scene:
    """Everything needed to render a recording. ``objects`` are in z-order, bottom first."""

    height: int
    width: int
    texture: np.ndarray
    camera: SimilarityTrajectory
    objects: list[SceneObject]


@dataclass
class Layer:
    """Where an object landed in a rendered frame: its motion and its coverage ``alpha`` (h, w) at (x0, y0)."""

    index: int
    matrices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    alpha: np.ndarray
    x0: int
    y0: int


def object_region(obj: SceneObject, a: np.ndarray, b: np.ndarray, height: int,
                  width: int) -> tuple[int, int, int, int] | None:
    """Image rectangle ``(x0, y0, x1, y1)`` (exclusive end) covering the warped sprite, None if off-screen."""
    h, w = obj.sprite.alpha.shape
    cx, cy = obj.sprite.center
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]]) - [cx, cy]
    pts = corners @ a.T + b
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _inverse_map(a: np.ndarray, b: np.ndarray, origin: tuple[float, float], x0: int, y0: int) -> np.ndarray:
    """2x3 matrix mapping region pixel (x', y') = image pixel (x' + x0, y' + y0) to source pixel coordinates."""
    a_inv = np.linalg.inv(a)
    shift = a_inv @ (np.array([x0, y0], np.float64) - b) + np.asarray(origin)
    return np.hstack([a_inv, shift[:, None]])


def render(scene: Scene, t_s: float, with_layers: bool = False) -> tuple[np.ndarray, list[Layer]]:
    """Renders the frame at time ``t_s`` (seconds).

    Returns:
        image (H, W) float32 in [0, 1]; and, if ``with_layers``, one :class:`Layer` per visible object
        (bottom first), else an empty list.
    """
    a, _, b, _ = scene.camera.matrices(t_s)
    image = cv2.warpAffine(scene.texture, _inverse_map(a, b, (0.0, 0.0), 0, 0), (scene.width, scene.height),
                           flags=_WARP_FLAGS, borderMode=cv2.BORDER_WRAP)
    layers = []
    for index, obj in enumerate(scene.objects):
        matrices = obj.trajectory.matrices(t_s)
        a, _, b, _ = matrices
        region = object_region(obj, a, b, scene.height, scene.width)
        if region is None:
            continue
        x0, y0, x1, y1 = region
        m = _inverse_map(a, b, obj.sprite.center, x0, y0)
        size = (x1 - x0, y1 - y0)
        alpha = cv2.warpAffine(obj.sprite.alpha, m, size, flags=_WARP_FLAGS, borderMode=cv2.BORDER_CONSTANT)
        color = cv2.warpAffine(obj.premultiplied, m, size, flags=_WARP_FLAGS, borderMode=cv2.BORDER_CONSTANT)
        patch = image[y0:y1, x0:x1]
        patch *= 1.0 - alpha
        patch += color
        if with_layers:
            layers.append(Layer(index, matrices, alpha, x0, y0))
    return np.clip(image, 0.0, 1.0, out=image), layers
