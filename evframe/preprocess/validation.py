"""Argument checks shared by :func:`evframe.preprocess.compute` and the built-in functions (clear messages)."""

from __future__ import annotations

import numbers
import os
from typing import Any, NamedTuple

import numpy as np

from evframe.io.dtypes import EVENT_DTYPE

_FIELDS = ("x", "y", "p", "t")


#: int64 range of the timestamps (EVENT_DTYPE's ``t``): the time window must lie inside it
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: largest sensor side: event coordinates are uint16, so columns/rows beyond 65536 could never hold an event
MAX_SENSOR_SIDE = 2**16


class Geometry(NamedTuple):
    """Validated tensor geometry: output is (num_tbins, C, out_height, out_width); bins cover
    ``[start_ts + i * delta_t, start_ts + (i + 1) * delta_t)``. ``start_ts`` and ``end_ts`` fit in int64."""

    num_tbins: int
    height: int
    width: int
    delta_t: int
    start_ts: int
    downsample: int
    out_height: int
    out_width: int

    @property
    def end_ts(self) -> int:
        """End (exclusive) of the time window."""
        return self.start_ts + self.num_tbins * self.delta_t


def as_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int; Python and numpy integers are accepted, bools and floats (even 2.0) are not.

    Raises:
        ValueError: not an integer, or outside ``[minimum, maximum]`` (the message names ``name`` and the range).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {result}")
    return result


def as_positive_float(name: str, value: Any) -> float:
    """``value`` (an int or a float, not a bool) as a finite float > 0 (ValueError otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def as_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; accepts bools, 0/1 and numpy bools (ValueError otherwise, e.g. for the string 'false')."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be a bool, got {value!r}")


def check_geometry(num_tbins: Any, height: Any, width: Any, delta_t: Any, start_ts: Any = 0,
                   downsample: Any = 0) -> Geometry:
    """Validates the tensor geometry arguments (ValueError naming the argument and the expected range).

    ``height`` and ``width`` are at most 65536 (coordinates are uint16); the window ``[start_ts, start_ts +
    num_tbins * delta_t)`` must lie inside the int64 range of the timestamps, so that no time arithmetic of the
    kernels can overflow.
    """
    num_tbins = as_int("num_tbins", num_tbins, 1)
    height = as_int("height", height, 1, MAX_SENSOR_SIDE)
    width = as_int("width", width, 1, MAX_SENSOR_SIDE)
    delta_t = as_int("delta_t", delta_t, 1)
    start_ts = as_int("start_ts", start_ts, INT64_MIN, INT64_MAX)
    downsample = as_int("downsample", downsample, 0)
    duration = num_tbins * delta_t
    if duration > INT64_MAX or start_ts + duration > INT64_MAX:  # kernels compute end and t - start in int64
        raise ValueError(f"the time window [start_ts, start_ts + num_tbins * delta_t) = [{start_ts}, "
                         f"{start_ts + duration}) must end at or before 2**63 - 1 and last at most 2**63 - 1 us (int64 "
                         f"timestamps): got start_ts={start_ts}, num_tbins={num_tbins}, delta_t={delta_t}")
    out_h, out_w = height >> downsample, width >> downsample
    if out_h < 1 or out_w < 1:
        raise ValueError(f"downsample={downsample} leaves no pixel of a {height}x{width} (height x width) sensor: "
                         f"{height} >> {downsample} = {out_h}, {width} >> {downsample} = {out_w}")
    return Geometry(num_tbins, height, width, delta_t, start_ts, downsample, out_h, out_w)


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_tensor_size(geometry: Geometry, channels: int, itemsize: int = 4) -> None:
    """Raises ValueError when a ``(num_tbins, channels, out_height, out_width)`` tensor of ``itemsize``-byte values
    would not fit in this machine's memory (instead of a MemoryError, or an allocation swapping the machine)."""
    g = geometry
    size = g.num_tbins * channels * g.out_height * g.out_width * itemsize
    limit = memory_bytes()
    if limit is not None and size > limit:
        raise ValueError(f"the output tensor (num_tbins, C, height >> downsample, width >> downsample) = "
                         f"({g.num_tbins}, {channels}, {g.out_height}, {g.out_width}) needs {size / 2**30:.3g} GiB, "
                         f"more than the {limit / 2**30:.3g} GiB of memory of this machine: reduce num_tbins, "
                         "height, width or the channels, or raise downsample")


def as_event_array(events: Any) -> np.ndarray:
    """Returns ``events`` as a 1-D array whose x, y, p, t fields have EVENT_DTYPE's types.

    Arrays already in EVENT_DTYPE's field types are returned as they are (no copy); other structured arrays with
    integer fields x, y, p, t (e.g. int32 coordinates, big-endian files) are converted after a range check.

    Raises:
        ValueError: not a 1-D structured array with integer fields x, y, p, t, or values that do not fit.
    """
    expected = "a 1-D numpy structured array with integer fields x, y, p, t (evframe.io.EVENT_DTYPE)"
    if not isinstance(events, np.ndarray):
        raise ValueError(f"events must be {expected}, got {type(events).__name__}")
    names = events.dtype.names
    if names is None:
        raise ValueError(f"events must be {expected}, got a plain {events.dtype} array of shape {events.shape}")
    missing = [f for f in _FIELDS if f not in names]
    if missing:
        raise ValueError(f"events lack the field(s) {', '.join(missing)}: expected {expected}, got fields {names}")
    if events.ndim != 1:
        raise ValueError(f"events must be 1-D, got shape {events.shape}")
    for f in _FIELDS:
        if events.dtype.fields[f][0].kind not in "iu":
            raise ValueError(f"events field '{f}' must be integer, got {events.dtype.fields[f][0]}")
    if all(events.dtype.fields[f][0] == EVENT_DTYPE.fields[f][0] for f in _FIELDS):
        return events
    converted = np.empty(len(events), dtype=EVENT_DTYPE)
    for f in _FIELDS:
        target = EVENT_DTYPE.fields[f][0]
        column = events[f]
        if len(column):
            info = np.iinfo(target)
            low, high = int(column.min()), int(column.max())
            if low < info.min or high > info.max:
                raise ValueError(f"events field '{f}' has values in [{low}, {high}], outside {target} "
                                 f"[{info.min}, {info.max}]")
        converted[f] = column
    return converted


def raise_bad_event(events: np.ndarray, index: int, height: int, width: int) -> None:
    """Raises the ValueError describing why ``events[index]`` is invalid (outside the sensor or bad polarity)."""
    ev = events[index]
    x, y, p, t = int(ev["x"]), int(ev["y"]), int(ev["p"]), int(ev["t"])
    where = f"events[{index}] (x={x}, y={y}, p={p}, t={t})"
    if x >= width:
        raise ValueError(f"{where}: field x={x} is outside the sensor width {width} (expected 0 <= x < {width})")
    if y >= height:
        raise ValueError(f"{where}: field y={y} is outside the sensor height {height} (expected 0 <= y < {height})")
    if p not in (0, 1):
        raise ValueError(f"{where}: field p={p} must be 0 (OFF) or 1 (ON)")
    raise ValueError(f"{where}: invalid event")  # kernels only report events failing one of the checks above


def check_events_numpy(events: np.ndarray, geometry: Geometry) -> None:
    """Numpy version of the built-ins' in-kernel check, for user functions: every event inside the time window
    must have x < width, y < height and p in {0, 1} (ValueError otherwise)."""
    if len(events) == 0:
        return
    t = events["t"]
    window = events[(t >= geometry.start_ts) & (t < geometry.end_ts)]
    bad = (window["x"] >= geometry.width) | (window["y"] >= geometry.height) | (window["p"] < 0) | (window["p"] > 1)
    if bad.any():
        in_window = np.flatnonzero((t >= geometry.start_ts) & (t < geometry.end_ts))
        raise_bad_event(events, int(in_window[np.argmax(bad)]), geometry.height, geometry.width)
