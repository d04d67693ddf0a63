"""Event simulator throughput and synthetic dataset generation time.

Usage: python experiments/benchmarks/bench_sim.py [--default] [--frames 100]

Prints, for 240x320 frames of a moving textured scene (about 1 px of motion per frame):
- EventSimulator at batch 4 on CPU (and CUDA when available): frames/s and Mev/s;
- the same at batch 1, the baseline (ratio = what batching buys per frame);
- the time to generate the tiny dataset (and the default one with --default).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evframe.data.synthetic import generate  # noqa: E402
from evframe.data.synthetic.textures import background_texture  # noqa: E402
from evframe.sim import EventSimulator  # noqa: E402

HEIGHT, WIDTH = 240, 320


def make_video(batch: int, frames: int) -> torch.Tensor:
    """(frames, batch, H, W) float32: each batch element translates a different texture diagonally."""
    out = np.empty((frames, batch, HEIGHT, WIDTH), np.float32)
    for b in range(batch):
        texture = background_texture(np.random.default_rng(b), 640)
        for i in range(frames):
            m = np.array([[1.0, 0.0, 0.8 * i], [0.0, 1.0, 0.6 * i]])
            out[i, b] = cv2.warpAffine(texture, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_WRAP)
    return torch.from_numpy(out)


def bench_simulator(video: torch.Tensor, device: str) -> tuple[float, float]:
    """Returns (frames/s counting every batch element, Mev/s)."""
    frames, batch = video.shape[:2]
    video = video.to(device)
    sim = EventSimulator(HEIGHT, WIDTH, batch_size=batch, refractory_period_us=100, shot_noise_rate_hz=0.1,
                         device=device)
    step_us = 1000
    sim.sim(video[0], torch.zeros(batch, dtype=torch.int64))
    sim.sim(video[1], torch.full((batch,), step_us))  # warm-up (allocations, CUDA kernels)
    if device == "cuda":
        torch.cuda.synchronize()
    count = 0
    start = time.perf_counter()
    for i in range(2, frames):
        count += len(sim.sim(video[i], torch.full((batch,), i * step_us)))
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return (frames - 2) * batch / elapsed, count / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="frames per batch element")
    parser.add_argument("--default", action="store_true", help="also time the default dataset (minutes)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, frames {HEIGHT}x{WIDTH}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    video4 = make_video(4, args.frames)
    for device in devices:
        fps1, mev1 = bench_simulator(video4[:, :1].contiguous(), device)
        fps4, mev4 = bench_simulator(video4, device)
        print(f"[{device}] batch 1 (baseline): {fps1:8.1f} frames/s {mev1:7.2f} Mev/s")
        print(f"[{device}] batch 4           : {fps4:8.1f} frames/s {mev4:7.2f} Mev/s "
              f"(x{fps4 / fps1:.2f} frames/s vs batch 1)")
    presets = ["tiny"] + (["default"] if args.default else [])
    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            root = generate(Path(tmp) / preset, preset)
            elapsed = time.perf_counter() - start
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            print(f"generate('{preset}'): {elapsed:.1f} s, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
