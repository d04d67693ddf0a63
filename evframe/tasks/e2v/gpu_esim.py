"""GPUEBSIM: events simulated on the training device from batches of clips, streamed as recurrent batches.

Each batch of B clips (from a DataLoader over a :class:`~evframe.tasks.e2v.clips.ClipDataset`) is moved to the
device once and played as ``batches_per_clip`` consecutive batches of ``batch_times`` time bins: the frames of
those bins go through one batched :class:`~evframe.sim.EventSimulator` (state kept between the batches of a clip),
the events become event volumes with :func:`~evframe.tasks.e2v.volumes.build_event_volume` on the same device,
and the frames at the end of every bin are gathered as targets by :func:`collect_target_images`.

Batch format (dict), as the recurrent task modules expect it:
    ``inputs``: float32 (T, B, C, H, W), C = ``event_volume_depth`` (signed event volume; twice that with
    ``split_polarity``)
    ``images``: float32 (T, B, 1, H, W) target frames in [0, 1]; ``image_valid`` bool (T, B)
    ``timestamps``: int64 (T, B) time of each target (us from the clip start)
    ``flow``: float32 (T, B, 2, H, W) backward flow from the previous bin's target to this one, ``flow_mask`` bool
    (T, B, H, W) where it is defined, ``flow_valid`` bool (T, B) clips that have a flow (still-image clips)
    ``mask_keep_memory``: float32 (B,), 0 at the first batch of a clip, else 1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from evframe.sim import EventSimulator
from evframe.sim.simulator import MIN_THRESHOLD
from evframe.tasks.e2v.volumes import build_event_volume


def collect_target_images(gray_images: torch.Tensor, timestamps: torch.Tensor, video_len: torch.Tensor,
                          target_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gathers the target frames of B videos stored one after the other, as Metavision's function of this name.

    Args:
        gray_images: ``(H, W, sum(video_len))`` frames of the B videos concatenated along the last axis.
        timestamps: ``(B, max_len)`` time of every frame of each video.
        video_len: ``(B,)`` number of frames of each video.
        target_indices: ``(B, M)`` frame index (within its video) of each wanted target.

    Returns:
        ``images (M, B, 1, H, W)`` and their ``timestamps (M, B)``.

    Raises:
        ValueError: an index outside its video, or inconsistent shapes.
    """
    video_len = torch.as_tensor(video_len, device=gray_images.device).reshape(-1).to(torch.int64)
    target_indices = torch.as_tensor(target_indices, device=gray_images.device).to(torch.int64)
    if gray_images.ndim != 3 or int(video_len.sum()) != gray_images.shape[2]:
        raise ValueError(f"collect_target_images: gray_images must be (H, W, sum(video_len)) = (H, W, "
                         f"{int(video_len.sum())}), got {tuple(gray_images.shape)}")
    if target_indices.ndim != 2 or target_indices.shape[0] != video_len.numel() or timestamps.ndim != 2 \
            or timestamps.shape[0] != video_len.numel():
        raise ValueError(f"collect_target_images: target_indices must be (B, M) and timestamps (B, T) with "
                         f"B={video_len.numel()}, got {tuple(target_indices.shape)} and {tuple(timestamps.shape)}")
    if bool(((target_indices < 0) | (target_indices >= video_len[:, None])).any()):
        raise ValueError(f"collect_target_images: target indices {target_indices.tolist()} outside the videos "
                         f"(lengths {video_len.tolist()})")
    offsets = torch.cumsum(video_len, 0) - video_len
    flat = (offsets[:, None] + target_indices).reshape(-1)
    b, m = target_indices.shape
    images = gray_images[:, :, flat].reshape(*gray_images.shape[:2], b, m).permute(3, 2, 0, 1)
    stamps = torch.gather(torch.as_tensor(timestamps).to(target_indices.device), 1, target_indices)
    return images.unsqueeze(2).contiguous(), stamps.t().contiguous()


@dataclass(frozen=True)
class SimulatorConfig:
    """Event simulator parameters (see :class:`~evframe.sim.EventSimulator`) and their per-clip random ranges.

    Without randomisation every clip uses the fixed values. With ``randomize_noises``, each clip draws its mean ON
    threshold in ``threshold_range``, its OFF/ON ratio in ``threshold_ratio_range`` and its mismatch in
    ``threshold_sigma_range``, and its refractory period, leak and shot-noise rates in their ranges.
    """

    contrast_threshold_pos: float = 0.2
    contrast_threshold_neg: float = 0.2
    threshold_sigma: float = 0.03
    refractory_period_us: float = 0.0
    cutoff_hz: float = 0.0
    leak_rate_hz: float = 0.0
    shot_noise_rate_hz: float = 0.0
    threshold_range: tuple[float, float] = (0.12, 0.4)
    threshold_ratio_range: tuple[float, float] = (0.75, 1.33)
    threshold_sigma_range: tuple[float, float] = (0.0, 0.05)
    refractory_range_us: tuple[float, float] = (0.0, 1000.0)
    leak_range_hz: tuple[float, float] = (0.0, 0.2)
    shot_noise_range_hz: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_range") or f.name.endswith("_range_us") or f.name.endswith("_range_hz"):
                if len(value) != 2 or not 0 <= value[0] <= value[1]:
                    raise ValueError(f"simulator.{f.name} must be a range [low, high] with 0 <= low <= high, "
                                     f"got {value}")
            elif value < 0:
                raise ValueError(f"simulator.{f.name} must be >= 0, got {value}")

    @staticmethod
    def from_dict(values: dict | SimulatorConfig | None) -> SimulatorConfig:
        if isinstance(values, SimulatorConfig):
            return values
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(SimulatorConfig)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"simulator: unknown option(s) {unknown}; expected {sorted(names)}")
        return SimulatorConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})


def make_simulator(config: SimulatorConfig, batch_size: int, height: int, width: int, randomize: bool, seed: int,
                   device: torch.device) -> EventSimulator:
    """A simulator for one batch of clips; with ``randomize``, every clip of the batch gets its own sensor: mean
    thresholds, ON/OFF ratio and mismatch, refractory period, leak and shot-noise rates, each drawn from its
    ``*_range`` of ``config``."""
    if not randomize:
        return EventSimulator(height, width, batch_size, config.contrast_threshold_pos, config.contrast_threshold_neg,
                              config.threshold_sigma, config.refractory_period_us, config.cutoff_hz,
                              config.leak_rate_hz, config.shot_noise_rate_hz, seed=seed, device=device)
    rng = np.random.default_rng(seed)
    sim = EventSimulator(height, width, batch_size, config.contrast_threshold_pos, config.contrast_threshold_neg,
                         0.0, rng.uniform(*config.refractory_range_us, batch_size), config.cutoff_hz,
                         rng.uniform(*config.leak_range_hz, batch_size),
                         rng.uniform(*config.shot_noise_range_hz, batch_size), seed=seed, device=device)
    # per-clip thresholds: the simulator draws one mean for its batch, so its threshold maps are redrawn here
    mean_pos = rng.uniform(*config.threshold_range, batch_size)
    mean_neg = mean_pos * rng.uniform(*config.threshold_ratio_range, batch_size)
    sigma = rng.uniform(*config.threshold_sigma_range, batch_size)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    shape = (batch_size, height, width)
    for name, mean in (("threshold_pos", mean_pos), ("threshold_neg", mean_neg)):
        noise = torch.randn(shape, generator=gen, device=device)
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32, device=device).view(-1, 1, 1)
        setattr(sim, name, (mean_t + sigma_t * noise).clamp_(min=MIN_THRESHOLD))
    return sim


class GPUEBSIM:
    """Simulated events on the training device, as Metavision's GPUEBSIM.

    Args:
        dataloader: DataLoader over a :class:`~evframe.tasks.e2v.clips.ClipDataset` yielding batches of B clips
            (``collate_clips``, ``drop_last=True``); every clip has ``batches_per_clip * batch_times`` bins.
        simulator: :class:`SimulatorConfig` (or its dict).
        batch_times: T, time bins per batch.
        event_volume_depth: C, micro time bins of the event volume.
        randomize_noises: draw simulator parameters per clip (see :class:`SimulatorConfig`).
        device: where simulation, volumes and targets live.
        max_incr_per_pixel, split_polarity: event volume options (as ``event_cube``; the default signed volume has
            ``C = event_volume_depth``, with ``split_polarity`` it has ``2 * event_volume_depth`` channels).
        seed: seeds the simulators (with the epoch and the clip batch index).
        vary_with_epoch: new clips and simulator draws every epoch (training: each iteration advances the epoch by
            one, as the sequential loader does) or the same ones every time (evaluation).
    """

    def __init__(self, dataloader: DataLoader, simulator: SimulatorConfig | dict, batch_times: int,
                 event_volume_depth: int, randomize_noises: bool = True, device: str | torch.device = "cpu",
                 max_incr_per_pixel: float = 5.0, split_polarity: bool = False, seed: int = 0,
                 vary_with_epoch: bool = True) -> None:
        self.dataloader = dataloader
        self.dataset = dataloader.dataset
        self.timing = self.dataset.timing
        self.simulator = SimulatorConfig.from_dict(simulator)
        self.batch_times = int(batch_times)
        self.event_volume_depth = int(event_volume_depth)
        if self.batch_times < 1 or self.event_volume_depth < 1:
            raise ValueError(f"GPUEBSIM: batch_times and event_volume_depth must be >= 1, got {batch_times}, "
                             f"{event_volume_depth}")
        if self.timing.num_bins % self.batch_times:
            raise ValueError(f"GPUEBSIM: clips of {self.timing.num_bins} bins cannot be cut into batches of "
                             f"batch_times={self.batch_times} bins")
        self.batches_per_clip = self.timing.num_bins // self.batch_times
        self.randomize_noises = bool(randomize_noises)
        self.device = torch.device(device)
        self.max_incr_per_pixel = float(max_incr_per_pixel)
        self.split_polarity = bool(split_polarity)
        self.seed = int(seed)
        self.vary_with_epoch = bool(vary_with_epoch)
        self.epoch = 0
        self._progress: dict[str, int] = {}
        self._resume_at = 0

    @property
    def batch_size(self) -> int:
        return int(self.dataloader.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Selects the clips and simulator draws of the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataloader) * self.batches_per_clip

    def group_seed(self, epoch: int, group: int) -> int:
        """Seed of the simulator of clip batch ``group`` in ``epoch`` (epoch ignored without ``vary_with_epoch``)."""
        epoch = epoch if self.vary_with_epoch else 0
        return int(np.random.SeedSequence([self.seed, epoch, group]).generate_state(1)[0])

    def state_dict(self) -> dict[str, int]:
        """Where the current (or last) pass stands (``epoch``, ``num_batches``, ``batches_consumed``); Lightning
        stores it in checkpoints, which makes the loader resumable mid-epoch. Empty before the first pass."""
        return dict(self._progress)

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resumes a pass that was cut short: the next iteration plays that epoch's clips again and hands out its
        batches from ``batches_consumed`` on. Clip batches wholly played before are not simulated; inside the clip
        batch where it stopped, the simulator runs through the earlier frames (its state depends on them) and their
        batches are dropped. The first batch handed out has ``mask_keep_memory`` 0 (the recurrent state was not
        saved). A finished pass changes nothing."""
        if not state or not 0 < int(state["batches_consumed"]) < int(state["num_batches"]):
            return
        self.epoch = int(state["epoch"])
        self._resume_at = int(state["batches_consumed"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        skip, self._resume_at = self._resume_at, 0
        # the clip dataset is copied into the loader's workers when they start: its epoch is set before
        self.dataset.set_epoch(epoch)
        if self.vary_with_epoch:
            self.epoch += 1  # the next pass plays the next epoch unless set_epoch says otherwise
        progress = {"epoch": epoch, "num_batches": len(self), "batches_consumed": skip}
        self._progress = progress
        played = 0
        for group, clips in enumerate(self.dataloader):
            if played + self.batches_per_clip <= skip:  # trained on before the interruption
                played += self.batches_per_clip
                continue
            for batch in self.play(clips, self.group_seed(epoch, group)):
                played += 1
                if played <= skip:
                    continue
                if skip and played == skip + 1:
                    batch["mask_keep_memory"] = torch.zeros_like(batch["mask_keep_memory"])
                progress["batches_consumed"] += 1  # counted as handed out
                yield batch

    def play(self, clips: dict[str, torch.Tensor], seed: int) -> Iterator[dict[str, Any]]:
        """The ``batches_per_clip`` batches of one batch of clips (see the module docstring for their format)."""
        dev = self.device
        frames = clips["frames"].to(dev, non_blocking=True)
        timestamps = clips["timestamps"].to(dev)
        b, n, h, w = frames.shape
        if n != self.timing.num_frames:
            raise ValueError(f"GPUEBSIM: clips have {n} frames, the clip timing expects {self.timing.num_frames}")
        sim = make_simulator(self.simulator, b, h, w, self.randomize_noises, seed, dev)
        gray = frames.permute(2, 3, 0, 1).reshape(h, w, b * n)
        video_len = torch.full((b,), n, dtype=torch.int64, device=dev)
        targets = torch.as_tensor(self.timing.target_indices(), device=dev).expand(b, -1)
        flow = clips["flow"].to(dev, non_blocking=True)
        flow_mask = clips["flow_mask"].to(dev)
        has_flow = clips["has_flow"].to(dev)
        t, fpb = self.batch_times, self.timing.frames_per_bin
        for j in range(self.batches_per_clip):
            first, last = j * t * fpb, (j + 1) * t * fpb
            # frame 0 only initialises the simulator; later batches start after the previous batch's last frame
            events = [sim.sim(frames[:, i], timestamps[:, i]) for i in range(first if j == 0 else first + 1, last + 1)]
            events = torch.cat(events) if events else torch.zeros((0, 5), dtype=torch.int64, device=dev)
            # bins are (k dt, (k+1) dt]: simulator events at a frame time belong to the bin that frame ends
            start = timestamps[:, 0] + j * t * self.timing.delta_t + 1
            inputs = build_event_volume(events, b, t, self.event_volume_depth, h, w, start, self.timing.delta_t,
                                  self.max_incr_per_pixel, split_polarity=self.split_polarity)
            bins = slice(j * t, (j + 1) * t)
            images, stamps = collect_target_images(gray, timestamps, video_len, targets[:, bins])
            yield {
                "inputs": inputs,
                "images": images,
                "image_valid": torch.ones((t, b), dtype=torch.bool, device=dev),
                "timestamps": stamps,
                "flow": flow[:, bins].transpose(0, 1),
                "flow_mask": flow_mask[:, bins].transpose(0, 1),
                "flow_valid": has_flow[None, :].expand(t, b),
                "mask_keep_memory": torch.full((b,), 0.0 if j == 0 else 1.0, device=dev),
                "num_events": int(events.shape[0]),
            }
