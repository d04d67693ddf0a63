"""Bounding-box labels (``*_bbox.npy``) and class names (``label_map_dictionary.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io.dtypes import BBOX_DTYPE
from evframe.io.errors import EventFileError

_UINT32_MAX = 2 ** 32 - 1  # class_id and track_id are uint32 in BBOX_DTYPE
_INT64_MAX = 2 ** 63 - 1  # t is int64 in BBOX_DTYPE


@dataclass(frozen=True)
class _FieldRule:
    """What one BBOX_DTYPE field accepts in a file."""

    aliases: tuple[str, ...]  # names the field may have in a file (Gen1 files say ts / confidence)
    integer: bool  # integer dtypes only (otherwise any real number dtype)
    low: float  # smallest value accepted
    high: float  # largest value accepted
    expected: str  # what the error message says is expected
    optional: bool = False  # absent -> 0


_RULES = {
    "t": _FieldRule(("t", "ts"), True, 0, _INT64_MAX, "an integer time in us, 0 <= t < 2**63"),
    "x": _FieldRule(("x",), False, -np.inf, np.inf, "a finite float32 coordinate in pixels"),
    "y": _FieldRule(("y",), False, -np.inf, np.inf, "a finite float32 coordinate in pixels"),
    "w": _FieldRule(("w",), False, 0, np.inf, "a finite float32 width >= 0 in pixels"),
    "h": _FieldRule(("h",), False, 0, np.inf, "a finite float32 height >= 0 in pixels"),
    "class_id": _FieldRule(("class_id",), True, 0, _UINT32_MAX, "an integer class id, 0 <= id < 2**32"),
    "track_id": _FieldRule(("track_id",), True, 0, _UINT32_MAX, "an integer track id, 0 <= id < 2**32",
                           optional=True),
    "class_confidence": _FieldRule(("class_confidence", "confidence"), False, 0, 1,
                                   "a finite confidence between 0 and 1"),
}
_LAYOUT = ", ".join("|".join(r.aliases) + (" (optional)" if r.optional else "") for r in _RULES.values())


def _first_bad(source: str | os.PathLike, name: str, column: np.ndarray, bad: np.ndarray, expected: str) -> None:
    """Raises for the first True of ``bad`` (bool (N,)), quoting the value of ``column`` (the file's own field)."""
    if bad.any():
        i = int(np.argmax(bad))
        raise EventFileError(source, f"box field {name!r} of box {i} is {column[i].item()!r}, expected {expected}")


def to_bbox_dtype(boxes: np.ndarray, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Checks a structured box array (Metavision or Gen1 / 1Mpx layout) and converts it to :data:`BBOX_DTYPE`.

    Accepted layouts: Metavision's BBOX_DTYPE (t, x, y, w, h, class_id, track_id, class_confidence); the Gen1
    layout (ts, ..., confidence, track_id optional, 0 when absent); the 1Mpx layout (t as uint64, class_id as uint8).
    Fields may be in any order, of any byte order and width; extra fields are ignored.

    Every field of every box is checked (the file's value and its index are quoted when one is refused):

    - t | ts: integers, 0 <= t < 2**63 us, sorted (equal times allowed: several boxes per frame);
    - x, y: real numbers, finite once stored as float32 (negative or beyond the sensor allowed: boxes may stick out);
    - w, h: real numbers, finite, >= 0. A zero-size box is kept here (the file says so); the detection loader drops
      it and counts it in its ``DetectionLabelWarning``;
    - class_id, track_id: integers, 0 <= id < 2**32 (never wrapped to uint32);
    - class_confidence | confidence: real numbers in [0, 1].

    Args:
        boxes: (N,) structured array.
        source: file name used in error messages.
    Returns:
        a new (N,) BBOX_DTYPE array.
    Raises:
        EventFileError: not a 1-D structured array, a missing or ambiguous field (both aliases), a field of another
            kind (strings, booleans, objects, sub-arrays, floats where integers are expected), a value out of its
            range, unsorted times.
    """
    names = boxes.dtype.names
    if names is None or boxes.ndim != 1:
        raise EventFileError(source, f"boxes should be a 1-D structured array with fields {_LAYOUT}; got dtype "
                                     f"{boxes.dtype} shape {boxes.shape}")
    out = np.zeros(len(boxes), dtype=BBOX_DTYPE)
    for field, rule in _RULES.items():
        present = [a for a in rule.aliases if a in names]
        if len(present) > 1:
            raise EventFileError(source, f"box fields {present} are the same field {field!r}; expected only one")
        if not present:
            if rule.optional:
                continue
            raise EventFileError(source, f"box field {'|'.join(rule.aliases)!r} is missing: unknown box layout, "
                                         f"fields {list(names)} (dtype {boxes.dtype}); expected {_LAYOUT}")
        name = present[0]
        field_dtype = boxes.dtype[name]
        kinds = "iu" if rule.integer else "iuf"
        if field_dtype.shape != () or field_dtype.kind not in kinds:
            raise EventFileError(source, f"box field {name!r} has dtype {field_dtype}, expected "
                                         f"{'integers' if rule.integer else 'real numbers'} ({rule.expected})")
        column = boxes[name]
        if rule.integer:
            # Range checks before the cast, which would wrap (2**32 + 1 -> 1); only bounds the dtype can pass.
            info = np.iinfo(field_dtype)
            if info.min < rule.low:
                _first_bad(source, name, column, column < int(rule.low), rule.expected)
            if info.max > rule.high:
                _first_bad(source, name, column, column > int(rule.high), rule.expected)
            out[field] = column
        else:
            with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, refused just below
                out[field] = column
            value = out[field]
            _first_bad(source, name, column, ~(np.isfinite(value) & (value >= rule.low) & (value <= rule.high)),
                       rule.expected)
    t = out["t"]
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        i = int(np.argmax(t[1:] < t[:-1])) + 1
        name = "ts" if "ts" in names else "t"
        raise EventFileError(source, f"box timestamps not sorted: box field {name!r} of box {i} is {t[i]}, after "
                                     f"{t[i - 1]} at box {i - 1}; expected times in increasing order")
    return out


def load_boxes(path: str | os.PathLike) -> np.ndarray:
    """Reads a ``*_bbox.npy`` file (Metavision BBOX_DTYPE, or the Gen1 / 1Mpx layouts, converted).

    Every field of every box is checked as :func:`to_bbox_dtype` describes: NaN or infinite coordinates, negative
    sizes or times, out-of-range ids, string / object / boolean fields, missing fields, plain (non-structured)
    arrays and 0-d arrays are refused, never silently converted. Zero-size boxes are returned as they are.

    Returns:
        (N,) BBOX_DTYPE array sorted by t (us).
    Raises:
        FileNotFoundError: no file at ``path``.
        EventFileError: anything else that is not a valid box file (unreadable, not ``.npy``, truncated, pickled,
            a ``.npz`` archive, or a refused field); the message names the file, the field and what was expected.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as err:
        # A damaged file fails in many ways inside numpy (ValueError, EOFError, TokenError or SyntaxError from the
        # header, OSError, MemoryError for an absurd shape): to the user they all mean "not a box file".
        raise EventFileError(path, f"not a readable .npy box file ({type(err).__name__}: {err})") from None
    if not isinstance(loaded, np.ndarray):  # an .npz archive opens as a lazy mapping of arrays
        getattr(loaded, "close", lambda: None)()
        raise EventFileError(path, f"not a .npy box file: numpy opened it as {type(loaded).__name__} (an .npz "
                                   f"archive?); expected one structured array with fields {_LAYOUT}")
    return to_bbox_dtype(loaded, path)


def save_boxes(path: str | os.PathLike, boxes: np.ndarray) -> None:
    """Writes boxes (any layout :func:`to_bbox_dtype` accepts, checked the same way, so that :func:`load_boxes`
    reads the file back) as a BBOX_DTYPE ``.npy`` file, atomically."""
    boxes = to_bbox_dtype(np.asarray(boxes), path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, boxes, allow_pickle=False)


class _JsonObject(list):
    """The (key, value) pairs of one JSON object, in file order, duplicates kept (a dict would keep the last)."""


def _label_map_problem(mapping_items: list[tuple[object, object]]) -> tuple[object, str] | None:
    """The first entry that a label map may not hold, as (key, what is wrong), or None."""
    ids: dict[int, object] = {}
    names: dict[str, object] = {}
    for key, name in mapping_items:
        if isinstance(key, str):
            text = key.strip()
            if not (text.isascii() and text.isdigit()):
                return key, "expected a non-negative integer id written in decimal digits"
            class_id = int(text)
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
            class_id = int(key)
        else:
            return key, "expected a non-negative integer id"
        if class_id > _UINT32_MAX:
            return key, f"id {class_id} is too large, expected an id < 2**32 (box class ids are uint32)"
        if not (isinstance(name, str) and name.strip()):
            return key, f"maps to {name!r}, expected a non-empty class name (a string)"
        if class_id in ids:
            return key, f"id {class_id} is already given by key {ids[class_id]!r}, expected each id once"
        if name in names:
            return key, f"name {name!r} is already given to key {names[name]!r}, expected each class name once"
        ids[class_id] = key
        names[name] = key
    return None


def load_label_map(path: str | os.PathLike) -> dict[int, str]:
    """Reads ``label_map_dictionary.json`` (``{"0": "car", "1": "pedestrian", ...}``) as {class_id: name}.

    Keys are decimal ids (surrounding blanks allowed, so ``" 0"`` is id 0), 0 <= id < 2**32; values non-empty
    strings. Two keys giving the same id (``"0"`` and ``" 0"``, or a key repeated in the file) or two ids with the
    same name are refused: which one is meant cannot be known.

    Raises:
        FileNotFoundError: no file at ``path``.
        EventFileError: unreadable, not UTF-8 JSON, not an object, or an entry as above (the message names the file
            and the key).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as err:
        raise EventFileError(path, f"not a readable label map ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise EventFileError(path, f"label map is not UTF-8 text ({err})") from None
    try:
        raw = json.loads(text, object_pairs_hook=_JsonObject)
    except (json.JSONDecodeError, RecursionError) as err:
        raise EventFileError(path, f"not valid JSON ({err})") from None
    if not isinstance(raw, _JsonObject):
        raise EventFileError(path, f"label map should be a JSON object {{\"0\": \"name\", ...}}, got "
                                   f"{type(raw).__name__}")
    problem = _label_map_problem(raw)
    if problem is not None:
        key, message = problem
        raise EventFileError(path, f"label map key {key!r}: {message}")
    return {int(key.strip()): name for key, name in raw}


def save_label_map(path: str | os.PathLike, mapping: Mapping[int, str]) -> None:
    """Writes {class_id: name} as ``label_map_dictionary.json`` (string keys, sorted by id), atomically.

    Raises:
        ValueError: a key that is not an int in [0, 2**32), a name that is not a non-empty string, or a name given
            twice (what :func:`load_label_map` would refuse).
    """
    if not isinstance(mapping, Mapping):
        raise ValueError(f"save_label_map({path}): expected a mapping {{class_id: name}}, got "
                         f"{type(mapping).__name__}")
    for key in mapping:
        if not (isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0):
            raise ValueError(f"save_label_map({path}): key {key!r} should be a non-negative int")
    problem = _label_map_problem(list(mapping.items()))
    if problem is not None:
        key, message = problem
        raise ValueError(f"save_label_map({path}): key {key!r}: {message}")
    text = json.dumps({str(int(k)): mapping[k] for k in sorted(mapping)}, indent=2)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
