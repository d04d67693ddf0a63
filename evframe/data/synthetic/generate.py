"""Generation of the whole synthetic dataset (splits of recordings, label map, stamp), in parallel."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evframe.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig, get_config
from evframe.io import save_label_map

#: stamp file at the dataset root: config digest, config, per-recording summaries
STAMP_NAME = ".evframe_synthetic.json"

#: below this much work (pixels x seconds of video) worker start-up costs more than it saves
_PARALLEL_MIN_WORK = 2e5


def recording_name(split: str, index: int) -> str:
    return f"synth_{split}_{index:03d}"


def _generate_one(job: tuple) -> dict:
    """Worker: simulates and writes one recording (files written by the worker: nothing big is pickled)."""
    config, seed, split_index, split, index, directory = job
    from evframe.data.synthetic.recording import simulate_recording
    from evframe.data.synthetic.writer import write_recording

    recording = simulate_recording(config, np.random.SeedSequence([int(seed), split_index, index]))
    summary = write_recording(directory, recording_name(split, index), recording, config.height, config.width)
    return {"split": split, **summary}


def _init_worker() -> None:
    # one thread per worker: the parallelism is over recordings
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Serial torch for the in-process path: frames are small, and OpenMP thread teams cost more than they
    save (milliseconds per op when the cores are busy); the caller's setting is restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resolve_workers(num_workers: int | None, config: SyntheticConfig, jobs: int) -> int:
    if num_workers is not None:
        return max(0, min(int(num_workers), jobs))
    work = config.height * config.width * config.duration_us * 1e-6 * jobs
    if work < _PARALLEL_MIN_WORK:
        return 0
    return max(1, min(os.cpu_count() or 1, jobs))


def generate(root: str | os.PathLike, preset: str | SyntheticConfig = "default", seed: int = 0,
             num_workers: int | None = None, verbose: bool = False) -> Path:
    """Generates the dataset into ``root`` (created; existing files of the same names are replaced).

    Layout: ``root/{split}/synth_{split}_{i:03d}_td.dat`` + ``_bbox.npy`` + ``_flow.h5`` + ``_frames.h5``,
    ``root/label_map_dictionary.json``, and the stamp ``root/.evframe_synthetic.json`` written last.
    Each recording is seeded from ``(seed, split index, recording index)``: same inputs, identical files.

    Args:
        preset: "default", "tiny" or a :class:`SyntheticConfig`.
        num_workers: processes (0 or 1 = in this process); None = one per CPU for big presets, 0 for tiny ones.
    Returns:
        ``root`` as a Path.
    """
    config = get_config(preset)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(config, int(seed), split_index, split, index, root / split)
            for split_index, (split, count) in enumerate(config.splits) for index in range(count)]
    for split, _ in config.splits:
        (root / split).mkdir(exist_ok=True)
    save_label_map(root / "label_map_dictionary.json", dict(enumerate(config.classes)))
    workers = _resolve_workers(num_workers, config, len(jobs))
    start = time.perf_counter()
    if workers <= 1:
        with _single_threaded():
            summaries = [_generate_one(job) for job in jobs]
    else:
        # spawn, not fork: forking a process whose torch already ran OpenMP threads can deadlock the children
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            summaries = pool.map(_generate_one, jobs, chunksize=1)
    elapsed = time.perf_counter() - start
    if verbose:
        total = sum(s["events"] for s in summaries)
        print(f"generated {len(jobs)} recordings ({total / 1e6:.1f} M events) in {elapsed:.1f} s -> {root}")
    stamp = {"digest": config.digest(seed), "seed": int(seed), "generator_version": GENERATOR_VERSION,
             "config": config.to_dict(), "recordings": summaries}
    (root / STAMP_NAME).write_text(json.dumps(stamp, indent=1))
    return root


def read_stamp(root: str | os.PathLike) -> dict | None:
    """The stamp of a generated dataset, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
