"""Precomputed tensors in HDF5, in Metavision ML's layout.

File layout:
    dataset ``data`` (N, C, H, W), tensor i covering ``[i * delta_t, (i + 1) * delta_t)`` of the recording, chunked
    one tensor per chunk (``(1, C, H, W)``) and compressed (lz4 via hdf5plugin when available, else gzip).
    attrs: ``events_to_tensor`` (preprocess name; str or bytes, Metavision writes a numpy bytes value),
    ``delta_t`` (us), ``event_input_height`` / ``event_input_width`` (sensor size, before downsampling),
    ``shape`` (C, H, W), optional ``downsample``, and the preprocess options (e.g. ``max_incr_per_pixel``).

Storage type: float32, or uint8 to save space. A uint8 file stores ``round((value - uint8_offset) / uint8_scale)``
with both attrs present (exact for integer counts with scale 1); Metavision's own uint8 files carry
``store_as_uint8`` and no scale, meaning ``value = stored / 255``. Other integer stores without either attr are
read as plain counts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from evframe.io.errors import EventFileError

try:  # registers the lz4 / zstd / blosc filters with h5py; optional (gzip is built in)
    import hdf5plugin
except ImportError:  # pragma: no cover - hdf5plugin is a declared dependency
    hdf5plugin = None

DATASET = "data"
REQUIRED_ATTRS = ("delta_t", "event_input_height", "event_input_width", "events_to_tensor")
#: attrs describing the file itself, not options of the preprocessing function
STRUCTURAL_ATTRS = frozenset(REQUIRED_ATTRS) | {"shape", "downsample", "store_as_uint8", "uint8_scale",
                                                 "uint8_offset", "preprocess"}


def _plain(value: Any) -> Any:
    """HDF5 attr -> plain Python value (bytes -> str, numpy scalars/arrays -> Python scalars/lists)."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype.kind in "SO" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compression(name: str | None) -> dict[str, Any]:
    if name is None or name == "none":
        return {}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if name == "lz4":
        if hdf5plugin is None:
            raise ValueError("compression 'lz4' needs the hdf5plugin package; use 'gzip' or install it")
        return dict(hdf5plugin.LZ4())
    raise ValueError(f"compression must be 'lz4', 'gzip' or 'none', got {name!r}")


def default_compression() -> str:
    """'lz4' (fast) when hdf5plugin is installed, else 'gzip'."""
    return "gzip" if hdf5plugin is None else "lz4"


def _uint8_encoding(value_range: tuple[float, float], integer_values: bool) -> tuple[float, float]:
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    span = high - low
    # integer counts spanning at most 256 values are stored exactly (scale 1); real values use all 256 codes
    if integer_values and span <= 255 and low.is_integer():
        return 1.0, low
    return span / 255.0, low


def _check_attrs(path: Path, attrs: Mapping[str, Any], channels_hw: tuple[int, int, int]) -> dict[str, Any]:
    attrs = dict(attrs)
    if "events_to_tensor" not in attrs and "preprocess" in attrs:
        attrs["events_to_tensor"] = attrs["preprocess"]
    attrs.pop("preprocess", None)
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"{path}: tensor file attrs lack {', '.join(missing)} (required: {', '.join(REQUIRED_ATTRS)})")
    attrs.setdefault("shape", channels_hw)
    if tuple(int(v) for v in attrs["shape"]) != channels_hw:
        raise ValueError(f"{path}: attr shape={list(attrs['shape'])} does not match the tensors' (C, H, W) = "
                         f"{channels_hw}")
    return attrs


class TensorH5Writer:
    """Appends tensors to a new HDF5 tensor file, which appears at ``path`` only when :meth:`close` succeeds.

    Args:
        path: output file (replaced atomically). channels, height, width: tensor shape (C, H, W) after
            downsampling. attrs: at least ``delta_t``, ``event_input_height``, ``event_input_width`` and
            ``events_to_tensor`` (or ``preprocess``), plus the preprocess options.
        store_as_uint8: store uint8 codes instead of float32; needs ``value_range`` = (low, high) of the values.
        integer_values: the values are integers (counts): with a span of at most 255 they are stored exactly.
        compression: 'lz4', 'gzip' or 'none' (default: :func:`default_compression`).

    Use as a context manager; an exception inside it discards the temporary file.
    """

    def __init__(self, path: str | os.PathLike, channels: int, height: int, width: int, attrs: Mapping[str, Any],
                 store_as_uint8: bool = False, value_range: tuple[float, float] | None = None,
                 integer_values: bool = False, compression: str | None = None) -> None:
        self.path = Path(path)
        shape = (int(channels), int(height), int(width))
        attrs = _check_attrs(self.path, attrs, shape)
        self._scale = self._offset = None
        if store_as_uint8:
            if value_range is None:
                raise ValueError(f"{self.path}: store_as_uint8 needs value_range=(low, high)")
            self._scale, self._offset = _uint8_encoding(value_range, integer_values)
            attrs.update(store_as_uint8=True, uint8_scale=self._scale, uint8_offset=self._offset)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self._file = h5py.File(self._tmp, "w")
        try:
            self._data = self._file.create_dataset(
                DATASET, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                dtype=np.uint8 if store_as_uint8 else np.float32,
                **_compression(default_compression() if compression is None else compression))
            for key, value in attrs.items():
                try:
                    self._file.attrs[key] = value
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{self.path}: attr '{key}'={value!r} cannot be stored in HDF5: {err}") from err
        except BaseException:
            self.abort()
            raise
        self.count = 0

    def append(self, tensors: Any) -> None:
        """Appends (n, C, H, W) tensors (numpy or torch)."""
        array = tensors.detach().cpu().numpy() if hasattr(tensors, "detach") else np.asarray(tensors)
        if array.ndim != 4 or array.shape[1:] != self._data.shape[1:]:
            raise ValueError(f"{self.path}: appending tensors of shape {array.shape}, expected (n, "
                             f"{', '.join(str(v) for v in self._data.shape[1:])})")
        if self._scale is not None:
            array = np.clip(np.rint((array - self._offset) / self._scale), 0, 255).astype(np.uint8)
        n = len(array)
        self._data.resize(self.count + n, axis=0)
        self._data[self.count:self.count + n] = array
        self.count += n

    def close(self) -> None:
        """Finishes the file and moves it to ``path``."""
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discards the temporary file."""
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> TensorH5Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_tensor_h5(path: str | os.PathLike, data: Any, attrs: Mapping[str, Any], store_as_uint8: bool = False,
                    value_range: tuple[float, float] | None = None, integer_values: bool = False,
                    compression: str | None = None) -> Path:
    """Writes (N, C, H, W) tensors (numpy or torch) with ``attrs`` atomically (temp file + os.replace).

    See :class:`TensorH5Writer` for the arguments. Returns the path.
    """
    array = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
    if array.ndim != 4:
        raise ValueError(f"{path}: data must be (N, C, H, W), got shape {array.shape}")
    with TensorH5Writer(path, *array.shape[1:], attrs=attrs, store_as_uint8=store_as_uint8, value_range=value_range,
                        integer_values=integer_values, compression=compression) as writer:
        writer.append(array)
    return Path(path)


class TensorH5Reader:
    """Reads a precomputed tensor file lazily: the HDF5 handle is opened on first :meth:`read` in each process,
    so the reader can be pickled to DataLoader workers.

    Attributes:
        path, delta_t (us), height / width (sensor size, ``event_input_*``), preprocess_name, kwargs (the
        preprocess options stored as attrs), downsample, shape (N, C, H, W), attrs (all, as plain Python values).
    Raises:
        EventFileError: not an HDF5 file, missing ``data`` dataset or required attr, wrong data rank.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such tensor file")
        try:
            with h5py.File(self.path, "r") as f:
                if DATASET not in f or not isinstance(f[DATASET], h5py.Dataset):
                    raise EventFileError(self.path, f"no '{DATASET}' dataset (found: {', '.join(f.keys()) or 'none'})"
                                                    "; expected Metavision precomputed tensors")
                self.shape = tuple(int(v) for v in f[DATASET].shape)
                self._dtype = f[DATASET].dtype
                self.attrs = {k: _plain(v) for k, v in f.attrs.items()}
        except OSError as err:
            raise EventFileError(self.path, f"cannot open as HDF5: {err}") from err
        if len(self.shape) != 4:
            raise EventFileError(self.path, f"dataset '{DATASET}' has shape {self.shape}, expected (N, C, H, W)")
        if "events_to_tensor" not in self.attrs and "preprocess" in self.attrs:
            self.attrs["events_to_tensor"] = self.attrs["preprocess"]
        for key in REQUIRED_ATTRS:
            if key not in self.attrs:
                raise EventFileError(self.path, f"missing attr '{key}' (required: {', '.join(REQUIRED_ATTRS)})")
        try:
            self.delta_t = int(self.attrs["delta_t"])
            self.height = int(self.attrs["event_input_height"])
            self.width = int(self.attrs["event_input_width"])
        except (TypeError, ValueError) as err:
            raise EventFileError(self.path, f"attrs delta_t / event_input_height / event_input_width must be "
                                            f"integers: {err}") from err
        self.preprocess_name = str(self.attrs["events_to_tensor"])
        self.downsample = int(self.attrs.get("downsample", self._infer_downsample()))
        self.kwargs = {k: v for k, v in self.attrs.items() if k not in STRUCTURAL_ATTRS}
        self._decode = self._decoder()
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _infer_downsample(self) -> int:
        k = 0
        while (self.height >> k) > self.shape[2]:
            k += 1
        return k

    def _decoder(self) -> tuple[float, float] | None:
        """(scale, offset) for integer stores, None for float ones."""
        if self._dtype.kind == "f":
            return None
        if "uint8_scale" in self.attrs:
            return float(self.attrs["uint8_scale"]), float(self.attrs.get("uint8_offset", 0.0))
        if self.attrs.get("store_as_uint8"):
            return 1.0 / 255.0, 0.0
        return 1.0, 0.0

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"TensorH5Reader('{self.path}', {self.preprocess_name}, shape={self.shape}, delta_t={self.delta_t}, "
                f"sensor={self.height}x{self.width})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _dataset(self) -> h5py.Dataset:
        # a handle inherited through fork is not safe to share: reopen in each process
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[DATASET]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tensors ``start`` to ``stop`` (exclusive), float32 (stop - start, C, H, W), dequantised if stored as ints.

        Raises:
            IndexError: not ``0 <= start <= stop <= len(self)``.
        """
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"{self.path}: read({start}, {stop}) outside [0, {len(self)}]")
        raw = self._dataset()[start:stop]
        if self._decode is None:
            return raw.astype(np.float32, copy=False)
        scale, offset = self._decode
        if raw.dtype == np.uint8:
            # a 256-entry table, each value rounded once from float64: 255 * (1 / 255) decodes to exactly 1.0
            table = (np.arange(256, dtype=np.float64) * scale + offset).astype(np.float32)
            return table[raw]
        return (raw.astype(np.float64) * scale + offset).astype(np.float32)

    def close(self) -> None:
        """Closes the HDF5 handle (reopened by the next read)."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> TensorH5Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
