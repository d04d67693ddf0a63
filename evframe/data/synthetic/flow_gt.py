"""Exact ground-truth optical flow of the rendered scene.

A surface whose source point q is drawn at ``p = A(t) q + b(t)`` moves, at image point p, with velocity
``v(p) = dA/dt A^-1 (p - b) + db/dt`` (for a similarity: translation + rotation rate x r + scale rate * r).
The flow at a pixel is the velocity of the top-most surface there: the camera (background) everywhere,
overwritten by each object inside its alpha mask (alpha >= 0.5), painted in z-order.
"""

from __future__ import annotations

import numpy as np


def affine_velocity(a: np.ndarray, da: np.ndarray, b: np.ndarray, db: np.ndarray, xs: np.ndarray,
                    ys: np.ndarray) -> np.ndarray:
    """Velocity (2, *xs.shape) float32 in px/s at image points (xs, ys) of the surface ``p = A(t) q + b(t)``.

    Args:
        a, da: (2, 2) matrix and its time derivative (1/s).
        b, db: (2,) translation (px) and its time derivative (px/s).
        xs, ys: image coordinates in pixels (pixel centres at integers), any identical shapes.
    """
    m = da @ np.linalg.inv(a)
    rx, ry = xs - b[0], ys - b[1]
    vx = m[0, 0] * rx + m[0, 1] * ry + db[0]
    vy = m[1, 0] * rx + m[1, 1] * ry + db[1]
    return np.stack([vx, vy]).astype(np.float32)


def compose_flow(height: int, width: int, background: tuple, layers: list[tuple]) -> np.ndarray:
    """Dense flow (2, H, W) float32 px/s of the top-most surface.

    Args:
        background: ``(A, dA, b, db)`` of the camera, covering every pixel.
        layers: bottom-to-top list of ``(A, dA, b, db, mask, x0, y0)`` where ``mask`` (h, w) bool marks the
            pixels the layer covers inside the region whose top-left pixel is (x0, y0).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    flow = affine_velocity(*background, xs, ys)
    for a, da, b, db, mask, x0, y0 in layers:
        if not mask.any():
            continue
        ly, lx = np.nonzero(mask)
        gx, gy = lx + x0, ly + y0
        flow[:, gy, gx] = affine_velocity(a, da, b, db, gx.astype(np.float64), gy.astype(np.float64))
    return flow
