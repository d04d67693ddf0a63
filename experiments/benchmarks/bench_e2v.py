"""Event-to-video data pipeline and training step: is the simulator the bottleneck?

Usage: python experiments/benchmarks/bench_e2v.py [--steps 5] [--threads N]

Prints, on CPU (and CUDA when available):
1. GPUEBSIM at 240x320, batch 4 (homography clips, 4 frames per 50 ms bin): simulation frames/s and Mev/s, beside
   the same clips simulated one at a time (the baseline: what batching buys);
2. event volume construction from the simulator's output: tensor ops (``event_volume``, the GPU path) and the path
   GPUEBSIM takes on this device (``build_event_volume``: the compiled ``event_cube`` kernel on the CPU), beside
   the obvious numpy ``np.add.at`` implementation (the baseline);
3. the default training configuration (clip size, T, B and model of conf/task/e2v.yaml): time to render a batch of
   clips (done in a loader worker), to simulate and build a batch on the training device, and one training step;
   the share of the step the device-side data work takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evframe.models.temporal import detach_recurrent_states  # noqa: E402
from evframe.tasks.e2v.clips import ClipDataset, ClipTiming, collate_clips  # noqa: E402
from evframe.tasks.e2v.gpu_esim import GPUEBSIM, SimulatorConfig, make_simulator  # noqa: E402
from evframe.tasks.e2v.losses import E2VLoss  # noqa: E402
from evframe.tasks.e2v.network import EventToVideo  # noqa: E402
from evframe.tasks.e2v.volumes import build_event_volume, event_volume  # noqa: E402

DELTA_T = 50_000
DEPTH = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clips(height: int, width: int, bins: int, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """B homography clips of ``bins`` bins of 50 ms (4 frames each), collated."""
    timing = ClipTiming(bins, DELTA_T, 4)
    dataset = ClipDataset(height, width, timing, batch, {"motion": {"min_speed": 30.0, "max_speed": 90.0}}, seed=seed)
    return collate_clips([dataset[i] for i in range(batch)])


def simulate(batch: dict[str, torch.Tensor], device: torch.device, streams: list[int]) -> tuple[float, int, list]:
    """Simulates the clips ``streams`` side by side; returns (seconds, events, per-frame event tensors)."""
    frames = batch["frames"][streams].to(device)
    stamps = batch["timestamps"][streams].to(device)
    b, n, h, w = frames.shape
    sim = make_simulator(SimulatorConfig(), b, h, w, False, 0, device)
    sim.sim(frames[:, 0], stamps[:, 0])
    _sync(device)
    start = time.perf_counter()
    out = [sim.sim(frames[:, i], stamps[:, i]) for i in range(1, n)]
    _sync(device)
    return time.perf_counter() - start, sum(int(e.shape[0]) for e in out), out


def bench_simulation(device: torch.device) -> None:
    batch = clips(240, 320, 8, 4)
    n = batch["frames"].shape[1] - 1
    seconds, events, out = simulate(batch, device, [0, 1, 2, 3])
    one = [simulate(batch, device, [b])[:2] for b in range(4)]
    seconds_one = sum(s for s, _ in one)
    print(f"[{device.type}] simulation 240x320, batch 4 : {4 * n / seconds:8.1f} frames/s "
          f"{events / seconds / 1e6:6.2f} Mev/s; one clip at a time (baseline): {4 * n / seconds_one:8.1f} frames/s "
          f"(batching x{seconds_one / seconds:.2f})")
    events = torch.cat(out)
    start_ts = batch["timestamps"][:, 0].to(device) + 1
    args = (4, 8, DEPTH, 240, 320, start_ts, DELTA_T)
    n_ev = events.shape[0]
    rates = {}
    for name, fn in (("tensor ops (event_volume)", event_volume), ("GPUEBSIM's path (build_event_volume)",
                                                                    build_event_volume),
                     ("numpy np.add.at (baseline)", numpy_volume)):
        fn(events, *args)  # warm-up (compilation, allocations)
        _sync(device)
        start = time.perf_counter()
        for _ in range(5):
            fn(events, *args)
        _sync(device)
        rates[name] = n_ev / ((time.perf_counter() - start) / 5) / 1e6
    base = rates["numpy np.add.at (baseline)"]
    print(f"[{device.type}] event volumes of {n_ev / 1e6:.2f} Mev (8 bins x depth {DEPTH}, 240x320, batch 4): "
          + "; ".join(f"{k} {v:.1f} Mev/s (x{v / base:.2f})" for k, v in rates.items()))


def numpy_volume(events: torch.Tensor, batch: int, bins: int, depth: int, height: int, width: int,
                 start_ts: torch.Tensor, delta_t: int) -> torch.Tensor:
    """The obvious implementation: copy to the CPU, linear time weights, ``np.add.at`` (the baseline)."""
    rows = events.cpu().numpy()
    b, x, y, p, t = rows.T
    rel = t - start_ts.cpu().numpy()[b]
    k = rel // delta_t
    keep = (rel >= 0) & (k < bins)
    b, x, y, p, rel, k = b[keep], x[keep], y[keep], p[keep], rel[keep], k[keep]
    pos = (rel - k * delta_t) * depth / delta_t - 0.5
    m0 = np.floor(pos).astype(np.int64)
    w1 = pos - m0
    sign = 2.0 * p - 1
    acc = np.zeros((bins, batch, depth, height, width), np.float32)
    for m, w in ((m0, 1 - w1), (m0 + 1, w1)):
        ok = (m >= 0) & (m < depth)
        np.add.at(acc, (k[ok], b[ok], m[ok], y[ok], x[ok]), (w * sign)[ok])
    return torch.from_numpy(np.clip(acc / 5.0, -1, 1)).to(events.device)


def bench_training(device: torch.device, steps: int) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from evframe.config import register_resolvers
    from evframe.run import CONFIG_DIR

    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["task=e2v"])
    ds, pre, model_cfg = cfg.dataset, cfg.preprocess, cfg.model
    h, w, b, t = int(ds.height), int(ds.width), int(ds.batch_size), int(pre.num_tbins)
    timing = ClipTiming(int(ds.batches_per_clip) * t, int(pre.delta_t), int(ds.frames_per_bin))
    source = OmegaConf.to_container(ds.source, resolve=True)
    dataset = ClipDataset(h, w, timing, b * (steps + 2), source, seed=0)
    start = time.perf_counter()
    rendered = [collate_clips([dataset[i * b + k] for k in range(b)]) for i in range(steps + 2)]
    render_s = (time.perf_counter() - start) / ((steps + 2) * int(ds.batches_per_clip))
    esim = GPUEBSIM(DataLoader(dataset, batch_size=b), OmegaConf.to_container(ds.simulator), t, DEPTH, True, device)
    batches, data_s = [], 0.0
    for i, group in enumerate(rendered):
        _sync(device)
        start = time.perf_counter()
        batches.extend(esim.play(group, i))
        _sync(device)
        data_s += time.perf_counter() - start
    data_s /= len(batches)
    net = EventToVideo(DEPTH, 1, int(model_cfg.num_layers), int(model_cfg.base), str(model_cfg.cell),
                       bool(model_cfg.separable), bool(model_cfg.separable_hidden), str(model_cfg.archi)).to(device)
    loss = E2VLoss(dict(cfg.loss.weights))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times = []
    for batch in batches[: steps + 1]:
        _sync(device)
        start = time.perf_counter()
        out = loss(net(batch["inputs"]), batch["images"], batch["image_valid"], batch["flow"], batch["flow_mask"],
                   batch["flow_valid"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        detach_recurrent_states(net)
        _sync(device)
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times[1:]))
    print(f"[{device.type}] default training ({h}x{w}, T={t}, B={b}, {model_cfg.archi} base {model_cfg.base}): "
          f"step {step_s * 1e3:.0f} ms; on the device per batch: simulation + volumes + targets "
          f"{data_s * 1e3:.0f} ms ({100 * data_s / (data_s + step_s):.1f}% of step + data); "
          f"clip rendering (loader worker) {render_s * 1e3:.0f} ms per batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        bench_simulation(device)
        bench_training(device, args.steps)


if __name__ == "__main__":
    main()
