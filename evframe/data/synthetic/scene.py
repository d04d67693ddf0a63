"""Random scene construction: background texture, camera path and object trajectories for one recording."""

from __future__ import annotations

import numpy as np

from evframe.data.synthetic.config import SyntheticConfig
from evframe.data.synthetic.flow_gt import affine_velocity
from evframe.data.synthetic.motion import SimilarityTrajectory, SmoothSignal
from evframe.data.synthetic.render import Scene, SceneObject
from evframe.data.synthetic.shapes import make_sprite
from evframe.data.synthetic.textures import background_texture

#: classes that move along their long axis (mostly horizontally, mirrored when going left)
_VEHICLES = ("car", "two_wheeler")


def make_camera(rng: np.random.Generator, config: SyntheticConfig, texture_size: int) -> SimilarityTrajectory:
    """Camera: the image centre looks at a texture point drifting at constant speed plus a wobble; slight zoom
    and roll oscillations around the image centre."""
    k = config.size_scale
    speed = rng.uniform(*config.camera_speed) * k
    heading = rng.uniform(0, 2 * np.pi)
    qx = SmoothSignal.random(rng, rng.uniform(0, texture_size), speed * np.cos(heading), 0.0, 0.3 * speed)
    qy = SmoothSignal.random(rng, rng.uniform(0, texture_size), speed * np.sin(heading), 0.0, 0.3 * speed)
    return SimilarityTrajectory(
        px=SmoothSignal((config.width - 1) / 2.0), py=SmoothSignal((config.height - 1) / 2.0),
        theta=SmoothSignal.oscillation(rng, 0.0, config.camera_rotation_amplitude),
        sigma=SmoothSignal.oscillation(rng, 0.0, config.camera_zoom_amplitude),
        qx=qx, qy=qy)


def make_object(rng: np.random.Generator, config: SyntheticConfig, track_id: int) -> SceneObject:
    """An object of a random class crossing a random in-frame point at a random time of the recording."""
    k = config.size_scale
    class_id = int(rng.integers(len(config.classes)))
    name = config.classes[class_id]
    if name in _VEHICLES:
        heading = rng.choice([0.0, np.pi]) + rng.normal(0.0, 0.3)
    else:
        heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*config.object_speed) * k
    sprite = make_sprite(rng, name, rng.uniform(*config.object_size) * k, mirror=bool(np.cos(heading) < 0))
    t_mid = rng.uniform(0, config.duration_us * 1e-6)
    x_mid = rng.uniform(0.1, 0.9) * config.width
    y_mid = rng.uniform(0.15, 0.85) * config.height
    rot = config.object_rotation_speed
    trajectory = SimilarityTrajectory(
        px=SmoothSignal.random(rng, x_mid, speed * np.cos(heading), t_mid, 0.25 * speed),
        py=SmoothSignal.random(rng, y_mid, speed * np.sin(heading), t_mid, 0.25 * speed),
        theta=SmoothSignal.random(rng, rng.normal(0.0, 0.1), rng.normal(0.0, 0.2 * rot), t_mid, rot),
        sigma=SmoothSignal.oscillation(rng, 0.0, config.object_scale_amplitude))
    return SceneObject(sprite, trajectory, class_id, track_id)


def make_scene(rng: np.random.Generator, config: SyntheticConfig) -> Scene:
    """Draws a full random scene; objects are returned in a random fixed z-order (bottom first)."""
    texture_size = int(np.ceil(config.background_scale * max(config.height, config.width) / 8.0)) * 8
    texture = background_texture(rng, texture_size, scale=config.size_scale)
    camera = make_camera(rng, config, texture_size)
    n_objects = int(rng.integers(config.objects_per_recording[0], config.objects_per_recording[1] + 1))
    objects = [make_object(rng, config, track_id) for track_id in range(n_objects)]
    order = rng.permutation(n_objects)
    return Scene(config.height, config.width, texture, camera, [objects[i] for i in order])


def max_image_speed(scene: Scene, times_s: np.ndarray) -> float:
    """Largest speed (px/s) of any visible-ish point over ``times_s``: camera at the image corners, objects at
    their sprite corners (velocity is affine, so corners bound it)."""
    h, w = scene.height, scene.width
    cx, cy = np.array([0.0, w - 1.0, 0.0, w - 1.0]), np.array([0.0, 0.0, h - 1.0, h - 1.0])
    best = 0.0
    for t in times_s:
        vel = affine_velocity(*scene.camera.matrices(t), cx, cy)
        best = max(best, float(np.hypot(vel[0], vel[1]).max()))
        for obj in scene.objects:
            sh, sw = obj.sprite.alpha.shape
            ox, oy = obj.sprite.center
            corners = np.array([[0, 0], [sw - 1, 0], [0, sh - 1], [sw - 1, sh - 1]], np.float64) - [ox, oy]
            best = max(best, obj.trajectory.max_speed(t, corners))
    return best
