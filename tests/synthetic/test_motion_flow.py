"""Trajectories, their analytic derivatives and the ground-truth flow field, against hand-computed values."""

import numpy as np

from evframe.data.synthetic.flow_gt import affine_velocity, compose_flow
from evframe.data.synthetic.motion import SimilarityTrajectory, SmoothSignal


def random_trajectory(seed: int, moving_source: bool) -> SimilarityTrajectory:
    rng = np.random.default_rng(seed)
    traj = SimilarityTrajectory(
        px=SmoothSignal.random(rng, 50.0, 30.0, 0.5, 20.0), py=SmoothSignal.random(rng, 40.0, -10.0, 0.5, 20.0),
        theta=SmoothSignal.random(rng, 0.2, 0.3, 0.5, 0.5), sigma=SmoothSignal.oscillation(rng, 0.1, 0.2))
    if moving_source:
        traj.qx = SmoothSignal.random(rng, 100.0, 25.0, 0.0, 10.0)
        traj.qy = SmoothSignal.random(rng, 60.0, 5.0, 0.0, 10.0)
    return traj


def test_smooth_signal_value_and_derivative():
    sig = SmoothSignal(2.0, 3.0, 1.0, np.array([0.5]), np.array([0.25]), np.array([0.0]))
    # value(t) = 2 + 3 (t - 1) + 0.5 sin(pi t / 2): at t = 1 -> 2 + 0.5 = 2.5; derivative = 3 + 0.25 pi cos(pi/2)
    assert np.isclose(sig.value(1.0), 2.5)
    assert np.isclose(sig.derivative(1.0), 3.0)
    assert np.isclose(sig.derivative(0.0), 3.0 + 0.5 * 2 * np.pi * 0.25)
    rng = np.random.default_rng(0)
    sig = SmoothSignal.random(rng, 1.0, -2.0, 0.3, 5.0, n_waves=3)
    t, h = np.linspace(0, 2, 7), 1e-6
    assert np.allclose((sig.value(t + h) - sig.value(t - h)) / (2 * h), sig.derivative(t), atol=1e-5)


def test_affine_velocity_hand_computed_similarity():
    # A = s R(theta) with s = 2 (sigma' = 0.2 /s), theta' = 0.5 rad/s, translation rate (3, -4) px/s at b = (10, 20)
    s, th, dsig, dth = 2.0, 0.3, 0.2, 0.5
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a = s * rot
    da = a * dsig + dth * a @ np.array([[0.0, -1.0], [1.0, 0.0]])
    b, db = np.array([10.0, 20.0]), np.array([3.0, -4.0])
    v = affine_velocity(a, da, b, db, np.array([13.0, 10.0]), np.array([24.0, 20.0]))
    # p = (13, 24): r = (3, 4); omega x r = 0.5 (-4, 3) = (-2, 1.5); sigma' r = (0.6, 0.8) -> (1.6, -1.7)
    assert np.allclose(v[:, 0], [1.6, -1.7], atol=1e-6)
    # p = b: only the translation
    assert np.allclose(v[:, 1], [3.0, -4.0], atol=1e-6)


def test_trajectory_matrices_match_finite_differences():
    for moving_source in (False, True):
        traj = random_trajectory(1, moving_source)
        t, h = 0.7, 1e-6
        a, da, b, db = traj.matrices(t)
        a_p, _, b_p, _ = traj.matrices(t + h)
        a_m, _, b_m, _ = traj.matrices(t - h)
        assert np.allclose((a_p - a_m) / (2 * h), da, atol=1e-6)
        assert np.allclose((b_p - b_m) / (2 * h), db, atol=1e-4)


def position(traj: SimilarityTrajectory, q: np.ndarray, t: float) -> np.ndarray:
    """Image positions (n, 2) of source points q (n, 2) at time t."""
    a, _, b, _ = traj.matrices(t)
    return q @ a.T + b


def test_flow_is_the_velocity_of_material_points():
    """A source point q drawn at p(t) = A q + b moves with exactly the flow evaluated at p(t)."""
    for moving_source in (False, True):
        traj = random_trajectory(2, moving_source)
        q = np.array([[-7.0, 3.0], [12.0, -5.0], [0.0, 0.0]])
        t, h = 1.3, 1e-5

        p = position(traj, q, t)
        a, da, b, db = traj.matrices(t)
        flow = affine_velocity(a, da, b, db, p[:, 0], p[:, 1])
        numeric = (position(traj, q, t + h) - position(traj, q, t - h)) / (2 * h)
        assert np.allclose(flow.T, numeric, atol=1e-4)


def test_compose_flow_respects_z_order():
    eye, zero = np.eye(2), np.zeros((2, 2))
    background = (eye, zero, np.zeros(2), np.array([1.0, 2.0]))  # camera: uniform (1, 2) px/s
    mask_low = np.ones((4, 4), bool)
    mask_high = np.zeros((4, 4), bool)
    mask_high[:2, :2] = True
    layers = [(eye, zero, np.zeros(2), np.array([10.0, 0.0]), mask_low, 1, 1),  # covers x, y in 1..4
              (eye, zero, np.zeros(2), np.array([0.0, -5.0]), mask_high, 3, 3)]  # covers x, y in 3..4 (on top)
    flow = compose_flow(6, 7, background, layers)
    assert flow.shape == (2, 6, 7) and flow.dtype == np.float32
    expected = np.zeros((2, 6, 7), np.float32)
    expected[0], expected[1] = 1.0, 2.0
    expected[:, 1:5, 1:5] = np.array([10.0, 0.0])[:, None, None]
    expected[:, 3:5, 3:5] = np.array([0.0, -5.0])[:, None, None]
    assert np.array_equal(flow, expected)
