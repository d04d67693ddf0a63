"""Textured object sprites (intensity + anti-aliased alpha), one drawing function per class.

A sprite is drawn at ``SUPERSAMPLE`` times its size with integer cv2 primitives, then area-averaged, so its
alpha mask has smooth edges. Each part is filled with its own texture so objects produce events inside,
not only along their silhouette.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from evframe.data.synthetic.textures import object_texture

SUPERSAMPLE = 4

#: nominal (width, height) of each class at a 240-pixel-high sensor
NOMINAL_SIZES = {"car": (60.0, 30.0), "pedestrian": (16.0, 46.0), "two_wheeler": (44.0, 34.0)}


@dataclass
class Sprite:
    """Sprite image (h, w) float32 in [0, 1], alpha (h, w) float32 in [0, 1]; ``center`` is its origin (x, y)."""

    intensity: np.ndarray
    alpha: np.ndarray
    class_name: str

    @property
    def center(self) -> tuple[float, float]:
        h, w = self.alpha.shape
        return (w - 1) / 2.0, (h - 1) / 2.0

    @property
    def area(self) -> float:
        """Area of the silhouette in sprite pixels."""
        return float(self.alpha.sum())


class _Painter:
    """Supersampled canvas: each ``fill`` call stamps a textured part through a drawn mask."""

    def __init__(self, rng: np.random.Generator, width: float, height: float, pad: int = 2) -> None:
        self.rng = rng
        self.pad = pad
        self.w = int(np.ceil(width)) + 2 * pad
        self.h = int(np.ceil(height)) + 2 * pad
        self.s = SUPERSAMPLE
        self.intensity = np.zeros((self.h * self.s, self.w * self.s), np.float32)
        self.alpha = np.zeros_like(self.intensity)

    def pt(self, x: float, y: float) -> tuple[int, int]:
        """Object coordinates (pixels from the top-left of the object box) -> supersampled canvas point."""
        return int(round((x + self.pad) * self.s)), int(round((y + self.pad) * self.s))

    def length(self, v: float) -> int:
        return max(1, int(round(v * self.s)))

    def fill(self, draw: Callable[[np.ndarray], None], level: float, textured: bool = True) -> None:
        mask = np.zeros_like(self.alpha, dtype=np.uint8)
        draw(mask)
        sel = mask > 0
        if textured:
            tex = object_texture(self.rng, self.h, self.w, level)
            tex = cv2.resize(tex, (self.w * self.s, self.h * self.s), interpolation=cv2.INTER_LINEAR)
            self.intensity[sel] = tex[sel]
        else:
            self.intensity[sel] = level
        self.alpha[sel] = 1.0

    def sprite(self, class_name: str) -> Sprite:
        size = (self.w, self.h)
        alpha = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA)
        # premultiplied downsampling so that the transparent (black) area does not darken the edges
        weighted = cv2.resize(self.intensity * self.alpha, size, interpolation=cv2.INTER_AREA)
        intensity = np.where(alpha > 1e-3, weighted / np.maximum(alpha, 1e-3), 0.0)
        return Sprite(np.clip(intensity, 0, 1).astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32),
                      class_name)


def _contrasting_levels(rng: np.random.Generator, n: int) -> list[float]:
    """``n`` intensities spread apart so that the parts of an object are separated by visible edges."""
    levels = rng.permutation(np.linspace(0.15, 0.85, n) + rng.uniform(-0.05, 0.05, n))
    return [float(v) for v in levels]


def draw_car(rng: np.random.Generator, width: float, height: float) -> Sprite:
    """Side view: rounded body, cabin with two windows, two wheels with hubs."""
    p = _Painter(rng, width, height)
    body, cabin, window, wheel = _contrasting_levels(rng, 4)
    wheel_r = 0.2 * height
    body_top, body_bottom = 0.42 * height, height - wheel_r * 0.9
    radius = p.length(0.15 * height)

    def body_shape(m: np.ndarray) -> None:
        x0, y0 = p.pt(0, body_top)
        x1, y1 = p.pt(width, body_bottom)
        cv2.rectangle(m, (x0 + radius, y0), (x1 - radius, y1), 255, -1)
        cv2.rectangle(m, (x0, y0 + radius), (x1, y1 - radius), 255, -1)
        for cx, cy in ((x0 + radius, y0 + radius), (x1 - radius, y0 + radius), (x0 + radius, y1 - radius),
                       (x1 - radius, y1 - radius)):
            cv2.circle(m, (cx, cy), radius, 255, -1)

    def cabin_shape(m: np.ndarray) -> None:
        pts = [p.pt(0.2 * width, body_top + 1), p.pt(0.32 * width, 0), p.pt(0.72 * width, 0),
               p.pt(0.85 * width, body_top + 1)]
        cv2.fillPoly(m, [np.array(pts, np.int32)], 255)

    def windows(m: np.ndarray) -> None:
        inset = 0.12 * body_top
        for xa, xb in ((0.25, 0.5), (0.53, 0.8)):
            pts = [p.pt(xa * width + inset, body_top - inset * 0.5), p.pt(max(xa, 0.34) * width + inset, inset),
                   p.pt(min(xb, 0.7) * width - inset, inset), p.pt(xb * width - inset, body_top - inset * 0.5)]
            cv2.fillPoly(m, [np.array(pts, np.int32)], 255)

    def wheels(m: np.ndarray) -> None:
        for cx in (0.22 * width, 0.78 * width):
            cv2.circle(m, p.pt(cx, height - wheel_r), p.length(wheel_r), 255, -1)

    def hubs(m: np.ndarray) -> None:
        for cx in (0.22 * width, 0.78 * width):
            cv2.circle(m, p.pt(cx, height - wheel_r), p.length(wheel_r * 0.45), 255, -1)

    p.fill(cabin_shape, cabin)
    p.fill(body_shape, body)
    p.fill(windows, window, textured=False)
    p.fill(wheels, wheel)
    p.fill(hubs, 1.0 - wheel, textured=False)
    return p.sprite("car")


def draw_pedestrian(rng: np.random.Generator, width: float, height: float) -> Sprite:
    """Front view: head, elliptic torso with arms, two legs."""
    p = _Painter(rng, width, height)
    skin, torso, legs, arms = _contrasting_levels(rng, 4)
    head_r = 0.1 * height

    def legs_shape(m: np.ndarray) -> None:
        for xa in (0.22, 0.56):
            cv2.rectangle(m, p.pt(xa * width, 0.55 * height), p.pt((xa + 0.22) * width, height), 255, -1)

    def arms_shape(m: np.ndarray) -> None:
        for xa in (0.0, 0.8):
            cv2.rectangle(m, p.pt(xa * width, 0.25 * height), p.pt((xa + 0.2) * width, 0.55 * height), 255, -1)

    def torso_shape(m: np.ndarray) -> None:
        cv2.ellipse(m, p.pt(0.5 * width, 0.42 * height), (p.length(0.36 * width), p.length(0.22 * height)), 0, 0,
                    360, 255, -1)

    def head_shape(m: np.ndarray) -> None:
        cv2.circle(m, p.pt(0.5 * width, head_r), p.length(head_r), 255, -1)

    p.fill(legs_shape, legs)
    p.fill(arms_shape, arms)
    p.fill(torso_shape, torso)
    p.fill(head_shape, skin, textured=False)
    return p.sprite("pedestrian")


def draw_two_wheeler(rng: np.random.Generator, width: float, height: float) -> Sprite:
    """Side view: two spoked wheels joined by a frame bar, a rider on top."""
    p = _Painter(rng, width, height)
    tyre, frame, rider, head = _contrasting_levels(rng, 4)
    wheel_r = 0.22 * width
    cy = height - wheel_r
    centers = (wheel_r, width - wheel_r)

    def tyres(m: np.ndarray) -> None:
        for cx in centers:
            # the stroke is centred on the radius: shrink it so that the tyre's outer edge is at wheel_r
            cv2.circle(m, p.pt(cx, cy), p.length(0.87 * wheel_r), 255, p.length(0.25 * wheel_r))
            for k in range(4):  # spokes
                a = k * np.pi / 4
                d = np.array([np.cos(a), np.sin(a)]) * 0.87 * wheel_r
                cv2.line(m, p.pt(cx - d[0], cy - d[1]), p.pt(cx + d[0], cy + d[1]), 255, p.length(0.08 * wheel_r))

    def frame_shape(m: np.ndarray) -> None:
        thick = p.length(0.1 * height)
        seat = (0.45 * width, 0.45 * height)
        cv2.line(m, p.pt(centers[0], cy), p.pt(*seat), 255, thick)
        cv2.line(m, p.pt(*seat), p.pt(centers[1], cy), 255, thick)
        cv2.line(m, p.pt(centers[0], cy), p.pt(centers[1], cy), 255, thick)
        cv2.line(m, p.pt(centers[1], cy), p.pt(0.75 * width, 0.3 * height), 255, thick)

    def rider_shape(m: np.ndarray) -> None:
        cv2.ellipse(m, p.pt(0.48 * width, 0.33 * height), (p.length(0.12 * width), p.length(0.2 * height)), 15, 0,
                    360, 255, -1)

    def head_shape(m: np.ndarray) -> None:
        cv2.circle(m, p.pt(0.52 * width, 0.09 * height), p.length(0.09 * height), 255, -1)

    p.fill(tyres, tyre)
    p.fill(frame_shape, frame)
    p.fill(rider_shape, rider)
    p.fill(head_shape, head, textured=False)
    return p.sprite("two_wheeler")


DRAWERS: dict[str, Callable[[np.random.Generator, float, float], Sprite]] = {
    "car": draw_car, "pedestrian": draw_pedestrian, "two_wheeler": draw_two_wheeler,
}


def make_sprite(rng: np.random.Generator, class_name: str, scale: float, mirror: bool = False) -> Sprite:
    """Draws a random instance of ``class_name`` at ``scale`` times its nominal size (mirrored if asked)."""
    if class_name not in DRAWERS:
        raise ValueError(f"make_sprite: no drawing for class {class_name!r}; known classes: {sorted(DRAWERS)}")
    w, h = NOMINAL_SIZES[class_name]
    aspect = rng.uniform(0.9, 1.1)
    sprite = DRAWERS[class_name](rng, max(w * scale * aspect, 3.0), max(h * scale / aspect, 3.0))
    if mirror:
        sprite = Sprite(sprite.intensity[:, ::-1].copy(), sprite.alpha[:, ::-1].copy(), sprite.class_name)
    return sprite
