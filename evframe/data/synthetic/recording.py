"""One synthetic recording: render the scene finely in time, simulate events, collect labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evframe.data.synthetic.config import SyntheticConfig
from evframe.data.synthetic.labels import boxes_at, flow_at
from evframe.data.synthetic.render import Scene, render
from evframe.data.synthetic.scene import make_scene, max_image_speed
from evframe.io.dtypes import BBOX_DTYPE
from evframe.sim import EventSimulator, events_to_numpy


@dataclass
class Recording:
    """Arrays of one recording: events (EVENT_DTYPE, sorted by t), boxes (BBOX_DTYPE), flow (N, 2, H, W)
    float32 px/s at flow_ts (N,) int64 us, frames (M, H, W) uint8 at frame_ts (M,) int64 us."""

    events: np.ndarray
    boxes: np.ndarray
    flow: np.ndarray
    flow_ts: np.ndarray
    frames: np.ndarray
    frame_ts: np.ndarray
    step_us: float


def render_times(config: SyntheticConfig, scene: Scene) -> tuple[np.ndarray, int]:
    """Rendering timestamps (us, from 0 to the duration) and the number of steps per base period.

    The base period (the finer of the label and frame periods) is split into equal steps so that every label
    and frame time is rendered exactly, with at most ``max_step_px`` of motion between steps.
    """
    base = min(config.label_period_us, config.frame_period_us)
    probe = np.arange(0, config.duration_us + 1, base) * 1e-6
    speed = max_image_speed(scene, probe)
    steps = math.ceil(base * 1e-6 * speed / config.max_step_px) if speed > 0 else 1
    steps = min(max(steps, math.ceil(base / config.max_step_us), 1), max(base // config.min_step_us, 1))
    count = config.duration_us * steps // base
    times = (np.arange(count + 1, dtype=np.int64) * base + steps // 2) // steps
    return times, steps


def simulate_recording(config: SyntheticConfig, seed_sequence: np.random.SeedSequence) -> Recording:
    """Generates one recording, deterministically from ``seed_sequence``."""
    rng = np.random.default_rng(seed_sequence)
    scene = make_scene(rng, config)
    simulator = EventSimulator(config.height, config.width, batch_size=1, seed=int(rng.integers(2 ** 31)),
                               **config.simulator)
    times, steps = render_times(config, scene)
    events, boxes, flows, flow_ts, frames, frame_ts = [], [], [], [], [], []
    for t_us in times.tolist():
        is_label = t_us > 0 and t_us % config.label_period_us == 0
        image, layers = render(scene, t_us * 1e-6, with_layers=is_label)
        events.append(simulator.sim(torch.from_numpy(image)[None], torch.tensor([t_us])))
        if is_label:
            boxes.append(boxes_at(scene, layers, t_us, config.min_visible_fraction, config.min_box_size))
            flows.append(flow_at(scene, layers, t_us * 1e-6))
            flow_ts.append(t_us)
        if t_us % config.frame_period_us == 0:
            frames.append(np.round(image * 255.0).astype(np.uint8))
            frame_ts.append(t_us)
    shape = (config.height, config.width)
    return Recording(
        events=events_to_numpy(torch.cat(events), 0),
        # astype: np.concatenate returns an equivalent but not identical (canonicalised) structured dtype
        boxes=np.concatenate(boxes).astype(BBOX_DTYPE) if boxes else np.zeros(0, BBOX_DTYPE),
        flow=np.stack(flows) if flows else np.zeros((0, 2, *shape), np.float32),
        flow_ts=np.array(flow_ts, np.int64),
        frames=np.stack(frames), frame_ts=np.array(frame_ts, np.int64),
        step_us=float(min(config.label_period_us, config.frame_period_us)) / steps)
