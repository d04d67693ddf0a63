"""Every knob of the synthetic dataset, in one hashable dataclass, plus the named presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

#: Bumped whenever the generator's output changes for an unchanged config, so that cached datasets regenerate.
GENERATOR_VERSION = 1

#: Class names, indexed by class id (written to label_map_dictionary.json).
DEFAULT_CLASSES = ("car", "pedestrian", "two_wheeler")


@dataclass(frozen=True)
class SyntheticConfig:
    """Generation parameters. Sizes and speeds are given at ``reference_height`` and scale with ``height``.

    Times are in microseconds, speeds in pixels per second, angles in radians.
    """

    height: int = 240
    width: int = 304
    #: number of recordings per split (a recording's content depends only on the seed, its split's position and its
    #: index, so growing a split keeps the recordings it had)
    splits: tuple[tuple[str, int], ...] = (("train", 12), ("val", 3), ("test", 9))
    duration_us: int = 2_000_000
    #: period of the box and flow labels (the first label is at t = label_period_us, after events exist)
    label_period_us: int = 50_000
    #: period of the grayscale frames written for event-to-video (first frame at t = 0)
    frame_period_us: int = 10_000
    #: rendering step: at most this many pixels of motion between two simulated frames
    max_step_px: float = 0.5
    #: bounds of the rendering step (microseconds)
    min_step_us: int = 250
    max_step_us: int = 5_000
    classes: tuple[str, ...] = DEFAULT_CLASSES
    #: objects per recording (inclusive range); each crosses the frame at a random time
    objects_per_recording: tuple[int, int] = (3, 7)
    #: height at which the object sizes and speeds below are expressed
    reference_height: int = 240
    object_speed: tuple[float, float] = (40.0, 180.0)
    object_rotation_speed: float = 0.4
    object_scale_amplitude: float = 0.15
    #: relative object size multiplier range (1 = nominal class size at reference height)
    object_size: tuple[float, float] = (0.7, 1.4)
    camera_speed: tuple[float, float] = (10.0, 50.0)
    camera_zoom_amplitude: float = 0.06
    camera_rotation_amplitude: float = 0.03
    #: side of the square periodic background texture, relative to max(height, width)
    background_scale: float = 2.0
    #: boxes whose visible fraction is below this are dropped (mostly occluded)
    min_visible_fraction: float = 0.3
    #: boxes smaller than this (clipped width or height, pixels) are dropped
    min_box_size: float = 4.0
    #: event simulator parameters (see evframe.sim.EventSimulator)
    simulator: dict = field(default_factory=lambda: {
        "contrast_threshold_pos": 0.2, "contrast_threshold_neg": 0.2, "threshold_sigma": 0.03,
        "refractory_period_us": 100, "shot_noise_rate_hz": 0.1, "leak_rate_hz": 0.05, "cutoff_hz": 0,
    })

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"SyntheticConfig: height and width must be > 0, got {self.height}x{self.width}")
        if self.duration_us <= 0 or self.label_period_us <= 0 or self.frame_period_us <= 0:
            raise ValueError("SyntheticConfig: duration_us, label_period_us and frame_period_us must be > 0")
        if self.label_period_us % self.frame_period_us and self.frame_period_us % self.label_period_us:
            # rendering hits both grids exactly only if one period divides the other
            raise ValueError(f"SyntheticConfig: label_period_us ({self.label_period_us}) and frame_period_us "
                             f"({self.frame_period_us}) must divide one another")
        if not self.classes:
            raise ValueError("SyntheticConfig: classes must not be empty")

    @property
    def size_scale(self) -> float:
        """Factor applied to the reference sizes and speeds."""
        return self.height / self.reference_height

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self, seed: int) -> str:
        """Hash of everything that determines the generated files."""
        payload = json.dumps({"config": self.to_dict(), "seed": int(seed), "version": GENERATOR_VERSION},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    # objects and motion drawn as for a 120-pixel-high sensor (0.4x), so that they stay a few pixels large and
    # move by ~1-4 px per label period even at 64x48
    "tiny": SyntheticConfig(height=48, width=64, splits=(("train", 2), ("val", 1), ("test", 1)),
                            duration_us=300_000, objects_per_recording=(2, 3), reference_height=120),
}


def get_config(preset: str | SyntheticConfig) -> SyntheticConfig:
    """Returns the config of a preset name, or the config itself."""
    if isinstance(preset, SyntheticConfig):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic dataset preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]
