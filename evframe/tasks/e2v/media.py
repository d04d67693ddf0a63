"""Reading user images, videos and frame folders as grayscale float frames, with clear reasons for rejecting them.

Every reader returns float32 arrays in [0, 1] of shape (H, W) (one image) or (N, H, W) (frames). A file that cannot
serve as a clip source raises :class:`ClipSkip` naming the file and the reason, so that the clip dataset can skip
it with a counted warning instead of crashing a training run.

Frame folders hold one image per frame plus their timestamps, either in ``images.txt`` (the Event Camera Dataset
layout: one ``<seconds> <relative path>`` line per frame) or, failing that, sorted image files at a given ``fps``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: images with fewer pixels than this on a side cannot be warped into a useful frame
MIN_IMAGE_SIDE = 8
#: intensity standard deviation below which an image is "constant" (it would give no events)
MIN_CONTRAST = 2.0 / 255.0


class ClipSkip(Exception):
    """A file (or a clip made from it) that cannot be used; ``reason`` is a short key for counting."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}{' (' + detail + ')' if detail else ''}")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.detail)


def to_gray_float(image: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Converts an image as read by OpenCV (H, W) or (H, W, C) with C in {1, 3, 4} (BGR / BGRA), uint8, uint16 or
    float, to (H, W) float32 gray in [0, 1].

    Raises:
        ClipSkip: wrong channel count, unsupported dtype, or too small.
    """
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise ClipSkip(path, "wrong channel count", f"{image.shape[2]} channels, expected 1, 3 or 4")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise ClipSkip(path, "wrong shape", f"array of shape {image.shape}, expected (H, W) or (H, W, C)")
    if min(image.shape) < MIN_IMAGE_SIDE:
        raise ClipSkip(path, "too small", f"{image.shape[0]}x{image.shape[1]}, expected at least "
                                          f"{MIN_IMAGE_SIDE} pixels a side")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype.kind == "f":
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
    raise ClipSkip(path, "unsupported pixel type", f"{image.dtype}, expected uint8, uint16 or float")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as (H, W) float32 gray in [0, 1] (16-bit files keep their precision).

    Raises:
        ClipSkip: unreadable file, wrong channel count or too small.
    """
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ClipSkip(path, "unreadable", "not an image OpenCV can decode")
    return to_gray_float(image, path)


def check_contrast(image: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Returns ``image`` unless it is constant (std below :data:`MIN_CONTRAST`: it would produce no events)."""
    if float(image.std()) < MIN_CONTRAST:
        raise ClipSkip(path, "constant image", f"intensity std {float(image.std()):.4f}, no events would be "
                                               "produced")
    return image


def list_files(folder: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Sorted files of ``folder`` with one of ``suffixes`` (case-insensitive).

    Raises:
        FileNotFoundError / ValueError: the folder is missing or holds no such file (saying what was expected).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder '{folder}' does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"{what} folder '{folder}' holds no file with suffix {', '.join(suffixes)}")
    return files


def cover_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes ``image`` (H, W) with its aspect ratio kept so that it covers ``size = (height, width)``."""
    h, w = size
    scale = max(h / image.shape[0], w / image.shape[1])
    out_h, out_w = max(h, round(image.shape[0] * scale)), max(w, round(image.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (out_w, out_h), interpolation=interp)


# ----------------------------------------------------------------------------------------------------- frame series
@dataclass
class FrameSeries:
    """Frames with timestamps read lazily from a video file or a frame folder.

    Attributes:
        path: the video file or folder.
        timestamps: (N,) int64 us, strictly increasing, starting at 0.
        files: the frame images of a folder (None for a video file).
    """

    path: Path
    timestamps: np.ndarray
    files: list[Path] | None = None

    @property
    def duration_us(self) -> int:
        return int(self.timestamps[-1]) if len(self.timestamps) else 0

    def read(self, first: int, last: int) -> np.ndarray:
        """Frames ``first..last`` (inclusive) as (n, H, W) float32 gray in [0, 1].

        Raises:
            ClipSkip: a frame cannot be read, or frames change size.
        """
        if self.files is not None:
            frames = [read_image(f) for f in self.files[first:last + 1]]
        else:
            frames = _read_video_frames(self.path, first, last)
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ClipSkip(self.path, "frames of different sizes", f"sizes {sorted(shapes)}")
        return np.stack(frames)


def _read_video_frames(path: Path, first: int, last: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipSkip(path, "unreadable", "OpenCV cannot open this video")
        if first:
            cap.set(cv2.CAP_PROP_POS_FRAMES, first)
        frames = []
        for i in range(first, last + 1):
            ok, frame = cap.read()
            if not ok:
                raise ClipSkip(path, "unreadable", f"frame {i} cannot be decoded")
            frames.append(to_gray_float(frame, path))
        return frames
    finally:
        cap.release()


def open_video(path: str | os.PathLike) -> FrameSeries:
    """A video file as a :class:`FrameSeries` (timestamps from its frame rate; frames decoded on :meth:`read`).

    Raises:
        ClipSkip: the file cannot be opened, has no frame or no frame rate.
    """
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipSkip(path, "unreadable", "OpenCV cannot open this video")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if not np.isfinite(fps) or fps <= 0:
        raise ClipSkip(path, "no frame rate", f"the container reports fps={fps}")
    if count < 2:
        raise ClipSkip(path, "too few frames", f"{count} frame(s)")
    return FrameSeries(path, np.round(np.arange(count) * 1e6 / fps).astype(np.int64))


def open_frame_folder(folder: str | os.PathLike, fps: float | None = None) -> FrameSeries:
    """A folder of frames as a :class:`FrameSeries`.

    Timestamps come from ``images.txt`` (``<seconds> <relative image path>`` per line, '#' comments allowed) when
    present, else the sorted images are taken at ``fps``.

    Raises:
        FileNotFoundError, ValueError: missing folder or images, malformed ``images.txt`` (naming the line),
            timestamps not increasing, no ``images.txt`` and no ``fps``.
    """
    folder = Path(folder).expanduser()
    index = folder / "images.txt"
    if index.is_file():
        times, files = [], []
        for number, line in enumerate(index.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                times.append(float(parts[0]))
            except ValueError:
                raise ValueError(f"{index}: line {number} is {line!r}, expected '<seconds> <image path>'") from None
            files.append(folder / parts[1])
        if len(files) < 2:
            raise ValueError(f"{index}: lists {len(files)} frame(s), expected at least 2")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}")
        stamps = np.round((np.asarray(times) - times[0]) * 1e6).astype(np.int64)
        if np.any(np.diff(stamps) <= 0):
            bad = int(np.flatnonzero(np.diff(stamps) <= 0)[0]) + 1
            raise ValueError(f"{index}: timestamps must increase; frame {bad} ({files[bad].name}) is not after the "
                             "previous one")
        return FrameSeries(folder, stamps, files)
    files = list_files(folder, IMAGE_SUFFIXES, "frame")
    if fps is None or fps <= 0:
        raise ValueError(f"frame folder '{folder}' has no images.txt with timestamps; give its frame rate (fps)")
    if len(files) < 2:
        raise ValueError(f"frame folder '{folder}' holds {len(files)} image, expected at least 2")
    return FrameSeries(folder, np.round(np.arange(len(files)) * 1e6 / fps).astype(np.int64), files)


def open_series(path: str | os.PathLike, fps: float | None = None) -> FrameSeries:
    """A video file or a frame folder (see :func:`open_video`, :func:`open_frame_folder`)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return open_frame_folder(path, fps)
    if not path.is_file():
        raise FileNotFoundError(f"clip source '{path}' does not exist (expected a video file or a frame folder)")
    return open_video(path)
