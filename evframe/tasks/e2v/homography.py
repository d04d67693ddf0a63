"""Smooth random planar motion: homographies that move a still image like a hand-held camera would.

A :class:`HomographyTrajectory` maps source-image pixels ``q`` to frame pixels ``p`` (homogeneous, ``p ~ H(t) q``):

``H(t) = C_frame · P(t) · Z(t) R(t) · C_source(t)^-1``

* ``C_source(t)`` translates the source point ``c(t)`` (the point seen at the frame centre) to the origin:
  translation of the camera, a velocity plus smooth wobble;
* ``R(t)`` rotates by ``theta(t)`` and ``Z(t)`` zooms by ``exp(sigma(t))``;
* ``P(t)`` is a small perspective term ``[[1, 0, 0], [0, 1, 0], [g_x(t), g_y(t), 1]]`` in frame-centred
  coordinates (a tilt of the image plane);
* ``C_frame`` moves the origin back to the frame centre.

Every parameter is a :class:`~evframe.data.synthetic.motion.SmoothSignal` (linear drift plus a few sinusoids), so the
motion is smooth at any frame rate. Times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from evframe.data.synthetic.motion import SmoothSignal


@dataclass(frozen=True)
class MotionConfig:
    """Ranges of the random motions (speeds in frame pixels per second at the clip's size).

    Attributes:
        max_speed: translation speed drawn uniformly in ``[min_speed, max_speed]`` px/s, random direction.
        min_speed: see ``max_speed``.
        wobble: peak speed (px/s) of the smooth oscillation added to the translation.
        max_rotation_speed: rotation rate drawn in ``[-max, max]`` rad/s (plus a small oscillation).
        max_zoom_rate: zoom rate (log scale per second) drawn in ``[-max, max]``.
        perspective: peak tilt ``g`` times the frame half-diagonal (0.1: the far edge is ~10% smaller).
        zoom_range: initial zoom ``exp(sigma(0))`` drawn in this range (> 1 shows a magnified part of the image).
    """

    max_speed: float = 60.0
    min_speed: float = 5.0
    wobble: float = 20.0
    max_rotation_speed: float = 0.4
    max_zoom_rate: float = 0.3
    perspective: float = 0.1
    zoom_range: tuple[float, float] = (0.8, 1.4)

    def __post_init__(self) -> None:
        for name in ("max_speed", "min_speed", "wobble", "max_rotation_speed", "max_zoom_rate", "perspective"):
            if getattr(self, name) < 0:
                raise ValueError(f"MotionConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.min_speed > self.max_speed:
            raise ValueError(f"MotionConfig: min_speed={self.min_speed} > max_speed={self.max_speed}")
        low, high = self.zoom_range
        if not 0 < low <= high:
            raise ValueError(f"MotionConfig: zoom_range must be 0 < low <= high, got {self.zoom_range}")


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


@dataclass
class HomographyTrajectory:
    """Source point at the frame centre ``(cx, cy)``, rotation ``theta``, log zoom ``sigma``, tilt ``(gx, gy)``.

    ``frame_size`` is ``(height, width)`` of the rendered frames; ``gx, gy`` are per frame pixel.
    """

    cx: SmoothSignal
    cy: SmoothSignal
    theta: SmoothSignal
    sigma: SmoothSignal
    gx: SmoothSignal
    gy: SmoothSignal
    frame_size: tuple[int, int]

    def matrix(self, t: float) -> np.ndarray:
        """``H(t)`` (3, 3) float64 mapping source pixels to frame pixels (normalised so ``H[2, 2] = 1``)."""
        h, w = self.frame_size
        th, zoom = float(self.theta.value(t)), float(np.exp(self.sigma.value(t)))
        rot = np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])
        persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [float(self.gx.value(t)), float(self.gy.value(t)), 1.0]])
        scale = np.diag([zoom, zoom, 1.0])
        # pixel centres 0..w-1: the frame centre is at (w - 1) / 2
        mat = (_translation((w - 1) / 2.0, (h - 1) / 2.0) @ persp @ scale @ rot
               @ _translation(-float(self.cx.value(t)), -float(self.cy.value(t))))
        return mat / mat[2, 2]

    @staticmethod
    def random(rng: np.random.Generator, frame_size: tuple[int, int], source_center: tuple[float, float],
               config: MotionConfig, duration: float) -> HomographyTrajectory:
        """A random trajectory starting with source point ``source_center`` at the frame centre.

        Speeds are in frame pixels; the source drift is divided by the zoom so the image speed is as asked.
        """
        h, w = frame_size
        zoom0 = rng.uniform(*config.zoom_range)
        speed = rng.uniform(config.min_speed, config.max_speed) / zoom0
        angle = rng.uniform(0, 2 * np.pi)
        wobble = config.wobble / zoom0
        t_mid = duration / 2.0
        # the trajectory is centred on the middle of the clip so that the drift moves away from the centre both ways
        cx = SmoothSignal.random(rng, source_center[0], speed * np.cos(angle), t_mid, wobble)
        cy = SmoothSignal.random(rng, source_center[1], speed * np.sin(angle), t_mid, wobble)
        rot_rate = rng.uniform(-1, 1) * config.max_rotation_speed
        theta = SmoothSignal.random(rng, rng.uniform(-np.pi, np.pi), rot_rate, t_mid, 0.25 * config.max_rotation_speed)
        sigma = SmoothSignal.random(rng, float(np.log(zoom0)), rng.uniform(-1, 1) * config.max_zoom_rate, t_mid,
                                    0.25 * config.max_zoom_rate)
        half_diag = 0.5 * float(np.hypot(h, w))
        g_peak = config.perspective / half_diag
        gx = SmoothSignal.oscillation(rng, rng.uniform(-0.5, 0.5) * g_peak, 0.5 * g_peak)
        gy = SmoothSignal.oscillation(rng, rng.uniform(-0.5, 0.5) * g_peak, 0.5 * g_peak)
        return HomographyTrajectory(cx, cy, theta, sigma, gx, gy, (int(h), int(w)))


def warp_image(source: np.ndarray, homography: np.ndarray, frame_size: tuple[int, int],
               border: int = cv2.BORDER_REFLECT101) -> np.ndarray:
    """Renders the frame ``out(p) = source(H^-1 p)`` (bilinear) of size ``frame_size = (height, width)``.

    Args:
        source: (Hs, Ws) float32 image.
        homography: (3, 3) source-to-frame matrix.
        border: OpenCV border mode outside the source (``BORDER_WRAP`` for periodic textures).
    """
    h, w = frame_size
    return cv2.warpPerspective(source, homography, (int(w), int(h)), flags=cv2.INTER_LINEAR, borderMode=border)


def homography_flow(h_from: np.ndarray, h_to: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow from the frame rendered with ``h_to`` to the one rendered with ``h_from``.

    For each pixel ``p`` of the ``h_to`` frame, ``flow(p) = h_from · h_to^-1 · p - p``: where the same source point was
    in the ``h_from`` frame. Warping the earlier frame with :func:`evframe.tasks.flow.warping.backward_warp` by this
    flow aligns it with the later one.

    Returns:
        ``flow`` (2, H, W) float32 (x then y, pixels) and ``inside`` (H, W) bool: the point was inside the earlier
        frame (elsewhere the earlier frame has no information about it).
    """
    h, w = frame_size
    mapping = h_from @ np.linalg.inv(h_to)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], 0).reshape(3, -1)
    mapped = mapping @ pts
    mapped = mapped[:2] / mapped[2:3]
    flow = (mapped - pts[:2]).reshape(2, h, w)
    inside = ((mapped[0] >= 0) & (mapped[0] <= w - 1) & (mapped[1] >= 0) & (mapped[1] <= h - 1)).reshape(h, w)
    return flow.astype(np.float32), inside
