"""RAW decoding throughput (EVT 2.0 and EVT 3.0) against the fastest decoders from PyPI, and memory while streaming.

Run: ``python experiments/benchmarks/bench_raw_decode.py [--mb 100] [--window-us 10000]``.

The shared real samples (``../shared/realdata/prophesee_evt2/gen3_640x480_a.raw``, ``prophesee_evt3/
imx636_1280x720_a.raw``) are repeated to about ``--mb`` MB; each repetition's TIME_HIGH words are shifted so that time
keeps increasing, and every other word is the camera's own. (Without the shared folder, synthetic events encoded by
``evframe.io.write_raw`` stand in.) Then, in the same run:

- evframe: ``RawReader.load_all()`` (whole file) and streaming with ``load_delta_t`` windows;
- ``expelliarmus`` (EVT 2.0 and 3.0) and ``evt3`` (EVT 3.0), if installed (``pip install expelliarmus evt3``; skipped
  when missing): whole-file decodes; the event counts of all decoders are compared;
- memory while streaming a file hundreds of times larger than the decoder's segment: anonymous resident memory
  (RssAnon, which excludes the file's page cache) at 10 %, 50 % and 100 % of the file, against a
  whole-file ``load_all``.
The file stays in the page cache, so this measures decoding, not the disk. Never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from evframe.io import EVENT_DTYPE, RawReader, write_raw
from evframe.io.raw import SEGMENT_WORDS
from evframe.io.raw_header import parse_raw_header

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
SAMPLES = {"evt2": REALDATA / "prophesee_evt2" / "gen3_640x480_a.raw",
           "evt3": REALDATA / "prophesee_evt3" / "imx636_1280x720_a.raw"}
# word layout per encoding: (word dtype, type shift, TIME_HIGH type, TIME_HIGH payload mask)
LAYOUT = {"evt2": ("<u4", 28, 0x8, (1 << 28) - 1), "evt3": ("<u2", 12, 0x8, (1 << 12) - 1)}


def rss_anon_mb() -> float:
    """Anonymous resident memory of this process (heap, numpy arrays), excluding mapped files' page cache."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def repeated_sample(encoding: str, target_mb: float, folder: Path) -> tuple[Path, int]:
    """A file of about ``target_mb`` MB: the sample's body repeated with TIME_HIGH shifted; returns (path, copies)."""
    source = SAMPLES[encoding]
    dtype, shift, th_type, th_mask = LAYOUT[encoding]
    if not source.is_file():
        return synthetic_file(encoding, target_mb, folder), 0
    header = parse_raw_header(source)
    data = source.read_bytes()
    body = np.frombuffer(data, dtype=dtype, offset=header.body_offset).astype(np.int64)
    is_th = (body >> shift) == th_type
    th = body[is_th] & th_mask
    span = int(th.max() - th.min() + 1)
    copies = max(1, int(target_mb * 1e6 // len(data)))
    path = folder / f"repeated_{encoding}.raw"
    with open(path, "wb") as f:
        f.write(data[:header.body_offset])
        for k in range(copies):
            words = body.copy()
            words[is_th] = (th_type << shift) | ((th + k * span) & th_mask)
            words.astype(dtype).tofile(f)
    return path, copies


def synthetic_file(encoding: str, target_mb: float, folder: Path) -> Path:
    n = int(target_mb * 1e6 / (4 if encoding == "evt2" else 2.5))
    rng = np.random.default_rng(0)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, 640, n), rng.integers(0, 480, n)
    events["p"], events["t"] = rng.integers(0, 2, n), np.sort(rng.integers(0, n // 10, n))
    path = folder / f"synthetic_{encoding}.raw"
    write_raw(path, events, 480, 640, encoding)
    return path


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def stream(path: Path, window_us: int, marks: tuple[float, ...] = ()) -> tuple[int, list[float]]:
    """Streams the whole file in windows; returns (events, RssAnon in MB when passing each fraction in ``marks``)."""
    reader = RawReader(path)
    total, memory, todo = 0, [], list(marks)
    reader.seek_time(reader.start_time if marks else 0)
    words = reader.word_count
    while not reader.done:
        total += len(reader.load_delta_t(window_us))
        done_words = min(reader._seg + 1, reader._num_segments) * reader._segment_words
        while todo and done_words >= todo[0] * words:
            memory.append(rss_anon_mb())
            todo.pop(0)
    return total, memory


def other_decoders(encoding: str) -> dict:
    found = {}
    try:
        from expelliarmus import Wizard

        found["expelliarmus"] = lambda p: len(Wizard(encoding=encoding).read(str(p)))
    except ImportError:
        pass
    if encoding == "evt3":
        try:
            import evt3

            found["evt3"] = lambda p: len(evt3.decode_file(str(p)).x)
        except ImportError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the decoded files (default 100 MB)")
    parser.add_argument("--window-us", type=int, default=10_000, help="streaming window (default 10 ms)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for encoding in ("evt2", "evt3"):
            path, copies = repeated_sample(encoding, args.mb, folder)
            size_mb = path.stat().st_size / 1e6
            what = f"{SAMPLES[encoding].name} x{copies}" if copies else "synthetic (shared samples absent)"
            RawReader(SAMPLES[encoding] if copies else path).load_all()  # compile (numba caches it on disk)
            seconds, events = timed(lambda p=path: RawReader(p).load_all())
            n = len(events)
            del events
            print(f"== {encoding.upper()}: {what}, {size_mb:.0f} MB, {n / 1e6:.1f} M events")
            print(f"evframe RawReader.load_all          {seconds:6.3f} s  {n / seconds / 1e6:7.1f} Mev/s "
                  f"({size_mb / seconds:.0f} MB/s)")
            s_stream, (n_stream, _) = timed(lambda p=path: stream(p, args.window_us))
            print(f"evframe streaming load_delta_t({args.window_us // 1000} ms) {s_stream:6.3f} s  "
                  f"{n_stream / s_stream / 1e6:7.1f} Mev/s")
            rates = {}
            for name, decode in other_decoders(encoding).items():
                s_other, n_other = timed(lambda d=decode, p=path: d(p))
                rates[name] = n_other / s_other / 1e6
                same = "same event count" if n_other == n else f"DIFFERENT event count {n_other}"
                print(f"{name:<36}{s_other:6.3f} s  {rates[name]:7.1f} Mev/s ({same})")
            if rates:
                best = max(rates, key=rates.get)
                print(f"ratio evframe / fastest PyPI decoder ({best}): load_all {n / seconds / 1e6 / rates[best]:.2f}x,"
                      f" streaming {n_stream / s_stream / 1e6 / rates[best]:.2f}x")
            else:
                print("no PyPI decoder installed (pip install expelliarmus evt3) - comparison skipped")
            gc.collect()
            base = rss_anon_mb()
            _, memory = stream(path, args.window_us, marks=(0.1, 0.5, 1.0))
            segment_kib = SEGMENT_WORDS * int(LAYOUT[encoding][0][-1]) / 1024
            print(f"memory while streaming ({size_mb * 1e3 / segment_kib:.0f}x the {segment_kib:.0f} KiB segment): "
                  f"RssAnon {base:.0f} MB before, " + ", ".join(f"{m:.0f} MB at {f:.0%}" for m, f in
                                                               zip(memory, (0.1, 0.5, 1.0), strict=False)))
            events = RawReader(path).load_all()
            print(f"for contrast, after load_all of the whole file: RssAnon {rss_anon_mb():.0f} MB "
                  f"({events.nbytes / 1e6:.0f} MB of events)")
            del events
            gc.collect()


if __name__ == "__main__":
    main()
