"""DAT reading throughput: whole-file load and seek_time + load_delta_t windows, vs a naive np.fromfile decode.

Run: ``python experiments/benchmarks/bench_dat_read.py [--events 10000000] [--window-us 10000]``. Writes a synthetic
recording to a temporary folder (about 80 MB; the file stays in the page cache, so this measures decoding, not the
disk), prints Mev/s and ratios against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from evframe.io import EVENT_DTYPE, DatReader, load_events, write_dat


def synthetic_events(n: int, height: int = 480, width: int = 640, rate_mev_s: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, int(n / rate_mev_s), n))
    return events


def naive_load(path: Path, body_offset: int) -> np.ndarray:
    """The baseline: read everything with np.fromfile, then unpack with plain numpy."""
    raw = np.fromfile(path, dtype="<u4", offset=body_offset).reshape(-1, 2)
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["t"] = raw[:, 0]
    events["x"] = raw[:, 1] & 0x3FFF
    events["y"] = (raw[:, 1] >> 14) & 0x3FFF
    events["p"] = raw[:, 1] >> 28
    return events


def window_loop(path: Path, window_us: int) -> int:
    """Every window of the file through seek_time + load_delta_t; returns the number of events read."""
    reader = DatReader(path)
    total = 0
    for t0 in range(0, reader.duration + 1, window_us):
        reader.seek_time(t0)
        total += len(reader.load_delta_t(window_us))
    return total


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--window-us", type=int, default=10_000, help="load_delta_t window (us)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    events = synthetic_events(args.events)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_td.dat"
        seconds, _ = best_of(1, lambda: write_dat(path, events, 480, 640))
        print(f"write_dat: {args.events / seconds / 1e6:8.1f} Mev/s ({path.stat().st_size / 1e6:.0f} MB)")
        body_offset = DatReader(path)._body_offset
        mev = args.events / 1e6

        naive_s, naive = best_of(args.repeats, lambda: naive_load(path, body_offset))
        load_s, loaded = best_of(args.repeats, lambda: load_events(path))
        loop_s, looped = best_of(args.repeats, lambda: window_loop(path, args.window_us))
        assert np.array_equal(naive, loaded) and looped == args.events  # same answers, or the timing means nothing
        windows = int(events["t"][-1]) // args.window_us + 1

        print(f"naive np.fromfile + unpack (baseline):  {mev / naive_s:8.1f} Mev/s")
        print(f"load_events (whole file, validated):   {mev / load_s:8.1f} Mev/s   x{naive_s / load_s:.2f} vs baseline")
        print(f"seek_time + load_delta_t({args.window_us} us), {windows} windows: {mev / loop_s:8.1f} Mev/s   "
              f"x{naive_s / loop_s:.2f} vs baseline ({loop_s / windows * 1e6:.0f} us per window)")


if __name__ == "__main__":
    main()
