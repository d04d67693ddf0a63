"""Streaming recordings of any event format straight into training (Metavision's ``CDProcessorDataLoader``).

RAW (EVT 2.0 / 3.0), HDF5 event and DAT files are read front to back with ``evframe.io.open_events`` and turned
into tensors on the fly, without a conversion step and without seeking back and forth. Batches have the
:class:`~evframe.data.sequential.SequentialDataLoader` format (``inputs (T, B, C, H, W)``, ``labels``,
``mask_keep_memory``, ``frame_is_labeled``, ``video_infos``), so models and tasks take either loader.

- **Slicing**: ``mode="delta_t"``: each of the ``num_tbins`` bins is ``delta_t`` us; ``mode="n_events"``: each bin
  holds ``n_events`` events (its duration is whatever they span; labels get the batch's actual start and duration).
- **Time origin**: cameras timestamp from their own start, so a recording is played from its first event (rounded
  down to a multiple of ``delta_t``), for at most ``max_duration`` us.
- **Streams**: the B slots of a batch each play recordings one after the other (``mask_keep_memory`` 0 at the first
  batch of each); a slot with nothing left is padded with zeros (``frame_is_labeled`` False) until all are done, or
  the epoch stops at the first exhausted slot (``padding=False``).
- **Workers** own whole recordings: the slots are split among ``num_workers`` processes, each reading its
  recordings sequentially; the main process joins the workers' slices of a batch. Each worker seeds ``random``,
  numpy and torch from ``(seed, epoch, rank, worker)`` (:func:`worker_seed`), so runs are reproducible.
- **Distributed**: with ``torch.distributed`` initialised (or ``rank`` / ``world_size`` given) each rank plays a
  disjoint share of the recordings, and every rank yields the same number of batches (shorter ones pad).

Recording lengths are read once when the loader is built (a RAW file has no index: this scans it, at the decoder's
speed), so ``len()`` is exact and every rank agrees on it.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from evframe.data.labels import load_labels_stub
from evframe.data.metadata import FileMetadata
from evframe.data.sequential import (
    Chunk,
    EpochPlan,
    LoadLabels,
    _identity,
    _SlotItem,
    _stack_items,
    assign_to_slots,
    concatenate_partial_batches,
)

MODES = ("delta_t", "n_events")


@dataclass(frozen=True)
class Recording:
    """One recording as the loader plays it: its metadata (start_ts, duration, sizes) and number of batches."""

    metadata: FileMetadata
    num_batches: int
    event_count: int


def _first_time(reader: Any) -> int:
    reader.seek_event(0)
    return int(reader.current_time)


def describe_recording(path: str | os.PathLike, mode: str, delta_t: int, n_events: int, num_tbins: int,
                       height: int, width: int, downsample: int = 0, max_duration: int | None = None) -> Recording:
    """Reads what planning needs from one event file (sizes, first / last time, event count).

    Raises:
        FileNotFoundError / EventFileError: unreadable file. ValueError: the file's sensor size differs from
        ``height x width``.
    """
    from evframe.io import open_events

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: input file not found")
    reader = open_events(path)
    try:
        file_hw = (reader.height, reader.width)
        if None not in file_hw and (int(file_hw[0]), int(file_hw[1])) != (int(height), int(width)):
            raise ValueError(f"{path}: the recording is {file_hw[0]}x{file_hw[1]} (height x width) but the loader "
                             f"expects {height}x{width}")
        count = int(reader.event_count)
        first = _first_time(reader) if count else 0
        last = int(reader.duration) if count else 0
        start_ts = first // delta_t * delta_t
        md = FileMetadata(path, last + 1 if count else start_ts, delta_t, num_tbins, start_ts=start_ts,
                          max_duration=max_duration, height=height, width=width, downsample=downsample)
        if mode == "delta_t":
            return Recording(md, md.num_batches, count)
        played = count
        if max_duration is not None and count:
            reader.seek_time(md.stop_ts)
            played = int(reader.current_position)
        return Recording(md, math.ceil(played / (n_events * num_tbins)), played)
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def plan_streams(recordings: Sequence[Recording], batch_size: int, epoch: int = 0, seed: int = 0,
                 shuffle: bool = False, padding: bool = True, rank: int = 0, world_size: int = 1) -> EpochPlan:
    """The schedule of one epoch for ``rank``: whole recordings dealt to ranks round-robin (after a permutation
    seeded by ``(seed, epoch)`` when ``shuffle``, the same on every rank), then to the rank's slots (the slot free
    first takes the next). All ranks get the same number of batches: the longest rank's with ``padding``, else the
    shortest slot of all ranks."""
    order = np.random.default_rng([seed, epoch]).permutation(len(recordings)) if shuffle \
        else np.arange(len(recordings))
    all_streams = []
    for r in range(world_size):
        chunks = [Chunk(int(i), recordings[i].metadata.start_ts, recordings[i].num_batches)
                  for i in order[r::world_size] if recordings[i].num_batches > 0]
        all_streams.append(assign_to_slots(chunks, batch_size))
    lengths = [[sum(c.num_batches for c in s) for s in streams] for streams in all_streams]
    num_batches = max(max(ls) for ls in lengths) if padding else min(min(ls) for ls in lengths)
    return EpochPlan(tuple(tuple(s) for s in all_streams[rank]), int(num_batches))


def worker_seed(seed: int, epoch: int, rank: int, worker_id: int) -> int:
    """The seed of one worker process in one epoch (distinct per rank and worker, the same on every run)."""
    return int(np.random.SeedSequence([seed, epoch, rank, worker_id]).generate_state(1)[0])


def _seed_everything(value: int) -> None:
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


class _Stream:
    """Reads one recording front to back, one batch at a time."""

    def __init__(self, recording: Recording, mode: str, n_events: int, preprocess: str, kwargs: dict):
        from evframe.io import open_events

        self.md = recording.metadata
        self.mode, self.n_events, self.preprocess, self.kwargs = mode, n_events, preprocess, kwargs
        self.reader = open_events(self.md.path, height=self.md.height, width=self.md.width)
        self.reader.seek_time(self.md.start_ts)
        self.next_ts = self.md.start_ts

    def _tensor(self, events: np.ndarray, num_tbins: int, delta_t: int, start_ts: int) -> torch.Tensor:
        from evframe.preprocess import compute

        md = self.md
        return compute(self.preprocess, events, num_tbins, md.height, md.width, delta_t, start_ts=start_ts,
                       downsample=md.downsample, **self.kwargs)

    def read_batch(self) -> tuple[torch.Tensor, int, int]:
        """Returns (tensor (T, C, h, w), batch start in us, batch duration in us)."""
        md = self.md
        start = self.next_ts
        if self.mode == "delta_t":
            events = self.reader.load_delta_t(md.batch_duration)
            events = events[events["t"] < md.stop_ts]  # max_duration cuts the last batch
            self.next_ts = start + md.batch_duration
            return self._tensor(events, md.num_tbins, md.delta_t, start), start, md.batch_duration
        bins = []
        for k in range(md.num_tbins):
            events = self.reader.load_n_events(self.n_events)
            events = events[events["t"] < md.stop_ts]
            # a bin spans its own events; it starts earlier than the previous bin's end when they share a timestamp
            begin = min(self.next_ts, int(events["t"][0])) if len(events) else self.next_ts
            end = max(int(events["t"][-1]) + 1, begin + 1) if len(events) else begin + 1
            bins.append(self._tensor(events, 1, end - begin, begin))
            start = begin if k == 0 else start
            self.next_ts = end
        return torch.cat(bins), start, self.next_ts - start

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


class StreamingDataset(IterableDataset):
    """Plays the slots owned by the current worker; items are partial batches (see :class:`StreamingDataLoader`)."""

    def __init__(self, recordings: Sequence[Recording], preprocess_function_name: str, array_dim: Sequence[int],
                 mode: str = "delta_t", n_events: int = 0, load_labels: LoadLabels = load_labels_stub,
                 batch_size: int = 4, preprocess_kwargs: dict | None = None, padding: bool = True,
                 shuffle: bool = False, seed: int = 0, downsample: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.recordings = list(recordings)
        self.preprocess_function_name = preprocess_function_name
        self.num_tbins, self.channels, self.height, self.width = (int(v) for v in array_dim)
        self.mode, self.n_events = mode, int(n_events)
        self.load_labels = load_labels
        self.batch_size = int(batch_size)
        self.preprocess_kwargs = dict(preprocess_kwargs or {})
        self.padding, self.shuffle, self.seed = bool(padding), bool(shuffle), int(seed)
        self.downsample, self.rank, self.world_size = int(downsample), int(rank), int(world_size)
        self.epoch = 0

    @property
    def tensor_shape(self) -> tuple[int, int, int, int]:
        return (self.num_tbins, self.channels, self.height >> self.downsample, self.width >> self.downsample)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        return plan_streams(self.recordings, self.batch_size, self.epoch if epoch is None else epoch, self.seed,
                            self.shuffle, self.padding, self.rank, self.world_size)

    def worker_slots(self, worker_id: int, num_workers: int) -> np.ndarray:
        """Contiguous slots of one worker (sizes differ by at most one): it owns their recordings whole."""
        return np.array_split(np.arange(self.batch_size), num_workers)[worker_id]

    def _padding_item(self) -> _SlotItem:
        md = FileMetadata.padding_metadata(self.recordings[0].metadata.delta_t if self.recordings else 1,
                                           self.num_tbins, self.height, self.width, self.downsample)
        return _SlotItem(torch.zeros(self.tensor_shape), [None] * self.num_tbins,
                         np.zeros(self.num_tbins, dtype=bool), 0.0, (md, 0, 0))

    def _play(self, stream: Sequence[Chunk]) -> Iterator[_SlotItem]:
        for chunk in stream:
            recording = self.recordings[chunk.file_index]
            source = _Stream(recording, self.mode, self.n_events, self.preprocess_function_name,
                             self.preprocess_kwargs)
            md = recording.metadata
            try:
                for i in range(chunk.num_batches):
                    tensor, start, duration = source.read_batch()
                    if tuple(tensor.shape) != self.tensor_shape:
                        raise ValueError(f"{md.path}: preprocessing gave a tensor of shape {tuple(tensor.shape)}, "
                                         f"expected {self.tensor_shape}")
                    labels, labeled = self.load_labels(md, start, duration, tensor)
                    labeled = np.asarray(labeled, dtype=bool)
                    if len(labels) != self.num_tbins or labeled.shape != (self.num_tbins,):
                        raise ValueError(f"{md.path}: load_labels at {start}us returned {len(labels)} labels and a "
                                         f"frame_is_labeled of shape {labeled.shape}, expected {self.num_tbins}")
                    yield _SlotItem(tensor.float(), list(labels), labeled, 0.0 if i == 0 else 1.0,
                                    (md, start, duration))
            finally:
                source.close()
        while True:
            yield self._padding_item()

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:  # the main process's random state is the training's: only workers are reseeded
            _seed_everything(worker_seed(self.seed, self.epoch, self.rank, worker_id))
        plan = self.plan()
        players = [self._play(plan.streams[b]) for b in self.worker_slots(worker_id, num_workers)]
        for k in range(plan.num_batches):
            yield _stack_items([next(p) for p in players], self.tensor_shape, k, worker_id)
        for p in players:
            p.close()


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingDataLoader:
    """Batches of B parallel streams over recordings of any supported format, streamed front to back.

    Args:
        files: event recordings (``.raw`` EVT 2.0 / 3.0, ``.hdf5`` events, ``.dat``), chosen by content.
        mode: ``"delta_t"`` (bins of ``delta_t`` us) or ``"n_events"`` (bins of ``n_events`` events).
        delta_t: bin duration in us (also the rounding of each recording's start time in ``n_events`` mode).
        n_events: events per bin in ``n_events`` mode.
        preprocess_function_name: name in the ``evframe.preprocess`` registry ("histo", "event_cube", ...).
        array_dim: ``[num_tbins, channels, height, width]`` with the sensor size.
        load_labels: hook ``(metadata, start_ts, duration, tensor) -> (labels[num_tbins], bool (num_tbins,))``;
            None: :func:`~evframe.data.labels.load_labels_stub`.
        batch_size: parallel streams B. num_workers: worker processes (at most B), each owning whole recordings.
        preprocess_kwargs: options of the preprocessing function. downsample: tensors ``2 ** downsample`` smaller.
        max_duration: play at most this many us of each recording (from its first event).
        padding: pad finished slots (True) or stop at the first finished slot (False).
        shuffle, seed: permute recordings each epoch with ``(seed, epoch)``; ``seed`` also seeds the workers.
        rank, world_size: distributed split; None: from ``torch.distributed`` when initialised, else 0 and 1.

    ``set_epoch(e)`` selects the next iteration's shuffling; each iteration then moves to the next epoch.
    """

    def __init__(self, files: Sequence[str | os.PathLike], delta_t: int, preprocess_function_name: str,
                 array_dim: Sequence[int], mode: str = "delta_t", n_events: int = 0,
                 load_labels: LoadLabels | None = None, batch_size: int = 4, num_workers: int = 0,
                 preprocess_kwargs: dict | None = None, downsample: int = 0, max_duration: int | None = None,
                 padding: bool = True, shuffle: bool = False, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None):
        if isinstance(files, (str, os.PathLike)):
            raise TypeError(f"files must be a list of paths, got the single path {files!r}")
        files = [str(f) for f in files]
        if not files:
            raise ValueError("StreamingDataLoader: the list of files is empty")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        array_dim = [int(v) for v in array_dim]
        if len(array_dim) != 4 or min(array_dim) <= 0:
            raise ValueError(f"array_dim must be [num_tbins, channels, height, width] of positive ints, got "
                             f"{array_dim}")
        if int(delta_t) <= 0 or int(batch_size) <= 0 or (mode == "n_events" and int(n_events) <= 0):
            raise ValueError(f"delta_t, batch_size (and n_events in n_events mode) must be positive, got "
                             f"{delta_t}, {batch_size}, {n_events}")
        if num_workers < 0 or downsample < 0 or (max_duration is not None and max_duration <= 0):
            raise ValueError(f"num_workers and downsample must be >= 0 and max_duration positive or None, got "
                             f"{num_workers}, {downsample}, {max_duration}")
        auto_rank, auto_world = _distributed_rank()
        rank = auto_rank if rank is None else int(rank)
        world_size = auto_world if world_size is None else int(world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        preprocess_kwargs = dict(preprocess_kwargs or {})
        from evframe.data.sequential import _check_preprocess

        _check_preprocess(preprocess_function_name, array_dim[1], preprocess_kwargs)
        self.files = files
        self.delta_t = int(delta_t)
        self.preprocess_function_name = preprocess_function_name
        self.array_dim = array_dim
        self.num_workers = int(num_workers)
        num_tbins, _, height, width = array_dim
        self.recordings = [describe_recording(f, mode, self.delta_t, int(n_events), num_tbins, height, width,
                                              downsample, max_duration) for f in files]
        self._progress: dict[str, Any] = {}
        self._resume_at = 0
        self.dataset = StreamingDataset(self.recordings, preprocess_function_name, array_dim, mode, int(n_events),
                                        load_labels or load_labels_stub, batch_size, preprocess_kwargs, padding,
                                        shuffle, seed, downsample, rank, world_size)

    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = int(epoch)

    def set_max_consecutive_batch(self, max_consecutive_batch: int | None) -> None:
        """Accepted for interface compatibility with SequentialDataLoader: streams are never cut (no seeking)."""

    def get_vis_func(self) -> Callable[[np.ndarray], np.ndarray]:
        from evframe.data.visualize import get_vis_func

        return get_vis_func(self.preprocess_function_name)

    def show(self, viz_labels: Callable | None = None) -> Iterator[np.ndarray]:
        """Yields an RGB image of the B inputs for every bin of every batch (see SequentialDataLoader.show)."""
        from evframe.data.visualize import show_batches

        return show_batches(self, self.get_vis_func(), viz_labels)

    def __len__(self) -> int:
        return self.dataset.plan().num_batches

    # -------------------------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        """Where the current (or last) pass stands; Lightning stores it in checkpoints, which makes the loader
        resumable mid-epoch: ``epoch``, ``num_batches`` of that pass and ``batches_consumed``. Empty before the
        first pass."""
        return dict(self._progress)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes a pass that was cut short (``0 < batches_consumed < num_batches``): the next iteration plays that
        epoch again and hands out its batches from ``batches_consumed`` on (a stream cannot seek, so the batches
        before are decoded and dropped); the first batch handed out has ``mask_keep_memory`` 0 everywhere, as the
        recurrent state was not saved. A finished pass changes nothing."""
        if not state or not 0 < int(state["batches_consumed"]) < int(state["num_batches"]):
            return
        self.dataset.epoch = int(state["epoch"])
        self._resume_at = int(state["batches_consumed"])

    def __iter__(self) -> Iterator[dict]:
        dataset = copy.copy(self.dataset)  # pinned to this epoch
        skip, self._resume_at = self._resume_at, 0
        self.dataset.epoch += 1
        progress = {"epoch": dataset.epoch, "num_batches": dataset.plan().num_batches, "batches_consumed": skip}
        self._progress = progress
        num_workers = min(self.num_workers, dataset.batch_size)
        if num_workers == 0:
            parts: Any = iter(dataset)
        else:
            parts = iter(DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_identity))
        group: list[dict] = []
        played = 0
        for part in parts:  # torch hands out the workers' items round-robin: W consecutive items make a batch
            group.append(part)
            if len(group) == max(num_workers, 1):
                batch, group = concatenate_partial_batches(group), []
                played += 1
                if played <= skip:  # already trained on before the interruption
                    continue
                if skip and played == skip + 1:
                    batch["mask_keep_memory"] = torch.zeros_like(batch["mask_keep_memory"])
                # counted as handed out (Lightning does not fetch ahead from a loader with a length)
                progress["batches_consumed"] += 1
                yield batch
        if group:
            raise RuntimeError(f"StreamingDataLoader: {len(group)} workers' slices left without the others")


def streaming_loader_from_config(files: Sequence[str | os.PathLike], preprocess: Mapping[str, Any],
                                 dataset: Mapping[str, Any], load_labels: LoadLabels, train: bool,
                                 trainer: Any = None, batch_size: int | None = None, shuffle: bool | None = None,
                                 num_workers: int | None = None) -> StreamingDataLoader:
    """A :class:`StreamingDataLoader` over ``files`` from a task's ``preprocess`` and ``dataset`` config nodes
    (``conf/dataset/raw_stream.yaml``); ``train`` shuffles (when ``dataset.shuffle``). The rank and world size are
    the Lightning ``trainer``'s (None: read from ``torch.distributed``). ``batch_size``/``shuffle``/``num_workers``
    override the config."""
    p, ds = preprocess, dataset
    rank = trainer.global_rank if trainer is not None else None
    world_size = trainer.world_size if trainer is not None else None
    return StreamingDataLoader(
        files, delta_t=int(p["delta_t"]), preprocess_function_name=str(p["name"]),
        array_dim=[int(p["num_tbins"]), int(p["channels"]), int(ds["height"]), int(ds["width"])],
        mode=str(ds.get("mode", "delta_t")), n_events=int(ds.get("n_events") or 0), load_labels=load_labels,
        batch_size=int(batch_size or ds["batch_size"]),
        num_workers=int(ds.get("num_workers", 0) if num_workers is None else num_workers),
        preprocess_kwargs=dict(p.get("kwargs") or {}), downsample=int(p.get("downsample", 0)),
        max_duration=ds.get("max_duration"), padding=True,
        shuffle=(train and bool(ds.get("shuffle", True))) if shuffle is None else shuffle,
        seed=int(ds.get("seed", 0)), rank=rank, world_size=world_size)
