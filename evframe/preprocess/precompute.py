"""Precompute HDF5 tensor files for a whole dataset folder (Metavision ML's ``generate_hdf5`` equivalent).

    python -m evframe.preprocess.precompute INPUT_DIR OUTPUT_DIR --preprocess histo --delta-t 50000 \\
        [--downsample K] [--kwarg max_incr_per_pixel=2.5 ...] [--height H --width W] [--max-duration US]

Every event file under INPUT_DIR (recursively, keeping sub-folders such as train/val/test): ``*.dat``, Prophesee RAW
``*.raw`` (EVT 2.0 / 3.0) and Metavision HDF5 event files ``*.hdf5`` (tensor files are skipped), becomes
``OUTPUT_DIR/<sub-folder>/<name>.h5`` (a trailing ``_td`` is dropped from the name), tensor ``i`` covering
``[i * delta_t, (i + 1) * delta_t)`` up to the last event. As in Metavision's ``generate_hdf5``, each tensor is
computed from its own bin alone (``compute(..., num_tbins=1, start_ts=i * delta_t)``), so the files equal
Metavision's (an ``event_cube`` computed over several bins at once would share weights across the bin edges).
Files are streamed a few bins at a time (bounded memory). Label files beside a recording (``<name>_bbox.npy``,
``<name>_flow.h5``, ``<name>_frames.h5``) are copied beside its tensors, and every ``label_map_dictionary.json`` to
the same relative place.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

LABEL_SUFFIXES = ("_bbox.npy", "_flow.h5", "_frames.h5")
LABEL_MAP = "label_map_dictionary.json"
#: bytes of float32 tensors computed at once per file (the chunk of bins streamed from the event file)
CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Job:
    """Settings shared by every file of a run."""

    preprocess: str
    delta_t: int
    downsample: int
    kwargs: dict[str, Any]
    height: int | None
    width: int | None
    max_duration: int | None
    store_as_uint8: bool
    value_range: tuple[float, float] | None
    integer_values: bool
    compression: str | None
    chunk_bins: int | None


@dataclass(frozen=True)
class FileResult:
    source: Path
    output: Path
    status: str  # "done", "skipped" or "failed"
    bins: int = 0
    events: int = 0
    seconds: float = 0.0
    message: str = ""


# ------------------------------------------------------------------------------------------------------- arguments
def parse_kwarg(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value) with value a Python literal when it parses as one (``2.5``, ``False``,
    ``[1, 2]``), ``true``/``false`` as bools, else the string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--kwarg expects key=value, got {text!r}")
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evframe.preprocess.precompute",
        description="Turns every event file (*.dat, *.raw EVT 2.0/3.0, *.hdf5 events) under INPUT_DIR into an HDF5 "
                    "tensor file under OUTPUT_DIR (same sub-folders), copying label files beside them.")
    parser.add_argument("input_dir", type=Path, help="folder searched recursively for *.dat, *.raw, *.hdf5 files")
    parser.add_argument("output_dir", type=Path, help="destination folder (created)")
    parser.add_argument("--preprocess", required=True, help="registered preprocess function, e.g. histo, event_cube")
    parser.add_argument("--delta-t", type=int, required=True, help="duration of one tensor (time bin) in us")
    parser.add_argument("--downsample", type=int, default=0, help="coordinates >> K (default 0)")
    parser.add_argument("--kwarg", type=parse_kwarg, action="append", default=[], metavar="KEY=VALUE",
                        help="preprocess option, repeatable (e.g. --kwarg max_incr_per_pixel=2.5)")
    parser.add_argument("--height", type=int, help="sensor height when the file header has none")
    parser.add_argument("--width", type=int, help="sensor width when the file header has none")
    parser.add_argument("--max-duration", type=int, help="only the first US microseconds of each recording")
    parser.add_argument("--store-as-uint8", action="store_true", help="store uint8 codes instead of float32")
    parser.add_argument("--value-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="value range for --store-as-uint8 (known for the built-in functions)")
    parser.add_argument("--compression", choices=("lz4", "gzip", "none"), help="default: lz4 if available, else gzip")
    parser.add_argument("--chunk-bins", type=int, help="time bins computed at once (default: ~256 MiB of tensors)")
    parser.add_argument("--num-workers", type=int, default=1, help="files processed in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing outputs (default: skip them)")
    return parser


def builtin_value_range(name: str, kwargs: dict[str, Any]) -> tuple[tuple[float, float], bool] | None:
    """((low, high), integer_values) of a built-in preprocess function's output with these options; None for
    functions it does not know."""
    if name in ("histo", "timesurface", "multi_channel_timesurface"):
        return (0.0, 1.0), False
    if name == "diff":
        return (-1.0, 1.0), False
    if name == "event_cube":
        return ((0.0, 1.0) if kwargs.get("split_polarity", True) else (-1.0, 1.0)), False
    normalized = bool(kwargs.get("normalization", False))
    if name == "histo_quantized":
        cap = 2 ** int(kwargs.get("bit_length", 8)) - 1
        return ((0.0, 1.0) if normalized else (0.0, float(cap))), not normalized
    if name == "diff_quantized":
        half = 2 ** (int(kwargs.get("bit_length", 8)) - 1)
        scale = 1.0 / half if normalized else 1.0
        return (-half * scale, (half - 1) * scale), not normalized
    return None


def effective_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The function's defaulted options updated with ``kwargs`` (all stored as attrs, for reproducibility)."""
    from evframe.preprocess import get

    result: dict[str, Any] = {}
    try:
        params = list(inspect.signature(get(name)).parameters.values())[5:]
    except (TypeError, ValueError):
        params = []
    for param in params:
        if param.name in ("start_ts", "downsample") or param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        if param.default is not inspect.Parameter.empty:
            result[param.name] = param.default
    result.update(kwargs)
    return result


# ------------------------------------------------------------------------------------------------------ one file
def output_path(source: Path, input_dir: Path, output_dir: Path) -> Path:
    """``INPUT/train/rec_td.dat`` -> ``OUTPUT/train/rec.h5``."""
    from evframe.io import recording_name

    return output_dir / source.parent.relative_to(input_dir) / f"{recording_name(source)}.h5"


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def copy_labels(source: Path, output: Path) -> list[Path]:
    """Copies the label files of recording ``source`` beside tensor file ``output``; returns the copies."""
    from evframe.io import label_path

    copied = []
    for suffix in LABEL_SUFFIXES:
        label = label_path(source, suffix)
        if label.is_file():
            target = label_path(output, suffix)
            _copy_atomic(label, target)
            copied.append(target)
    return copied


def convert_file(source: Path, output: Path, job: Job) -> FileResult:
    """Computes the tensors of one event file into ``output`` (atomically) and copies its labels."""
    from evframe.io import open_events
    from evframe.preprocess import num_channels
    from evframe.preprocess.h5_tensors import TensorH5Writer

    begin = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    reader = open_events(source, height=job.height, width=job.width)
    try:
        if reader.height is None or reader.width is None:
            raise ValueError(f"{source}: the header gives no sensor size; pass --height and --width")
        height, width = int(reader.height), int(reader.width)
        out_h, out_w = height >> job.downsample, width >> job.downsample
        channels = num_channels(job.preprocess, **job.kwargs)
        # tensors cover [0, last t] (the last event is included), cut at max_duration
        num_bins = (int(reader.duration) // job.delta_t + 1) if int(reader.event_count) > 0 else 0
        if job.max_duration is not None:
            num_bins = min(num_bins, math.ceil(job.max_duration / job.delta_t))
        chunk = job.chunk_bins or max(1, CHUNK_BYTES // (4 * channels * out_h * out_w))
        attrs = {"events_to_tensor": job.preprocess, "delta_t": job.delta_t, "event_input_height": height,
                 "event_input_width": width, "shape": [channels, out_h, out_w], "downsample": job.downsample,
                 **effective_kwargs(job.preprocess, job.kwargs)}
        events_done = 0
        reader.seek_time(0)
        with TensorH5Writer(output, channels, out_h, out_w, attrs, store_as_uint8=job.store_as_uint8,
                            value_range=job.value_range, integer_values=job.integer_values,
                            compression=job.compression) as writer:
            for first in range(0, num_bins, chunk):
                n = min(chunk, num_bins - first)
                events = reader.load_delta_t(n * job.delta_t)
                events_done += len(events)
                writer.append(tensors_bin_by_bin(job, events, first, n, height, width, channels))
    finally:
        reader.close()
    copy_labels(source, output)
    return FileResult(source, output, "done", num_bins, events_done, time.perf_counter() - begin)


def tensors_bin_by_bin(job: Job, events: Any, first: int, n: int, height: int, width: int,
                       channels: int) -> Any:
    """Tensors of bins ``first .. first + n - 1``, each computed alone (``num_tbins=1``), as Metavision does.

    Args:
        events: the EVENT_DTYPE events of those bins (normally sorted by t; sorted here, stably, if not).
    Returns:
        float32 ndarray (n, channels, height >> downsample, width >> downsample).
    """
    import numpy as np

    from evframe.preprocess import compute

    t = events["t"]
    if len(t) > 1 and bool((t[1:] < t[:-1]).any()):
        events = events[np.argsort(t, kind="stable")]
        t = events["t"]
    edges = (first + np.arange(n + 1, dtype=np.int64)) * job.delta_t
    bounds = np.searchsorted(t, edges, side="left")
    out = np.empty((n, channels, height >> job.downsample, width >> job.downsample), dtype=np.float32)
    for i in range(n):
        out[i] = compute(job.preprocess, events[bounds[i]:bounds[i + 1]], 1, height, width, job.delta_t,
                         start_ts=int(edges[i]), downsample=job.downsample, **job.kwargs)[0].numpy()
    return out


def _convert_safely(source: Path, output: Path, job: Job) -> FileResult:
    try:
        return convert_file(source, output, job)
    except (OSError, ValueError, KeyError, TypeError) as err:  # EventFileError is a ValueError
        return FileResult(source, output, "failed", message=str(err))


# ------------------------------------------------------------------------------------------------------------ main
EVENT_SUFFIXES = (".dat", ".raw", ".hdf5")


def find_event_files(input_dir: Path) -> list[Path]:
    """Sorted event files (``*.dat``, ``*.raw``, HDF5 event files ``*.hdf5``) under ``input_dir``; hidden and
    temporary files, and HDF5 files without ``/CD/events`` (tensor files), are excluded."""
    from evframe.io import is_hdf5_event_file

    found = []
    for p in input_dir.rglob("*"):
        if p.suffix.lower() not in EVENT_SUFFIXES or not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() == ".hdf5" and not is_hdf5_event_file(p):
            continue
        found.append(p)
    return sorted(found)


def copy_label_maps(input_dir: Path, output_dir: Path) -> list[Path]:
    """Copies every ``label_map_dictionary.json`` under ``input_dir`` to the same place under ``output_dir``."""
    copied = []
    for src in sorted(input_dir.rglob(LABEL_MAP)):
        target = output_dir / src.relative_to(input_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomic(src, target)
        copied.append(target)
    return copied


def _make_job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Job:
    from evframe.io import empty_events
    from evframe.preprocess import available, compute

    if args.preprocess not in available():
        parser.error(f"--preprocess {args.preprocess!r} is not registered; available: {', '.join(available())}")
    if args.delta_t <= 0:
        parser.error(f"--delta-t must be positive, got {args.delta_t}")
    if args.downsample < 0:
        parser.error(f"--downsample must be >= 0, got {args.downsample}")
    if args.max_duration is not None and args.max_duration <= 0:
        parser.error(f"--max-duration must be positive, got {args.max_duration}")
    if args.chunk_bins is not None and args.chunk_bins <= 0:
        parser.error(f"--chunk-bins must be positive, got {args.chunk_bins}")
    kwargs = dict(args.kwarg)
    try:  # checks option names and values on no events, before any file is touched
        size = 1 << args.downsample
        compute(args.preprocess, empty_events(0), 1, size, size, args.delta_t, downsample=args.downsample, **kwargs)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    known = builtin_value_range(args.preprocess, kwargs)
    value_range, integer_values = (tuple(args.value_range), False) if args.value_range else (known or (None, False))
    if args.store_as_uint8 and value_range is None:
        parser.error(f"--store-as-uint8 needs --value-range LOW HIGH for preprocess {args.preprocess!r}")
    return Job(args.preprocess, args.delta_t, args.downsample, kwargs, args.height, args.width, args.max_duration,
               args.store_as_uint8, value_range if args.store_as_uint8 else None, integer_values,
               args.compression, args.chunk_bins)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0: all files done or skipped, 1: some failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    job = _make_job(args, parser)
    input_dir, output_dir = args.input_dir.resolve(), args.output_dir.resolve()
    if not input_dir.is_dir():
        parser.error(f"input folder {input_dir} does not exist")
    if output_dir == input_dir:
        parser.error("OUTPUT_DIR must differ from INPUT_DIR")
    sources = find_event_files(input_dir)
    if not sources:
        print(f"no event files (*.dat, *.raw, *.hdf5) under {input_dir}", file=sys.stderr)
        return 1
    output_dir.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    todo, results = [], []
    for source in sources:
        output = output_path(source, input_dir, output_dir)
        if output.exists() and not args.overwrite:
            results.append(FileResult(source, output, "skipped", message="exists (use --overwrite)"))
        else:
            todo.append((source, output))
    if args.num_workers > 1 and len(todo) > 1:
        # spawn, not fork: the parent may hold torch / numba thread pools that a forked child must not inherit
        with ProcessPoolExecutor(args.num_workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_convert_safely, s, o, job) for s, o in todo]
            for future in futures:
                results.append(_report(future.result(), input_dir))
    else:
        for source, output in todo:
            results.append(_report(_convert_safely(source, output, job), input_dir))
    for result in results:
        if result.status == "skipped":
            print(f"skipped {result.source.relative_to(input_dir)}: {result.message}")
    maps = copy_label_maps(input_dir, output_dir)
    _summary(results, maps, output_dir, time.perf_counter() - begin)
    return 1 if any(r.status == "failed" for r in results) else 0


def _report(result: FileResult, input_dir: Path) -> FileResult:
    name = result.source.relative_to(input_dir)
    if result.status == "done":
        rate = result.events / result.seconds / 1e6 if result.seconds > 0 else 0.0
        print(f"done    {name} -> {result.output.name}: {result.bins} tensors, {result.events} events, "
              f"{result.seconds:.2f} s ({rate:.1f} Mev/s)")
    else:
        print(f"FAILED  {name}: {result.message}", file=sys.stderr)
    return result


def _summary(results: list[FileResult], maps: list[Path], output_dir: Path, seconds: float) -> None:
    done = [r for r in results if r.status == "done"]
    failed = [r for r in results if r.status == "failed"]
    size = sum(r.output.stat().st_size for r in done if r.output.exists())
    print(f"summary: {len(done)} converted, {len(results) - len(done) - len(failed)} skipped, {len(failed)} failed; "
          f"{sum(r.bins for r in done)} tensors from {sum(r.events for r in done)} events in {seconds:.1f} s; "
          f"{size / 2**20:.1f} MiB written to {output_dir}; {len(maps)} label map(s) copied")


if __name__ == "__main__":
    sys.exit(main())
