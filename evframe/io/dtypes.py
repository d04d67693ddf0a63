"""Numpy dtypes shared by every reader and writer (identical to Metavision's, so arrays interoperate)."""

import numpy as np

#: CD event: x, y in pixels, polarity p in {0, 1}, timestamp t in microseconds (16 bytes).
EVENT_DTYPE = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                        "offsets": [0, 2, 4, 8], "itemsize": 16})

#: External trigger event (Metavision's EventExtTrigger): edge p in {0, 1}, time t in us, trigger channel id (24 bytes).
TRIGGER_DTYPE = np.dtype({"names": ["p", "t", "id"], "formats": ["<i2", "<i8", "<i2"], "offsets": [0, 8, 16],
                          "itemsize": 24})

#: Bounding box label: t in microseconds, (x, y) top-left corner, w, h in pixels (40 bytes).
BBOX_DTYPE = np.dtype({"names": ["t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence"],
                       "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
                       "offsets": [0, 8, 12, 16, 20, 24, 28, 32], "itemsize": 40})


def empty_events(n: int = 0) -> np.ndarray:
    """Returns a zeroed event array of length ``n`` with :data:`EVENT_DTYPE`."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def empty_boxes(n: int = 0) -> np.ndarray:
    """Returns a zeroed box array of length ``n`` with :data:`BBOX_DTYPE`."""
    return np.zeros(n, dtype=BBOX_DTYPE)


def concatenate(pieces: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Joins structured arrays into a new array of exactly ``dtype`` (padding and offsets kept).

    ``np.concatenate`` promotes padded structured dtypes to a packed one (e.g. 14 bytes instead of EVENT_DTYPE's
    16), which breaks code relying on the documented layout; copying into a pre-allocated array avoids that.
    """
    if pieces and all(p.dtype == dtype and p.flags.c_contiguous for p in pieces):
        # same layout: join the raw records (one memcpy each; structured assignment goes field by field)
        raw = (np.void, dtype.itemsize)
        return np.concatenate([p.view(raw) for p in pieces]).view(dtype)
    out = np.empty(sum(len(p) for p in pieces), dtype=dtype)
    start = 0
    for piece in pieces:
        out[start:start + len(piece)] = piece
        start += len(piece)
    return out
