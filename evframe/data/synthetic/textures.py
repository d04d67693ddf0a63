"""Procedural grayscale textures: smooth multi-scale noise plus hard-edged shapes and gratings.

Background textures are periodic (tileable) so that the camera can drift forever with ``BORDER_WRAP``;
periodicity is exact: noise is filtered in the Fourier domain, gratings use integer frequencies and shapes
are pasted with wrapped indices.
"""

from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(rng: np.random.Generator, height: int, width: int, beta: float = 1.8,
                  min_wavelength: float = 4.0) -> np.ndarray:
    """Periodic 1/f^beta noise (H, W) float32 with zero mean and unit std.

    ``min_wavelength`` (pixels) low-passes the noise so that warping it does not alias.
    """
    white = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    gain = radius ** (-beta) * np.exp(-(radius * min_wavelength) ** 2)
    gain[0, 0] = 0.0
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(height, width))
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(np.float32)


def grating(rng: np.random.Generator, height: int, width: int, min_wavelength: float = 6.0,
            max_wavelength: float = 40.0, periodic: bool = True) -> np.ndarray:
    """An oriented sinusoid (H, W) float32 in [-1, 1]; periodic on the canvas when ``periodic``."""
    wavelength = rng.uniform(min_wavelength, max_wavelength)
    angle = rng.uniform(0, np.pi)
    fx, fy = np.cos(angle) / wavelength, np.sin(angle) / wavelength
    if periodic:
        # integer number of periods across the canvas (at least one along the dominant axis)
        fx, fy = np.round(fx * width) / width, np.round(fy * height) / height
        if fx == 0 and fy == 0:
            fx = 1.0 / width
    ys, xs = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi)
    return np.sin(2 * np.pi * (fx * xs + fy * ys) + phase).astype(np.float32)


def _shape_mask(rng: np.random.Generator, size: float, supersample: int = 4) -> np.ndarray:
    """A random shape (rectangle, rotated rectangle, ellipse or convex polygon) as a soft mask in [0, 1].

    Drawn at ``supersample`` times the resolution then area-averaged, so edges are anti-aliased.
    """
    side = int(np.ceil(size * 1.5)) + 4
    big = np.zeros((side * supersample, side * supersample), np.uint8)
    center = np.array([side, side], np.float64) * supersample / 2
    radius = size * supersample / 2
    kind = rng.integers(4)
    if kind == 0:  # axis-aligned rectangle (buildings, windows, road marks)
        half = radius * rng.uniform(0.3, 1.0, size=2)
        p0, p1 = (center - half).astype(np.int32), (center + half).astype(np.int32)
        cv2.rectangle(big, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, thickness=-1)
    elif kind == 1:  # rotated rectangle
        half = radius * rng.uniform(0.2, 0.9, size=2)
        box = cv2.boxPoints(((center[0], center[1]), (2 * half[0], 2 * half[1]), rng.uniform(0, 180)))
        cv2.fillPoly(big, [box.astype(np.int32)], 255)
    elif kind == 2:  # ellipse
        axes = (radius * rng.uniform(0.3, 1.0, size=2)).astype(int)
        cv2.ellipse(big, tuple(int(v) for v in center), tuple(int(v) for v in axes), rng.uniform(0, 180), 0, 360,
                    255, thickness=-1)
    else:  # convex polygon
        n = rng.integers(3, 8)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = radius * rng.uniform(0.5, 1.0, n)
        pts = center + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
        cv2.fillPoly(big, [pts.astype(np.int32)], 255)
    return cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def paste_wrapped(canvas: np.ndarray, mask: np.ndarray, fill: np.ndarray | float, x0: int, y0: int) -> None:
    """Alpha-blends ``fill`` through ``mask`` (h, w) into ``canvas`` at (x0, y0), wrapping around the edges."""
    h, w = mask.shape
    rows = np.arange(y0, y0 + h) % canvas.shape[0]
    cols = np.arange(x0, x0 + w) % canvas.shape[1]
    region = canvas[np.ix_(rows, cols)]
    canvas[np.ix_(rows, cols)] = region * (1 - mask) + fill * mask


def background_texture(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """Periodic (size, size) float32 background in [0.05, 0.95]: a piecewise-constant scene of shapes at several
    scales (hard edges), with smooth shading, fine noise and a few gratings inside shapes.

    ``scale`` multiplies the shape sizes (1 = sizes for a 240-pixel-high sensor).
    """
    base = 0.5 + 0.18 * fractal_noise(rng, size, size, beta=2.2, min_wavelength=16 * max(scale, 0.25))
    canvas = base.astype(np.float32)
    area = size * size
    # large to small: big regions first, details on top (like a street scene seen from afar)
    for mean_size, density in ((90.0, 0.4), (40.0, 0.4), (16.0, 0.3), (7.0, 0.15)):
        shape_size = max(mean_size * scale, 3.0)
        count = int(density * area / (shape_size * shape_size))
        for _ in range(count):
            mask = _shape_mask(rng, shape_size * rng.uniform(0.6, 1.4))
            level = rng.uniform(0.08, 0.92)
            h, w = mask.shape
            if rng.random() < 0.2 and h > 12:
                # textured fill: gratings give the flow network oriented structure to lock onto
                fill = level + 0.2 * grating(rng, h, w, 4.0, max(6.0, h / 2), periodic=False)
            else:
                fill = level
            paste_wrapped(canvas, mask, fill, int(rng.integers(size)), int(rng.integers(size)))
    canvas += 0.04 * fractal_noise(rng, size, size, beta=1.0, min_wavelength=3.0)
    return np.clip(canvas, 0.05, 0.95).astype(np.float32)


def object_texture(rng: np.random.Generator, height: int, width: int, level: float,
                   contrast: float = 0.12) -> np.ndarray:
    """Non-periodic fill (H, W) float32 around ``level``: smooth noise plus an optional grating."""
    tex = level + contrast * fractal_noise(rng, height, width, beta=1.6, min_wavelength=6.0)
    if rng.random() < 0.5:
        tex += 0.5 * contrast * grating(rng, height, width, 8.0, max(10.0, width / 3), periodic=False)
    return np.clip(tex, 0.03, 0.97).astype(np.float32)
