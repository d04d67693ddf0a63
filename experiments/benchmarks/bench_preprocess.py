"""Throughput of the preprocessing functions (events -> tensors), in millions of events per second.

10M uniformly random events sorted by t, 5 time bins, a 480x640 sensor (the setting of Metavision's published
figures). Random coordinates are the worst case for the caches; real recordings are spatially local and faster.
Baselines measured in the same run: straightforward numpy ``np.add.at`` versions of histo and event_cube.
Metavision ML's compiled loops are quoted for reference (not measured here).

    python experiments/benchmarks/bench_preprocess.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runnable from a checkout without installing

from evframe.io.dtypes import EVENT_DTYPE  # noqa: E402
from evframe.preprocess import available, compute  # noqa: E402

HEIGHT, WIDTH, NUM_TBINS, DELTA_T = 480, 640, 5, 10_000
METAVISION_MEVS = {"histo": 135.0, "event_cube": 60.0}


def random_events(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, WIDTH, n)
    events["y"] = rng.integers(0, HEIGHT, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, NUM_TBINS * DELTA_T, n))
    return events


def numpy_histo(events: np.ndarray, max_incr_per_pixel: float = 5.0) -> np.ndarray:
    out = np.zeros((NUM_TBINS, 2, HEIGHT, WIDTH), dtype=np.float32)
    np.add.at(out, (events["t"] // DELTA_T, events["p"], events["y"], events["x"]), 1.0)
    return np.clip(out / max_incr_per_pixel, 0, 1)


def numpy_event_cube(events: np.ndarray, num_utbins: int = 3, max_incr_per_pixel: float = 5.0) -> np.ndarray:
    # linear weights over the micro-bins of the whole call (sums clipped at the end: no clipping order)
    nbins = NUM_TBINS * num_utbins
    out = np.zeros((nbins, 2, HEIGHT, WIDTH), dtype=np.float32)
    u = events["t"] * nbins / (NUM_TBINS * DELTA_T) - 0.5
    left = np.floor(u).astype(np.int64)
    p, y, x = events["p"], events["y"], events["x"]
    for micro, w in ((left, 1 - (u - left)), (left + 1, u - left)):
        keep = (micro >= 0) & (micro < nbins)
        np.add.at(out, (micro[keep], p[keep], y[keep], x[keep]), w[keep].astype(np.float32))
    return np.clip(out.reshape(NUM_TBINS, 2 * num_utbins, HEIGHT, WIDTH) / max_incr_per_pixel, 0, 1)


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per function, best one kept")
    args = parser.parse_args(argv)
    n = args.events
    events = random_events(n)
    print(f"preprocess benchmark: {n / 1e6:.1f}M random sorted events, {NUM_TBINS} bins of {DELTA_T} us, "
          f"{HEIGHT}x{WIDTH}; {os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}; "
          f"best of {args.repeat}")

    # warm-up: numba compiles (or loads from its cache) each kernel on first use; never timed
    for name in available():
        compute(name, events[:1000], NUM_TBINS, HEIGHT, WIDTH, DELTA_T)

    baselines = {
        "histo": best_time(lambda: numpy_histo(events), max(1, args.repeat // 2)),
        "event_cube": best_time(lambda: numpy_event_cube(events), max(1, args.repeat // 2)),
    }
    # the baselines compute the same tensors (checked here so the comparison is fair)
    np.testing.assert_allclose(compute("histo", events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T).numpy(),
                               numpy_histo(events), atol=1e-6)

    print(f"{'function':32s} {'Mev/s':>8s} {'ms':>8s}  {'vs numpy add.at':>15s}  {'vs Metavision':>13s}")
    for name in available():
        seconds = best_time(lambda name=name: compute(name, events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T), args.repeat)
        rate = n / seconds / 1e6
        vs_numpy = f"x{baselines[name] / seconds:.1f}" if name in baselines else "-"
        vs_mv = f"x{rate / METAVISION_MEVS[name]:.2f}" if name in METAVISION_MEVS else "-"
        print(f"{name:32s} {rate:8.1f} {seconds * 1e3:8.1f}  {vs_numpy:>15s}  {vs_mv:>13s}")
    for name, seconds in baselines.items():
        print(f"{'numpy add.at ' + name:32s} {n / seconds / 1e6:8.1f} {seconds * 1e3:8.1f}")
    for name, rate in METAVISION_MEVS.items():
        print(f"{'Metavision ' + name + ' (quoted)':32s} {rate:8.1f}")


if __name__ == "__main__":
    main()
