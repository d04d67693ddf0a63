"""Rendering, boxes and flow of hand-made scenes with known answers, and flow/rendering consistency."""

import cv2
import numpy as np
import pytest

from evframe.data.synthetic.config import SyntheticConfig
from evframe.data.synthetic.labels import boxes_at, flow_at, visible_ids
from evframe.data.synthetic.motion import SimilarityTrajectory, SmoothSignal
from evframe.data.synthetic.render import Scene, SceneObject, render
from evframe.data.synthetic.scene import make_scene
from evframe.data.synthetic.shapes import Sprite, make_sprite

H, W = 48, 64


def static_camera() -> SimilarityTrajectory:
    return SimilarityTrajectory(SmoothSignal(0.0), SmoothSignal(0.0), SmoothSignal(0.0), SmoothSignal(0.0))


def block(h: int, w: int, level: float, class_id: int, track_id: int, x: float, y: float, vx: float = 0.0,
          vy: float = 0.0) -> SceneObject:
    """A uniform rectangle sprite whose centre is at (x, y) at t = 0, translating at (vx, vy) px/s."""
    sprite = Sprite(np.full((h, w), level, np.float32), np.ones((h, w), np.float32), "car")
    traj = SimilarityTrajectory(SmoothSignal(x, vx), SmoothSignal(y, vy), SmoothSignal(0.0), SmoothSignal(0.0))
    return SceneObject(sprite, traj, class_id, track_id)


def scene_of(*objects: SceneObject) -> Scene:
    return Scene(H, W, np.full((32, 32), 0.5, np.float32), static_camera(), list(objects))


def test_translating_block_renders_boxes_and_flows_exactly():
    # 6x10 sprite, centre (4.5, 2.5) drawn at (30.5, 20.5): it covers x in 26..35, y in 18..23
    scene = scene_of(block(6, 10, 0.9, 2, 7, 30.5, 20.5, vx=40.0, vy=-10.0))
    image, layers = render(scene, 0.0, with_layers=True)
    expected = np.full((H, W), 0.5, np.float32)
    expected[18:24, 26:36] = 0.9
    assert np.allclose(image, expected, atol=1e-6)
    boxes = boxes_at(scene, layers, 50_000, 0.3, 4.0)
    assert len(boxes) == 1
    assert boxes[0].tolist() == (50_000, 26.0, 18.0, 10.0, 6.0, 2, 7, 1.0)
    flow = flow_at(scene, layers, 0.0)
    expected_flow = np.zeros((2, H, W), np.float32)
    expected_flow[0, 18:24, 26:36], expected_flow[1, 18:24, 26:36] = 40.0, -10.0
    assert np.array_equal(flow, expected_flow)
    # 0.1 s later the block has moved by exactly (4, -1) px
    later, _ = render(scene, 0.1)
    assert np.allclose(later, np.roll(expected, (-1, 4), axis=(0, 1)), atol=1e-5)


def test_occluded_and_tiny_and_truncated_objects_are_dropped():
    hidden = block(6, 10, 0.9, 0, 0, 30.5, 20.5)
    occluder = block(12, 16, 0.2, 1, 1, 30.5, 20.5)  # on top, covers ``hidden`` entirely
    tiny = block(3, 3, 0.9, 2, 2, 10.0, 10.0)
    truncated = block(6, 10, 0.9, 0, 3, 61.5, 40.5)  # only x = 57..63 of 54..63 in frame (7 columns of 10)
    sliver = block(6, 10, 0.9, 0, 4, -2.5, 40.5)  # x in -7..2: 3 columns in frame -> too narrow
    scene = scene_of(hidden, occluder, tiny, truncated, sliver)
    _, layers = render(scene, 0.0, with_layers=True)
    ids = visible_ids(scene, layers)
    assert not np.any(ids == 0) and np.all(ids[15:27, 23:39] == 1)
    boxes = boxes_at(scene, layers, 0, 0.3, 4.0)
    assert boxes["track_id"].tolist() == [1, 3]
    assert boxes[1].tolist()[1:5] == (57.0, 38.0, 7.0, 6.0)
    # half-hidden objects stay, with their full (amodal) box
    half = block(12, 8, 0.2, 1, 1, 34.5, 20.5)  # covers x in 31..38: the right half of ``hidden``
    scene = scene_of(hidden, half)
    _, layers = render(scene, 0.0, with_layers=True)
    boxes = boxes_at(scene, layers, 0, 0.3, 4.0)
    assert boxes["track_id"].tolist() == [0, 1]
    assert boxes[0].tolist()[1:5] == (26.0, 18.0, 10.0, 6.0)
    assert len(boxes_at(scene, layers, 0, 0.6, 4.0)) == 1  # 50% visible < 60%


@pytest.mark.parametrize("name", ["car", "pedestrian", "two_wheeler"])
def test_sprites_have_textured_interior_and_soft_edges(name):
    sprite = make_sprite(np.random.default_rng(0), name, 1.0)
    inside = sprite.alpha > 0.99
    assert inside.mean() > 0.2
    assert 0 < np.mean((sprite.alpha > 0.01) & (sprite.alpha < 0.99))  # anti-aliased border
    assert sprite.intensity[inside].std() > 0.05  # several parts / textures, not a flat silhouette
    assert np.all(sprite.alpha[[0, -1], :] < 0.01) and np.all(sprite.alpha[:, [0, -1]] < 0.01)  # padded


def test_gt_flow_predicts_the_next_rendered_frame():
    """Sampling frame(t + dt) at p + flow(p) dt reproduces frame(t) far better than no motion does."""
    config = SyntheticConfig(height=96, width=128, objects_per_recording=(4, 4))
    scene = make_scene(np.random.default_rng(1), config)
    t, dt = 0.3, 0.02
    f0, layers = render(scene, t, with_layers=True)
    f1, _ = render(scene, t + dt)
    flow = flow_at(scene, layers, t)
    assert np.percentile(np.hypot(flow[0], flow[1]) * dt, 90) > 0.5  # the test needs real motion
    # blur: compare smooth images, so interpolation error does not swamp sub-pixel motion
    g0, g1 = cv2.GaussianBlur(f0, (0, 0), 1.0), cv2.GaussianBlur(f1, (0, 0), 1.0)
    ys, xs = np.mgrid[0:96, 0:128].astype(np.float32)
    mx, my = xs + flow[0] * dt, ys + flow[1] * dt
    warped = cv2.remap(g1, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ids = (visible_ids(scene, layers) + 1).astype(np.uint8)
    kernel = np.ones((7, 7), np.uint8)
    interior = cv2.erode(ids, kernel) == cv2.dilate(ids, kernel)  # away from occlusion boundaries
    valid = interior & (mx > 4) & (mx < 123) & (my > 4) & (my < 91) & (np.hypot(*np.gradient(g0)) > 0.02)
    assert valid.sum() > 2000
    error_flow = np.abs(warped - g0)[valid].mean()
    error_static = np.abs(g1 - g0)[valid].mean()
    assert error_flow < error_static / 3
    # and the flow is right in scale: 0.7x or 1.3x the flow is worse
    for scale in (0.7, 1.3):
        other = cv2.remap(g1, xs + scale * flow[0] * dt, ys + scale * flow[1] * dt, cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)
        assert np.abs(other - g0)[valid].mean() > error_flow
