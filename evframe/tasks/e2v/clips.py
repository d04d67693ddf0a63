"""Clip sources for event-to-video training: grayscale clips made on the fly, deterministic by seed.

A clip is ``num_frames = num_bins * frames_per_bin + 1`` frames at uniform times ``j * delta_t / frames_per_bin``
(:class:`ClipTiming`); frame ``(k + 1) * frames_per_bin`` is the target of time bin ``k``. Clips come from

* still images moved by random smooth planar homographies (:mod:`evframe.tasks.e2v.homography`) with random
  brightness changes: images of a user folder when given, otherwise procedural textures
  (:func:`evframe.data.synthetic.textures.background_texture`, periodic, so the camera can roam freely). These
  clips also carry the exact backward flow between consecutive targets (for the temporal-consistency loss);
* video files or frame folders (:mod:`evframe.tasks.e2v.media`), resampled onto the clip's time grid by linear
  interpolation between neighbouring frames, resized to cover the clip size and cropped at random.

:class:`ClipDataset` is a map-style torch dataset: item ``i`` of epoch ``e`` is a function of ``(seed, e, i)`` only,
whatever the worker or order it is computed in. A source that cannot give a clip (unreadable file, wrong channel
count, constant image, video shorter than the clip...) is skipped with a counted warning and another one is drawn.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from evframe.data.synthetic.motion import SmoothSignal
from evframe.data.synthetic.textures import background_texture
from evframe.tasks.e2v.homography import HomographyTrajectory, MotionConfig, homography_flow, warp_image
from evframe.tasks.e2v.media import (
    IMAGE_SUFFIXES,
    MIN_CONTRAST,
    ClipSkip,
    FrameSeries,
    check_contrast,
    cover_resize,
    list_files,
    open_series,
    read_image,
)

#: consecutive failed attempts after which a clip dataset gives up (every source is broken)
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class ClipTiming:
    """Time grid of a clip: ``num_bins`` bins of ``delta_t`` us, each rendered as ``frames_per_bin`` frames."""

    num_bins: int
    delta_t: int
    frames_per_bin: int = 4

    def __post_init__(self) -> None:
        for name in ("num_bins", "delta_t", "frames_per_bin"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ClipTiming: {name} must be >= 1, got {getattr(self, name)}")
        if self.delta_t % self.frames_per_bin:
            raise ValueError(f"ClipTiming: delta_t={self.delta_t} us must be a multiple of "
                             f"frames_per_bin={self.frames_per_bin} (frames fall on whole microseconds)")

    @property
    def num_frames(self) -> int:
        return self.num_bins * self.frames_per_bin + 1

    @property
    def duration(self) -> int:
        """Clip duration in us."""
        return self.num_bins * self.delta_t

    def timestamps(self) -> np.ndarray:
        """(num_frames,) int64 us, starting at 0."""
        return np.arange(self.num_frames, dtype=np.int64) * (self.delta_t // self.frames_per_bin)

    def target_indices(self) -> np.ndarray:
        """(num_bins,) frame index of each bin's target (the frame at the end of the bin)."""
        return np.arange(1, self.num_bins + 1, dtype=np.int64) * self.frames_per_bin


@dataclass(frozen=True)
class BrightnessConfig:
    """Random photometric changes of still-image clips.

    Attributes:
        probability: chance that a clip's global brightness varies over time.
        max_gain: peak of the log-gain oscillation (0.3: brightness x/÷ 1.35).
        contrast: the source's contrast is scaled by a factor drawn in this range, once per clip.
    """

    probability: float = 0.5
    max_gain: float = 0.3
    contrast: tuple[float, float] = (0.6, 1.3)

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ValueError(f"BrightnessConfig: probability must be in [0, 1], got {self.probability}")
        if self.max_gain < 0 or not 0 < self.contrast[0] <= self.contrast[1]:
            raise ValueError(f"BrightnessConfig: max_gain must be >= 0 and contrast a range 0 < low <= high, got "
                             f"{self.max_gain}, {self.contrast}")


# --------------------------------------------------------------------------------------------------- skip bookkeeping
@dataclass
class SkipLog:
    """Counts skipped sources by reason and warns (the first few times per reason, then every 100th)."""

    counts: Counter = field(default_factory=Counter)
    warn_first: int = 3

    def skip(self, err: ClipSkip) -> None:
        self.counts[err.reason] += 1
        n = self.counts[err.reason]
        if n <= self.warn_first or n % 100 == 0:
            warnings.warn(f"clip skipped: {err} [{n} skipped for '{err.reason}' so far]", stacklevel=3)

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))


# ----------------------------------------------------------------------------------------------------- clip makers
def _brightness(rng: np.random.Generator, config: BrightnessConfig, times_s: np.ndarray) -> np.ndarray:
    """Per-frame multiplicative gain (num_frames,)."""
    if config.max_gain <= 0 or rng.random() >= config.probability:
        return np.ones(len(times_s), np.float32)
    signal = SmoothSignal.oscillation(rng, 0.0, config.max_gain, freq_range=(0.5, 2.0))
    return np.exp(signal.value(times_s)).astype(np.float32)


def homography_clip(source: np.ndarray, periodic: bool, rng: np.random.Generator, timing: ClipTiming,
                    size: tuple[int, int], motion: MotionConfig, brightness: BrightnessConfig) -> dict[str, Any]:
    """A clip of ``source`` (Hs, Ws) float32 in [0, 1] moved by a random homography trajectory.

    Returns:
        dict with ``frames`` (N, H, W) float32 in [0, 1], ``timestamps`` (N,) int64, ``flow`` (num_bins, 2, H, W)
        float32 backward flow from the previous bin's target to this bin's target (bin 0: from frame 0),
        ``flow_mask`` (num_bins, H, W) bool where that flow points inside the earlier frame, ``has_flow`` True.
    """
    h, w = size
    times = timing.timestamps()
    times_s = times * 1e-6
    center = (rng.uniform(0.3, 0.7) * source.shape[1], rng.uniform(0.3, 0.7) * source.shape[0])
    trajectory = HomographyTrajectory.random(rng, size, center, motion, timing.duration * 1e-6)
    low, high = brightness.contrast
    contrast = rng.uniform(low, high)
    mean = float(source.mean())
    # contrast scaled around the mean, kept off pure black where the simulator's log(I + eps) is dominated by eps
    styled = np.clip(mean + (source - mean) * contrast, 0.02, 0.98).astype(np.float32)
    gains = _brightness(rng, brightness, times_s)
    border = cv2.BORDER_WRAP if periodic else cv2.BORDER_REFLECT101
    mats = [trajectory.matrix(float(t)) for t in times_s]
    frames = np.stack([warp_image(styled, m, size, border) for m in mats])
    frames = np.clip(frames * gains[:, None, None], 0.0, 1.0).astype(np.float32)
    targets = timing.target_indices()
    previous = np.concatenate([[0], targets[:-1]])
    flow = np.empty((timing.num_bins, 2, h, w), np.float32)
    flow_mask = np.empty((timing.num_bins, h, w), bool)
    for k, (i0, i1) in enumerate(zip(previous, targets, strict=True)):
        flow[k], flow_mask[k] = homography_flow(mats[i0], mats[i1], size)
    return {"frames": frames, "timestamps": times, "flow": flow, "flow_mask": flow_mask, "has_flow": True}


def series_clip(series: FrameSeries, rng: np.random.Generator, timing: ClipTiming,
                size: tuple[int, int]) -> dict[str, Any]:
    """A clip cut from a video or frame folder at a random start, resampled onto ``timing``'s grid.

    Frames between two source frames are linear blends of them; the clip is resized to cover ``size`` (aspect kept)
    and cropped at a random position (the same for all frames).

    Raises:
        ClipSkip: the series is shorter than the clip, its frames cannot be read, or nothing changes (no events).
    """
    if series.duration_us < timing.duration:
        raise ClipSkip(series.path, "shorter than the clip",
                       f"{series.duration_us} us of frames, {timing.duration} us requested")
    start = int(rng.integers(0, series.duration_us - timing.duration + 1))
    wanted = start + timing.timestamps()
    stamps = series.timestamps
    # source frames around each wanted time: i0 <= t <= i0 + 1
    i0 = np.clip(np.searchsorted(stamps, wanted, side="right") - 1, 0, len(stamps) - 2)
    first, last = int(i0.min()), int(i0.max()) + 1
    raw = series.read(first, last)
    h, w = size
    resized = np.stack([cover_resize(f, size) for f in raw])
    y0 = int(rng.integers(0, resized.shape[1] - h + 1))
    x0 = int(rng.integers(0, resized.shape[2] - w + 1))
    crop = resized[:, y0:y0 + h, x0:x0 + w]
    t0, t1 = stamps[i0].astype(np.float64), stamps[i0 + 1].astype(np.float64)
    alpha = np.clip((wanted - t0) / (t1 - t0), 0.0, 1.0).astype(np.float32)[:, None, None]
    frames = (1 - alpha) * crop[i0 - first] + alpha * crop[i0 + 1 - first]
    if float(np.abs(np.diff(frames, axis=0)).max(initial=0.0)) < MIN_CONTRAST / 4:
        raise ClipSkip(series.path, "constant clip", "no frame changes: no events would be produced")
    return {"frames": frames.astype(np.float32), "timestamps": timing.timestamps(),
            "flow": np.zeros((timing.num_bins, 2, h, w), np.float32),
            "flow_mask": np.zeros((timing.num_bins, h, w), bool), "has_flow": False}


# ------------------------------------------------------------------------------------------------------ the dataset
@dataclass(frozen=True)
class ClipSourceConfig:
    """Where clips come from.

    Attributes:
        images: folder of still images moved by homographies; None: procedural textures.
        videos: video files and/or frame folders used as clips too.
        video_probability: share of clips taken from ``videos`` (when there are any).
        fps: frame rate of frame folders without ``images.txt``.
        texture_scale: procedural textures' feature size, relative to a 240-pixel-high sensor scaled to the clip
            height (drawn per clip in this range).
        motion, brightness: see :class:`MotionConfig` and :class:`BrightnessConfig`.
    """

    images: str | None = None
    videos: tuple[str, ...] = ()
    video_probability: float = 0.5
    fps: float | None = None
    texture_scale: tuple[float, float] = (0.6, 1.6)
    motion: MotionConfig = MotionConfig()
    brightness: BrightnessConfig = BrightnessConfig()

    @staticmethod
    def from_dict(values: dict | None) -> ClipSourceConfig:
        values = dict(values or {})
        motion = MotionConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in dict(values.pop("motion", None) or {}).items()})
        bright = BrightnessConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in dict(values.pop("brightness", None) or {}).items()})
        videos = tuple(str(v) for v in (values.pop("videos", None) or ()))
        scale = tuple(values.pop("texture_scale", (0.6, 1.6)))
        unknown = set(values) - {"images", "video_probability", "fps"}
        if unknown:
            raise ValueError(f"clip source: unknown option(s) {sorted(unknown)}; expected images, videos, "
                             "video_probability, fps, texture_scale, motion, brightness")
        return ClipSourceConfig(videos=videos, texture_scale=scale, motion=motion, brightness=bright, **values)


class ClipDataset(Dataset):
    """``num_clips`` clips of ``height x width`` on ``timing``'s grid, item ``i`` a function of ``(seed, epoch, i)``.

    Items are dicts of numpy arrays (see :func:`homography_clip`) plus ``index``; the default collate stacks B of
    them into tensors ``frames (B, N, H, W)``, ``timestamps (B, N)``, ``flow (B, num_bins, 2, H, W)``...

    Args:
        height, width: clip size in pixels.
        timing: the clip's time grid.
        num_clips: items per epoch.
        source: where clips come from (:class:`ClipSourceConfig` or its dict).
        seed: base seed (train, val and test use different seeds).
        vary_with_epoch: draw new clips every epoch (training) or the same ones (evaluation).
    """

    def __init__(self, height: int, width: int, timing: ClipTiming, num_clips: int,
                 source: ClipSourceConfig | dict | None = None, seed: int = 0, vary_with_epoch: bool = True) -> None:
        if int(height) < 8 or int(width) < 8:
            raise ValueError(f"ClipDataset: clips must be at least 8x8 pixels, got {height}x{width}")
        if int(num_clips) < 1:
            raise ValueError(f"ClipDataset: num_clips must be >= 1, got {num_clips}")
        self.size = (int(height), int(width))
        self.timing = timing
        self.num_clips = int(num_clips)
        self.source = source if isinstance(source, ClipSourceConfig) else ClipSourceConfig.from_dict(source)
        self.seed = int(seed)
        self.vary_with_epoch = bool(vary_with_epoch)
        self.epoch = 0
        self.skips = SkipLog()
        self.images = list_files(self.source.images, IMAGE_SUFFIXES, "clip source image") if self.source.images \
            else []
        self.videos = [Path(v).expanduser() for v in self.source.videos]
        for v in self.videos:
            if not v.exists():
                raise FileNotFoundError(f"clip source '{v}' does not exist (expected a video file or a frame folder)")
        self._series: dict[Path, FrameSeries] = {}

    def __len__(self) -> int:
        return self.num_clips

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.vary_with_epoch else 0
        return np.random.default_rng([self.seed, epoch, int(index)])

    def _series_of(self, path: Path) -> FrameSeries:
        if path not in self._series:
            self._series[path] = open_series(path, self.source.fps)
        return self._series[path]

    def _make(self, rng: np.random.Generator) -> dict[str, Any]:
        src = self.source
        if self.videos and rng.random() < src.video_probability:
            path = self.videos[int(rng.integers(len(self.videos)))]
            try:
                series = self._series_of(path)
            except (FileNotFoundError, ValueError) as err:
                raise ClipSkip(path, "unreadable", str(err)) from None
            return series_clip(series, rng, self.timing, self.size)
        if self.images:
            path = self.images[int(rng.integers(len(self.images)))]
            image = check_contrast(read_image(path), path)
            # large enough to cover the frame under zoom-out and rotation, reflected beyond its borders anyway
            side = int(1.5 * max(self.size) / min(self.source.motion.zoom_range[0], 1.0))
            image = cover_resize(image, (side, side))
            return homography_clip(image, False, rng, self.timing, self.size, src.motion, src.brightness)
        h, w = self.size
        scale = (h / 240.0) * rng.uniform(*src.texture_scale)
        texture = background_texture(rng, int(1.5 * max(h, w)), scale)
        return homography_clip(texture, True, rng, self.timing, self.size, src.motion, src.brightness)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= int(index) < self.num_clips:
            raise IndexError(f"ClipDataset: index {index} out of range for {self.num_clips} clips")
        rng = self._rng(int(index))
        for _ in range(MAX_ATTEMPTS):
            try:
                clip = self._make(rng)
            except ClipSkip as err:
                self.skips.skip(err)
                continue
            clip["index"] = int(index)
            return clip
        raise RuntimeError(f"ClipDataset: {MAX_ATTEMPTS} clip sources in a row could not be used (skipped so far: "
                           f"{dict(self.skips.counts)}); check the clip source config (images={self.source.images}, "
                           f"videos={list(self.source.videos)})")


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stacks clips into a batch: ``frames (B, N, H, W)``, ``timestamps (B, N)``, ``flow (B, K, 2, H, W)``,
    ``flow_mask (B, K, H, W)``, ``has_flow (B,)``, ``index (B,)``."""
    return {
        "frames": torch.from_numpy(np.stack([c["frames"] for c in items])),
        "timestamps": torch.from_numpy(np.stack([c["timestamps"] for c in items])),
        "flow": torch.from_numpy(np.stack([c["flow"] for c in items])),
        "flow_mask": torch.from_numpy(np.stack([c["flow_mask"] for c in items])),
        "has_flow": torch.tensor([bool(c["has_flow"]) for c in items]),
        "index": torch.tensor([int(c["index"]) for c in items]),
    }
