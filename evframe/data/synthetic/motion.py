"""Smooth random similarity transforms with analytic time derivatives.

A transform maps source coordinates q (sprite or texture pixels, relative to an origin) to image pixels:
``p = A(t) q + b(t)`` with ``A = exp(sigma(t)) R(theta(t))``. Every parameter is "linear + a few sinusoids",
so its derivative is exact, which makes the ground-truth flow exact (see flow_gt.py). Times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SmoothSignal:
    """``value(t) = offset + slope * (t - t_ref) + sum_k amp_k * sin(2 pi freq_k t + phase_k)``."""

    offset: float = 0.0
    slope: float = 0.0
    t_ref: float = 0.0
    amps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    freqs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def value(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, np.float64)
        waves = np.sin(2 * np.pi * self.freqs * t[..., None] + self.phases) @ self.amps if len(self.amps) else 0.0
        return self.offset + self.slope * (t - self.t_ref) + waves

    def derivative(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, np.float64)
        if len(self.amps):
            waves = np.cos(2 * np.pi * self.freqs * t[..., None] + self.phases) @ (2 * np.pi * self.freqs * self.amps)
        else:
            waves = 0.0
        return self.slope + waves + np.zeros_like(t)

    @staticmethod
    def random(rng: np.random.Generator, offset: float, slope: float, t_ref: float, speed: float,
               n_waves: int = 2, freq_range: tuple[float, float] = (0.3, 1.5)) -> SmoothSignal:
        """A random signal whose oscillating part has a peak rate of change about ``speed`` (units/s)."""
        freqs = rng.uniform(*freq_range, n_waves)
        # amplitude so that each wave contributes speed / n_waves to the derivative at most
        amps = speed / n_waves / (2 * np.pi * freqs) * rng.uniform(0.3, 1.0, n_waves)
        return SmoothSignal(offset, slope, t_ref, amps, freqs, rng.uniform(0, 2 * np.pi, n_waves))

    @staticmethod
    def oscillation(rng: np.random.Generator, offset: float, amplitude: float,
                    freq_range: tuple[float, float] = (0.2, 0.8)) -> SmoothSignal:
        """``offset`` plus one sinusoid of amplitude in [amplitude / 2, amplitude] (zoom, small rotations)."""
        amps = np.array([amplitude * rng.uniform(0.5, 1.0)])
        return SmoothSignal(offset, 0.0, 0.0, amps, rng.uniform(*freq_range, 1), rng.uniform(0, 2 * np.pi, 1))


@dataclass
class SimilarityTrajectory:
    """``p = exp(sigma) R(theta) (q - q_c(t)) + p_c(t)``: source point ``q_c`` is shown at image point ``p_c``.

    Objects use a fixed ``q_c = 0`` (sprite centre) and a moving ``p_c``; the camera looks at a moving texture
    point ``q_c`` from a fixed ``p_c`` (image centre). Both are the general affine ``p = A q + b``.
    """

    px: SmoothSignal
    py: SmoothSignal
    theta: SmoothSignal
    sigma: SmoothSignal
    qx: SmoothSignal = field(default_factory=SmoothSignal)
    qy: SmoothSignal = field(default_factory=SmoothSignal)

    def matrices(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``A (2,2), dA/dt (2,2), b (2,), db/dt (2,)`` at time ``t`` (seconds)."""
        th, dth = float(self.theta.value(t)), float(self.theta.derivative(t))
        sg, dsg = float(self.sigma.value(t)), float(self.sigma.derivative(t))
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        skew = np.array([[0.0, -1.0], [1.0, 0.0]])
        a = np.exp(sg) * rot
        # d/dt [e^sigma R(theta)] = e^sigma (sigma' R + theta' R J), with J the 90 degree rotation generator
        da = a * dsg + dth * a @ skew
        q = np.array([float(self.qx.value(t)), float(self.qy.value(t))])
        dq = np.array([float(self.qx.derivative(t)), float(self.qy.derivative(t))])
        p = np.array([float(self.px.value(t)), float(self.py.value(t))])
        dp = np.array([float(self.px.derivative(t)), float(self.py.derivative(t))])
        b = p - a @ q
        db = dp - da @ q - a @ dq
        return a, da, b, db

    def max_speed(self, t: float, corners: np.ndarray) -> float:
        """Largest image-space speed (px/s) at time ``t`` over source points ``corners`` (n, 2).

        The velocity is affine in q, so over a convex region its maximum norm is reached at a corner.
        """
        a, da, b, db = self.matrices(t)
        vel = corners @ da.T + db
        return float(np.sqrt((vel ** 2).sum(1)).max())
