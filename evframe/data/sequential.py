"""Sequential loading of event recordings as batches of B parallel streams (Metavision's ``SequentialDataLoader``).

A batch holds ``num_tbins`` consecutive time bins of ``delta_t`` us for each of its B *slots*. Each slot plays
recordings one after another: a recording (or, with ``max_consecutive_batch``, a chunk of one) is played batch after
batch, and when it ends the next one waiting starts in that slot with ``mask_keep_memory = 0`` so that recurrent
models reset their state. When no recording is left a slot is padded with zeros (``frame_is_labeled`` False) until
every slot is done (``padding=True``), or the epoch stops at the first exhausted slot (``padding=False``).

Which slot plays which recording is decided up front from the recordings' durations (no preprocessing needed), so
``len()`` is exact and every worker process computes the same schedule on its own. With ``num_workers = W``
the B slots are split among the W workers: each worker plays whole streams (reading its files sequentially) and
yields its slice of every batch; the main process concatenates the W slices of a batch along B, in worker order.

Batch format (dict):
    ``inputs``: float32 tensor (T, B, C, H >> downsample, W >> downsample)
    ``labels``: list of T lists of B labels (whatever ``load_labels`` returns per bin; None for padding slots)
    ``mask_keep_memory``: float32 tensor (B,), 0 at the first batch of a recording/chunk and on padding, else 1
    ``frame_is_labeled``: bool tensor (T, B)
    ``video_infos``: list of B tuples ``(FileMetadata, batch_start_ts_us, batch_duration_us)``
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from evframe.data.labels import load_labels_stub
from evframe.data.metadata import FileMetadata

#: suffixes of precomputed tensor files; any other file is read as an event recording by ``evframe.io.open_events``
TENSOR_SUFFIXES = (".h5", ".hdf5")

LoadLabels = Callable[[FileMetadata, int, int, torch.Tensor], tuple[Any, np.ndarray]]


# --------------------------------------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Chunk:
    """``num_batches`` consecutive batches of recording ``file_index`` starting at ``start_ts`` us."""

    file_index: int
    start_ts: int
    num_batches: int


@dataclass(frozen=True)
class EpochPlan:
    """What each slot of this rank plays during one epoch: ``streams[b]`` chunks played in order in slot b, for
    ``num_batches`` batches (slots whose chunks end earlier are padded)."""

    streams: tuple[tuple[Chunk, ...], ...]
    num_batches: int


def split_into_chunks(file_index: int, metadata: FileMetadata, max_consecutive_batch: int | None,
                      offset: int = 0) -> list[Chunk]:
    """Cuts a recording into chunks of at most ``max_consecutive_batch`` batches.

    Chunk boundaries fall at ``offset + k * max_consecutive_batch`` batches (so with ``offset > 0`` the first chunk is
    ``offset`` batches long); every batch of the recording is in exactly one chunk.
    """
    total = metadata.num_batches
    if total <= 0:
        return []
    if max_consecutive_batch is None:
        bounds = [0, total]
    else:
        first = offset % max_consecutive_batch
        bounds = sorted({0, total, *range(first, total, max_consecutive_batch)})
    step = metadata.batch_duration
    return [Chunk(file_index, metadata.start_ts + a * step, b - a)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def assign_to_slots(chunks: Sequence[Chunk], batch_size: int) -> list[list[Chunk]]:
    """Greedy playback: each chunk, in order, goes to the slot that becomes free first (lowest index on ties), as
    if every slot took the next waiting chunk when its current one ends."""
    streams: list[list[Chunk]] = [[] for _ in range(batch_size)]
    free_at = np.zeros(batch_size, dtype=np.int64)
    for chunk in chunks:
        slot = int(np.argmin(free_at))
        streams[slot].append(chunk)
        free_at[slot] += chunk.num_batches
    return streams


def plan_epoch(metadatas: Sequence[FileMetadata], batch_size: int, epoch: int = 0, seed: int = 0,
               shuffle: bool = False, max_consecutive_batch: int | None = None, padding: bool = True,
               rank: int = 0, world_size: int = 1) -> EpochPlan:
    """The schedule of one epoch for ``rank``.

    Recordings are permuted (when ``shuffle``) by a generator seeded with ``(seed, epoch)`` — identical on every rank
    and worker — then dealt to ranks round-robin (disjoint sets). Each rank cuts its recordings into chunks (random
    chunk offsets and a permutation of the chunks when ``shuffle``) and assigns them to its ``batch_size`` slots.
    Every rank gets the same number of batches: the longest rank's (shorter ranks pad) with ``padding``, else the
    shortest slot of all ranks (the epoch stops as soon as one slot runs out).
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(metadatas)
    order = rng.permutation(n) if shuffle else np.arange(n)
    # offsets are drawn for every recording, whatever the rank, so that all ranks agree on them
    if shuffle and max_consecutive_batch is not None:
        offsets = rng.integers(0, max_consecutive_batch, size=n)
    else:
        offsets = np.zeros(n, dtype=np.int64)
    all_streams = []
    for r in range(world_size):
        chunks = [c for i in order[r::world_size]
                  for c in split_into_chunks(int(i), metadatas[i], max_consecutive_batch, int(offsets[i]))]
        if shuffle and max_consecutive_batch is not None:
            perm = np.random.default_rng([seed, epoch, r]).permutation(len(chunks))
            chunks = [chunks[i] for i in perm]
        all_streams.append(assign_to_slots(chunks, batch_size))
    lengths = [[sum(c.num_batches for c in stream) for stream in streams] for streams in all_streams]
    num_batches = max(max(ls) for ls in lengths) if padding else min(min(ls) for ls in lengths)
    return EpochPlan(tuple(tuple(s) for s in all_streams[rank]), int(num_batches))


def rescale_delta_t(metadatas: Sequence[FileMetadata], scales: Sequence[float], seed: int,
                    epoch: int) -> list[FileMetadata]:
    """Speed augmentation: how each recording plays in ``epoch`` when its bins are ``delta_t * s`` long.

    For every recording a scale ``s`` is drawn uniformly from ``scales`` by a generator seeded with
    ``(seed, epoch)`` (the same on every rank and worker, and independent of the shuffling's draws). Bins of
    ``delta_t * s`` (rounded to whole us) hold ``s`` times the motion per bin of the recording's bins of ``delta_t``,
    and as many events as a scene moving ``s`` times as fast would leave in a bin of ``delta_t``: ``s = 0.5`` turns a
    camera moving 1 px per bin into one moving 0.5 px per bin. A recording drawn with ``s < 1`` plays a window of
    ``s`` of its played duration (whole batches, at a random offset), so the epoch keeps about its number of batches;
    with ``s >= 1`` it plays whole (``1 / s`` of its batches). Labels would describe bins of another length, so this
    is meant for self-supervised training (the flow task's training split).

    Returns:
        one :class:`FileMetadata` per recording, ``delta_t``, ``start_ts`` and ``max_duration`` replaced.
    """
    rng = np.random.default_rng([seed, epoch, 0x5CA1E])
    picks = rng.integers(0, len(scales), size=len(metadatas))
    offsets = rng.random(len(metadatas))
    out = []
    for md, pick, offset in zip(metadatas, picks, offsets, strict=True):
        scale = float(scales[int(pick)])
        delta_t = max(1, round(md.delta_t * scale))
        batch = delta_t * md.num_tbins
        played = md.stop_ts - md.start_ts
        start_ts, max_duration = md.start_ts, md.max_duration
        if scale < 1 and played > 0:
            window = max(1, round(played * scale / batch)) * batch
            slack = max(0, (played - window) // batch)
            start_ts = md.start_ts + int(offset * (slack + 1)) * batch
            max_duration = window
        out.append(FileMetadata(md.path, md.duration, delta_t, md.num_tbins, labelling_delta_t=md.labelling_delta_t,
                                start_ts=start_ts, max_duration=max_duration, height=md.height, width=md.width,
                                downsample=md.downsample, padding=md.padding))
    return out


def _check_delta_t_scales(scales: Sequence[float] | None, delta_t: int, files: Sequence[str]) -> None:
    if scales is None:
        return
    scales = list(scales)
    bad = [s for s in scales if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)]
    if not scales or bad:
        raise ValueError(f"delta_t_scales must be a non-empty list of positive numbers, got {scales}")
    tensors = [f for f in files if _is_tensor_file(f)]
    if tensors:
        raise ValueError(f"delta_t_scales re-bins events, but {tensors[0]} holds precomputed tensors of a fixed "
                         f"delta_t: give event files (DAT, RAW, HDF5 events) or leave delta_t_scales unset")
    if min(scales) * delta_t < 1:
        raise ValueError(f"delta_t_scales: {min(scales)} x delta_t={delta_t} us is under 1 us")


# ----------------------------------------------------------------------------------------------------------- sources
class _EventSource:
    """Reads a recording sequentially and preprocesses each batch on the fly."""

    def __init__(self, metadata: FileMetadata, start_ts: int, preprocess: str, kwargs: dict):
        from evframe.io import open_events

        self.metadata = metadata
        self.preprocess = preprocess
        self.kwargs = kwargs
        self.reader = open_events(metadata.path, height=metadata.height, width=metadata.width)
        self.reader.seek_time(start_ts)
        self.next_ts = start_ts

    def read_batch(self, start_ts: int) -> torch.Tensor:
        from evframe.preprocess import compute

        md = self.metadata
        if start_ts != self.next_ts:  # chunks are played in order: never seek back and forth
            self.reader.seek_time(start_ts)
        events = self.reader.load_delta_t(md.batch_duration)
        self.next_ts = start_ts + md.batch_duration
        if self.next_ts > md.stop_ts:  # max_duration cuts the last batch
            events = events[events["t"] < md.stop_ts]
        return compute(self.preprocess, events, md.num_tbins, md.height, md.width, md.delta_t, start_ts=start_ts,
                       downsample=md.downsample, **self.kwargs)

    def close(self) -> None:
        _close(self.reader)


class _TensorSource:
    """Reads precomputed tensors (one per ``delta_t``, tensor i covering ``[i * delta_t, (i + 1) * delta_t)``)."""

    def __init__(self, metadata: FileMetadata, start_ts: int, preprocess: str, kwargs: dict):
        from evframe.preprocess.h5_tensors import TensorH5Reader

        self.metadata = metadata
        self.reader = TensorH5Reader(metadata.path)
        self.length = len(self.reader)

    def read_batch(self, start_ts: int) -> torch.Tensor:
        md = self.metadata
        first = start_ts // md.delta_t
        stop = min(first + md.num_tbins, self.length, math.ceil(md.stop_ts / md.delta_t))
        data = np.asarray(self.reader.read(first, stop), dtype=np.float32) if stop > first else None
        out = torch.zeros((md.num_tbins, *self.reader.shape[1:]), dtype=torch.float32)
        if data is not None:
            out[: len(data)] = torch.from_numpy(np.ascontiguousarray(data))
        return out

    def close(self) -> None:
        _close(self.reader)


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        close()


def _is_tensor_file(path: str | os.PathLike) -> bool:
    """HDF5 files are tensor files unless they hold Metavision's ``/CD/events`` (HDF5 event files)."""
    if Path(path).suffix.lower() not in TENSOR_SUFFIXES:
        return False
    from evframe.io.hdf5_events import is_hdf5_event_file

    return not is_hdf5_event_file(path)


# ----------------------------------------------------------------------------------------------------------- dataset
@dataclass
class _SlotItem:
    tensor: torch.Tensor  # (T, C, h, w)
    labels: list
    frame_is_labeled: np.ndarray  # (T,) bool
    keep_memory: float
    video_info: tuple


class SequentialDataset(IterableDataset):
    """Plays the slots of a batch owned by the current worker (all of them without workers).

    Each item is a partial batch: the batch dict of the module docstring restricted to this worker's slots, plus
    ``batch_index`` and ``worker_id`` so that :class:`SequentialDataLoader` can reassemble full batches.

    Args:
        metadatas: one :class:`FileMetadata` per recording (see :func:`build_metadata`).
        preprocess_function_name: name in the ``evframe.preprocess`` registry (used for event files).
        array_dim: ``[num_tbins, channels, height, width]`` with the sensor's height and width.
        load_labels: ``load_labels(metadata, start_ts, duration, tensor) -> (labels[num_tbins], bool (num_tbins,))``.
        batch_size: number of parallel streams B.
        preprocess_kwargs: extra arguments of the preprocessing function.
        padding, shuffle, seed, max_consecutive_batch, rank, world_size: see :func:`plan_epoch`.
        downsample: tensors are ``2 ** downsample`` times smaller than the sensor.
        delta_t_scales: see :func:`rescale_delta_t` (None: every recording plays as ``metadatas`` say).
    """

    def __init__(self, metadatas: Sequence[FileMetadata], preprocess_function_name: str, array_dim: Sequence[int],
                 load_labels: LoadLabels = load_labels_stub, batch_size: int = 4,
                 preprocess_kwargs: dict | None = None, padding: bool = True, shuffle: bool = False, seed: int = 0,
                 max_consecutive_batch: int | None = None, downsample: int = 0, rank: int = 0, world_size: int = 1,
                 delta_t_scales: Sequence[float] | None = None):
        super().__init__()
        self.metadatas = list(metadatas)
        self.delta_t_scales = None if delta_t_scales is None else tuple(float(s) for s in delta_t_scales)
        self.preprocess_function_name = preprocess_function_name
        self.array_dim = [int(v) for v in array_dim]
        self.load_labels = load_labels
        self.batch_size = int(batch_size)
        self.preprocess_kwargs = dict(preprocess_kwargs or {})
        self.padding = bool(padding)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.max_consecutive_batch = max_consecutive_batch
        self.downsample = int(downsample)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        #: the iteration starts at this batch of the epoch (a run resumed mid-epoch), every stream with fresh memory
        self.start_batch = 0
        self.num_tbins, self.channels, self.height, self.width = self.array_dim

    @property
    def tensor_shape(self) -> tuple[int, int, int, int]:
        """(T, C, h, w) of one slot's input."""
        return (self.num_tbins, self.channels, self.height >> self.downsample, self.width >> self.downsample)

    def epoch_metadatas(self, epoch: int | None = None) -> list[FileMetadata]:
        """How each recording plays in ``epoch`` (the current one by default): ``metadatas``, rescaled by
        :func:`rescale_delta_t` when ``delta_t_scales`` is set."""
        epoch = self.epoch if epoch is None else epoch
        if self.delta_t_scales is None:
            return self.metadatas
        return rescale_delta_t(self.metadatas, self.delta_t_scales, self.seed, epoch)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        epoch = self.epoch if epoch is None else epoch
        return plan_epoch(self.epoch_metadatas(epoch), self.batch_size, epoch, self.seed, self.shuffle,
                          self.max_consecutive_batch, self.padding, self.rank, self.world_size)

    def _padding_item(self) -> _SlotItem:
        md = FileMetadata.padding_metadata(self.metadatas[0].delta_t if self.metadatas else 1, self.num_tbins,
                                           self.height, self.width, self.downsample)
        return _SlotItem(torch.zeros(self.tensor_shape), [None] * self.num_tbins,
                         np.zeros(self.num_tbins, dtype=bool), 0.0, (md, 0, 0))

    def _check_labels(self, md: FileMetadata, start_ts: int, labels: Any, frame_is_labeled: Any) -> np.ndarray:
        frame_is_labeled = np.asarray(frame_is_labeled)
        if len(labels) != self.num_tbins or frame_is_labeled.shape != (self.num_tbins,):
            raise ValueError(f"{md.path}: load_labels at {start_ts}us returned {len(labels)} labels and a "
                             f"frame_is_labeled of shape {frame_is_labeled.shape}, expected {self.num_tbins} and "
                             f"({self.num_tbins},)")
        return frame_is_labeled.astype(bool)

    def _play_stream(self, stream: Sequence[Chunk], metadatas: Sequence[FileMetadata],
                     skip: int = 0) -> Iterator[_SlotItem]:
        """Items of one slot: its chunks (of ``metadatas``, the epoch's) batch after batch, then padding forever.
        The first ``skip`` batches are left out without being read; the first one played then starts with fresh
        memory (``mask_keep_memory`` 0)."""
        for chunk in stream:
            if skip >= chunk.num_batches:
                skip -= chunk.num_batches
                continue
            first, skip = skip, 0
            md = metadatas[chunk.file_index]
            source_cls = _TensorSource if _is_tensor_file(md.path) else _EventSource
            source = source_cls(md, chunk.start_ts + first * md.batch_duration, self.preprocess_function_name,
                                self.preprocess_kwargs)
            try:
                for i in range(first, chunk.num_batches):
                    start_ts = chunk.start_ts + i * md.batch_duration
                    tensor = source.read_batch(start_ts)
                    if tuple(tensor.shape) != self.tensor_shape:
                        raise ValueError(f"{md.path}: preprocessing gave a tensor of shape {tuple(tensor.shape)}, "
                                         f"expected {self.tensor_shape} from array_dim and downsample")
                    labels, frame_is_labeled = self.load_labels(md, start_ts, md.batch_duration, tensor)
                    frame_is_labeled = self._check_labels(md, start_ts, labels, frame_is_labeled)
                    yield _SlotItem(tensor.float(), list(labels), frame_is_labeled, 0.0 if i == first else 1.0,
                                    (md, start_ts, md.batch_duration))
            finally:
                source.close()
        while True:
            yield self._padding_item()

    def worker_slots(self, worker_id: int, num_workers: int) -> np.ndarray:
        """The slots played by worker ``worker_id`` of ``num_workers``: contiguous, sizes differing by at most 1."""
        return np.array_split(np.arange(self.batch_size), num_workers)[worker_id]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        metadatas = self.epoch_metadatas()
        plan = plan_epoch(metadatas, self.batch_size, self.epoch, self.seed, self.shuffle, self.max_consecutive_batch,
                          self.padding, self.rank, self.world_size)
        start = min(self.start_batch, plan.num_batches)
        players = [self._play_stream(plan.streams[b], metadatas, start)
                   for b in self.worker_slots(worker_id, num_workers)]
        for k in range(start, plan.num_batches):
            items = [next(p) for p in players]
            yield _stack_items(items, self.tensor_shape, k, worker_id)
        for p in players:
            p.close()  # closes the file of a stream cut short (padding=False)


def _stack_items(items: list[_SlotItem], tensor_shape: tuple, batch_index: int, worker_id: int) -> dict:
    """Partial batch of the slots in ``items``."""
    num_tbins = tensor_shape[0]
    if items:
        inputs = torch.stack([it.tensor for it in items], dim=1)
        frame_is_labeled = torch.from_numpy(np.stack([it.frame_is_labeled for it in items], axis=1))
    else:
        inputs = torch.zeros((num_tbins, 0, *tensor_shape[1:]))
        frame_is_labeled = torch.zeros((num_tbins, 0), dtype=torch.bool)
    return {
        "inputs": inputs,
        "labels": [[it.labels[t] for it in items] for t in range(num_tbins)],
        "mask_keep_memory": torch.tensor([it.keep_memory for it in items], dtype=torch.float32),
        "frame_is_labeled": frame_is_labeled,
        "video_infos": [it.video_info for it in items],
        "batch_index": batch_index,
        "worker_id": worker_id,
    }


def concatenate_partial_batches(parts: Sequence[dict]) -> dict:
    """Joins the workers' slices of one batch along B (``parts`` in worker order) into a batch dict."""
    indices = {p["batch_index"] for p in parts}
    workers = [p["worker_id"] for p in parts]
    if len(indices) != 1 or workers != list(range(len(parts))):
        raise RuntimeError(f"SequentialDataLoader: workers' batches out of step (batch indices {sorted(indices)}, "
                           f"workers {workers})")
    num_tbins = len(parts[0]["labels"])
    return {
        "inputs": torch.cat([p["inputs"] for p in parts], dim=1),
        "labels": [[lab for p in parts for lab in p["labels"][t]] for t in range(num_tbins)],
        "mask_keep_memory": torch.cat([p["mask_keep_memory"] for p in parts]),
        "frame_is_labeled": torch.cat([p["frame_is_labeled"] for p in parts], dim=1),
        "video_infos": [info for p in parts for info in p["video_infos"]],
    }


def _identity(x: Any) -> Any:  # module level so that worker processes can pickle it
    return x


# ---------------------------------------------------------------------------------------------------------- metadata
def build_metadata(path: str | os.PathLike, delta_t: int, preprocess_function_name: str, array_dim: Sequence[int],
                   downsample: int = 0, start_ts: int | None = 0, max_duration: int | None = None,
                   labelling_delta_t: int = 0, preprocess_kwargs: dict | None = None) -> FileMetadata:
    """Checks one input file against the loader's settings and describes it.

    Event files: the sensor size in their header must match ``array_dim``; duration = last timestamp + 1 (so the
    last event is played). Tensor files: ``delta_t``, preprocessing name and options present in both, channels and
    tensor size must match; duration = ``len(tensors) * delta_t``. ``start_ts=None``: an event file plays from its
    first event rounded down to ``delta_t``, a tensor file from its first tensor.

    Raises:
        ValueError naming the file and the mismatched field.
    """
    num_tbins, channels, height, width = (int(v) for v in array_dim)
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: input file not found")
    if _is_tensor_file(path):
        from evframe.preprocess.h5_tensors import TensorH5Reader

        reader = TensorH5Reader(path)
        try:
            duration = _check_tensor_file(reader, path, delta_t, preprocess_function_name, channels, height, width,
                                          downsample, preprocess_kwargs)
        finally:
            _close(reader)
        start_ts = 0 if start_ts is None else start_ts
        if start_ts % delta_t:
            raise ValueError(f"{path}: start_ts={start_ts} must be a multiple of delta_t={delta_t} to read "
                             f"precomputed tensors")
    else:
        from evframe.io import open_events

        reader = open_events(path)  # sizes from the header only, compared below (events are read later)
        try:
            file_hw = (reader.height, reader.width)
            if None not in file_hw and tuple(file_hw) != (height, width):
                raise ValueError(f"{path}: the recording is {file_hw[0]}x{file_hw[1]} (height x width) but "
                                 f"array_dim expects {height}x{width}")
            duration = int(reader.duration) + 1 if int(reader.event_count) > 0 else 0
            if start_ts is None:  # cameras timestamp from their own start, rarely 0
                start_ts = 0
                if duration:
                    reader.seek_event(0)
                    start_ts = int(reader.current_time) // delta_t * delta_t
        finally:
            _close(reader)
    return FileMetadata(path, duration, delta_t, num_tbins, labelling_delta_t=labelling_delta_t, start_ts=start_ts,
                        max_duration=max_duration, height=height, width=width, downsample=downsample)


def _check_tensor_file(reader: Any, path: str, delta_t: int, preprocess: str, channels: int, height: int,
                       width: int, downsample: int, preprocess_kwargs: dict | None = None) -> int:
    """Validates a precomputed tensor file; returns its duration in us."""
    stored = getattr(reader, "kwargs", None) or {}
    conflicts = {k: (stored[k], v) for k, v in (preprocess_kwargs or {}).items() if k in stored and stored[k] != v}
    if conflicts:
        raise ValueError(f"{path}: tensors were computed with other preprocess options than the loader's: "
                         + ", ".join(f"{k}={a!r} in the file, {b!r} asked" for k, (a, b) in conflicts.items()))
    if int(reader.delta_t) != int(delta_t):
        raise ValueError(f"{path}: tensors were computed with delta_t={reader.delta_t}us but the loader uses "
                         f"delta_t={delta_t}us")
    name = getattr(reader, "preprocess_name", None)
    from evframe.preprocess.functions import tensor_file_name

    # files hold tensors computed bin by bin: an event_cube file holds exactly event_cube_per_bin tensors
    if name and tensor_file_name(name) != tensor_file_name(preprocess):
        raise ValueError(f"{path}: tensors were computed with preprocess '{name}' but the loader expects "
                         f"'{preprocess}'")
    shape = tuple(int(v) for v in reader.shape)
    expected = (channels, height >> downsample, width >> downsample)
    if shape[1:] != expected:
        raise ValueError(f"{path}: tensors have shape (C, H, W) = {shape[1:]} but array_dim {[channels, height, width]}"
                         f" with downsample={downsample} expects {expected}")
    file_hw = (getattr(reader, "height", None), getattr(reader, "width", None))
    if None not in file_hw and (int(file_hw[0]), int(file_hw[1])) != (height, width):
        raise ValueError(f"{path}: tensors were computed from a {file_hw[0]}x{file_hw[1]} sensor but array_dim "
                         f"expects {height}x{width}")
    return len(reader) * int(reader.delta_t)


# ------------------------------------------------------------------------------------------------------------ loader
class SequentialDataLoader:
    """Iterates batches of B parallel streams over recordings (see the module docstring for the batch format).

    Args:
        files: event recordings (``*_td.dat``, read by ``evframe.io.open_events`` and preprocessed on the fly) and/or
            precomputed tensor files (``*.h5``, ``evframe.preprocess.h5_tensors``).
        delta_t: duration of a time bin in us.
        preprocess_function_name: name in the ``evframe.preprocess`` registry ("histo", "event_cube", ...).
        array_dim: ``[num_tbins, channels, height, width]``, height and width of the sensor (before downsampling).
        load_labels: hook ``(metadata, start_ts, duration, tensor) -> (labels[num_tbins], bool (num_tbins,))``;
            None means :func:`~evframe.data.labels.load_labels_stub`.
        batch_size: number of parallel streams B.
        num_workers: worker processes; the B slots are split among ``min(num_workers, B)`` of them.
        preprocess_kwargs: extra arguments of the preprocessing function.
        padding: pad finished slots until all are done (True) or stop at the first finished slot (False).
        shuffle: permute recordings (and chunks) every epoch with a generator seeded by ``(seed, epoch)``.
        seed: see ``shuffle``.
        max_consecutive_batch: cut recordings into chunks of at most this many batches (None: whole recordings).
        downsample: tensors are ``2 ** downsample`` times smaller than the sensor along each axis.
        start_ts: start playing every recording at this time (us); None: each event file from its first event
            rounded down to ``delta_t`` (as the streaming loader does), each tensor file from its first tensor.
        max_duration: play at most this many us of every recording.
        rank, world_size: distributed training; ranks get disjoint recordings and the same number of batches.
        labelling_delta_t: annotation period of the labels (stored in the metadata for ``load_boxes``).
        delta_t_scales: speed augmentation (event files only): every epoch each recording plays with bins of
            ``delta_t * s``, ``s`` drawn from this list (see :func:`rescale_delta_t`); None plays every recording
            at ``delta_t``.

    Epochs: ``set_epoch(e)`` selects the shuffling of the next iteration; each iteration then advances the epoch by
    one, so that successive passes differ even when nobody calls ``set_epoch``. ``len()`` is the number of batches
    of the next iteration.
    """

    def __init__(self, files: Sequence[str | os.PathLike], delta_t: int, preprocess_function_name: str,
                 array_dim: Sequence[int], load_labels: LoadLabels | None = load_labels_stub, batch_size: int = 4,
                 num_workers: int = 0, preprocess_kwargs: dict | None = None, padding: bool = True,
                 shuffle: bool = False, seed: int = 0, max_consecutive_batch: int | None = None, downsample: int = 0,
                 start_ts: int | None = 0, max_duration: int | None = None, rank: int = 0, world_size: int = 1,
                 labelling_delta_t: int = 0, delta_t_scales: Sequence[float] | None = None):
        if isinstance(files, (str, os.PathLike)):
            raise TypeError(f"files must be a list of paths, got the single path {files!r}")
        files = [str(f) for f in files]
        if not files:
            raise ValueError("SequentialDataLoader: the list of files is empty")
        array_dim = [int(v) for v in array_dim]
        if len(array_dim) != 4 or min(array_dim) <= 0:
            raise ValueError(f"array_dim must be [num_tbins, channels, height, width] of positive ints, got "
                             f"{array_dim}")
        _check_positive(delta_t=delta_t, batch_size=batch_size, world_size=world_size)
        if num_workers < 0 or downsample < 0 or (start_ts is not None and start_ts < 0):
            raise ValueError(f"num_workers, downsample and start_ts must be >= 0, got {num_workers}, {downsample}, "
                             f"{start_ts}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        _check_max_consecutive_batch(max_consecutive_batch)
        _check_delta_t_scales(delta_t_scales, int(delta_t), files)
        preprocess_kwargs = dict(preprocess_kwargs or {})
        load_labels = load_labels_stub if load_labels is None else load_labels
        if not all(_is_tensor_file(f) for f in files):
            _check_preprocess(preprocess_function_name, array_dim[1], preprocess_kwargs)
        self.files = files
        self.delta_t = int(delta_t)
        self.preprocess_function_name = preprocess_function_name
        self.array_dim = array_dim
        self.num_workers = int(num_workers)
        self.metadatas = [build_metadata(f, self.delta_t, preprocess_function_name, array_dim, downsample, start_ts,
                                         max_duration, labelling_delta_t, preprocess_kwargs) for f in files]
        empty = [md.path for md in self.metadatas if md.num_batches == 0]
        if empty:
            warnings.warn(f"SequentialDataLoader: nothing to play in {empty} (empty or shorter than start_ts)",
                          stacklevel=2)
        self.dataset = SequentialDataset(self.metadatas, preprocess_function_name, array_dim, load_labels,
                                         batch_size, preprocess_kwargs, padding, shuffle, seed,
                                         max_consecutive_batch, downsample, rank, world_size, delta_t_scales)
        self._progress: dict[str, Any] = {}
        self._resume_at = 0

    # --------------------------------------------------------------------------------------------------- settings
    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    @property
    def height(self) -> int:
        """Height of the sensor (the tensors are ``height >> downsample`` high)."""
        return self.dataset.height

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def epoch(self) -> int:
        """Epoch whose schedule the next iteration plays."""
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the shuffling (and chunk offsets) of the next iteration."""
        self.dataset.epoch = int(epoch)

    def set_max_consecutive_batch(self, max_consecutive_batch: int | None) -> None:
        """From the next iteration on, cut recordings into chunks of at most this many batches (None: no cut)."""
        _check_max_consecutive_batch(max_consecutive_batch)
        self.dataset.max_consecutive_batch = max_consecutive_batch

    def get_vis_func(self) -> Callable[[np.ndarray], np.ndarray]:
        """The function drawing one (C, H, W) input as an RGB uint8 image."""
        from evframe.data.visualize import get_vis_func

        return get_vis_func(self.preprocess_function_name)

    # -------------------------------------------------------------------------------------------------- iteration
    def __len__(self) -> int:
        return self.dataset.plan().num_batches

    def __iter__(self) -> Iterator[dict]:
        # a generator: nothing happens before the first batch is asked for, so an iterator that is made and
        # dropped (Lightning makes one to check that the loader is iterable) does not use up an epoch
        return self._iterate()

    # -------------------------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        """Where the current (or last) pass stands; Lightning stores it in checkpoints (a loader with
        ``state_dict``/``load_state_dict`` is resumable mid-epoch): ``epoch``, ``max_consecutive_batch``,
        ``num_batches`` of that pass and ``batches_consumed``. Empty before the first pass."""
        return dict(self._progress)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes a pass that was cut short (``batches_consumed < num_batches``): the next iteration plays that
        epoch (same shuffling and chunks) from batch ``batches_consumed`` on, every stream starting with fresh memory
        (``mask_keep_memory`` 0: the recurrent state was not saved). A finished pass changes nothing: the next epoch
        is chosen by :meth:`set_epoch` as usual."""
        if not state or not 0 < int(state["batches_consumed"]) < int(state["num_batches"]):
            return
        _check_max_consecutive_batch(state["max_consecutive_batch"])
        self.dataset.epoch = int(state["epoch"])
        self.dataset.max_consecutive_batch = state["max_consecutive_batch"]
        self._resume_at = int(state["batches_consumed"])

    def _iterate(self) -> Iterator[dict]:
        # a copy pinned to this epoch's settings: workers copy it when they start, and set_epoch or
        # set_max_consecutive_batch may be called while the iteration goes on
        dataset = copy.copy(self.dataset)
        dataset.start_batch, self._resume_at = self._resume_at, 0
        self.dataset.epoch += 1  # the next pass plays the next epoch unless set_epoch says otherwise
        progress = {"epoch": dataset.epoch, "max_consecutive_batch": dataset.max_consecutive_batch,
                    "num_batches": dataset.plan().num_batches, "batches_consumed": dataset.start_batch}
        self._progress = progress
        num_workers = min(self.num_workers, dataset.batch_size)
        if num_workers == 0:
            parts_iter: Any = iter(dataset)
        else:
            parts_iter = iter(DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_identity))
        # torch hands out the items of iterable datasets round-robin over workers, all of which yield the same
        # number of partial batches: every W consecutive items are the W slices of one batch
        parts: list[dict] = []
        for part in parts_iter:
            parts.append(part)
            if len(parts) == max(num_workers, 1):
                # counted as handed out: Lightning does not fetch ahead from a loader that has a length, so while
                # it trains on batch k (and checkpoints after it) this reads k + 1, the batches it has consumed
                progress["batches_consumed"] += 1
                yield concatenate_partial_batches(parts)
                parts = []
        if parts:
            raise RuntimeError(f"SequentialDataLoader: {len(parts)} workers' slices left without the others")

    def show(self, viz_labels: Callable[[np.ndarray, Any], np.ndarray] | None = None) -> Iterator[np.ndarray]:
        """Yields, for every time bin of every batch, an RGB uint8 image of the B inputs in a grid.

        Args:
            viz_labels: ``viz_labels(frame (h, w, 3) uint8, labels of one slot and bin) -> frame``, called when the
                label is not None.
        """
        from evframe.data.visualize import show_batches

        return show_batches(self, self.get_vis_func(), viz_labels)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _check_max_consecutive_batch(value: int | None) -> None:
    if value is not None and (int(value) != value or value < 1):
        raise ValueError(f"max_consecutive_batch must be None or an integer >= 1, got {value}")


def _check_preprocess(name: str, channels: int, kwargs: dict) -> None:
    """The preprocessing must exist and give ``channels`` channels."""
    from evframe import preprocess

    if name not in preprocess.available():
        raise ValueError(f"unknown preprocess_function_name '{name}' (available: {preprocess.available()})")
    expected = preprocess.num_channels(name, **kwargs)
    if expected != channels:
        raise ValueError(f"array_dim has {channels} channels but preprocess '{name}' with {kwargs} gives {expected}")
