"""A time series of dense arrays in HDF5 (``timestamps`` (N,) int64 us + one (N, ...) dataset): writer and lazy reader.

Shared by dense flow labels and ground-truth frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io.errors import EventFileError, hdf5_errors

TIMESTAMPS = "timestamps"


def check_timestamps(where: str, timestamps: np.ndarray, count: int) -> np.ndarray:
    """Returns ``timestamps`` as int64 after checking: (count,) integers, strictly increasing."""
    timestamps = np.asarray(timestamps)
    if timestamps.shape != (count,) or timestamps.dtype.kind not in "iu":
        raise ValueError(f"{where}: timestamps should be ({count},) integers (us), got {timestamps.dtype} "
                         f"{timestamps.shape}")
    if count > 1 and np.any(np.diff(timestamps.astype(np.int64)) <= 0):
        raise ValueError(f"{where}: timestamps should be strictly increasing")
    return timestamps.astype(np.int64)


def write_series(path: str | os.PathLike, name: str, data: np.ndarray, timestamps: np.ndarray, attrs: dict,
                 compression: str | None) -> None:
    """Writes ``data`` (N, ...) as dataset ``name`` (chunked one item per chunk) beside ``timestamps``, atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(TIMESTAMPS, data=timestamps)
        chunks = (1, *data.shape[1:]) if len(data) else None
        f.create_dataset(name, data=data, chunks=chunks, compression=compression if len(data) else None)
        f.attrs.update(attrs)


def _open(path: Path) -> h5py.File:
    """``path`` opened read-only; EventFileError when it is not an HDF5 file, FileNotFoundError when it is gone."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        raise EventFileError(path, f"not a readable HDF5 file ({err})") from None


class TimedH5Reader:
    """Lazy reader of one series written by :func:`write_series`.

    The constructor reads only the small metadata (timestamps, shape) and closes the file; the data file is opened
    on the first :meth:`read` in each process, so the reader pickles cheaply into DataLoader workers.

    Args:
        path: the HDF5 file.
        name: dataset holding the (N, ...) arrays.
        item_shape: expected shape of one item, None for "any size" (e.g. ``(2, None, None)``).
        dtype: dtype returned by :meth:`read`.
    """

    def __init__(self, path: str | os.PathLike, name: str, item_shape: tuple, dtype: np.dtype) -> None:
        self.path = Path(path)
        self.name = name
        self.dtype = np.dtype(dtype)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        with _open(self.path) as f, hdf5_errors(self.path, f"datasets '{TIMESTAMPS}' and '{name}'"):
            missing = [d for d in (TIMESTAMPS, name) if d not in f]
            if missing:
                raise EventFileError(self.path, f"missing dataset(s) {missing}; found {sorted(f.keys())}")
            for d in (TIMESTAMPS, name):
                if not isinstance(f[d], h5py.Dataset):  # f[d] raises on a damaged object (f.get would hide it)
                    raise EventFileError(self.path, f"'{d}' is an HDF5 {type(f[d]).__name__.lower()}, expected a "
                                                    "dataset")
            self.timestamps = f[TIMESTAMPS][()]
            self.shape = f[name].shape
            file_dtype = f[name].dtype
            self.attrs = dict(f.attrs)
        expected = f"(N, {', '.join('*' if s is None else str(s) for s in item_shape)})"
        if len(self.shape) != 1 + len(item_shape) or any(
                s is not None and s != got for s, got in zip(item_shape, self.shape[1:], strict=False)):
            raise EventFileError(self.path, f"dataset '{name}' has shape {self.shape}, expected {expected}")
        # Floats of any precision convert losslessly enough; integer data must match exactly (no silent wrapping).
        if not (file_dtype == self.dtype or file_dtype.kind == self.dtype.kind == "f"):
            raise EventFileError(self.path, f"dataset '{name}' has dtype {file_dtype}, expected {self.dtype}")
        if self.timestamps.shape != (self.shape[0],) or self.timestamps.dtype.kind not in "iu":
            raise EventFileError(self.path, f"dataset '{TIMESTAMPS}' has {self.timestamps.dtype} "
                                            f"{self.timestamps.shape}, expected ({self.shape[0]},) int64 us")
        if self.timestamps.dtype == np.uint64 and len(self.timestamps) and self.timestamps.max() >= 2**63:
            i = int(np.argmax(self.timestamps >= 2**63))
            raise EventFileError(self.path, f"dataset '{TIMESTAMPS}' at index {i}: {self.timestamps[i]} us does not "
                                            "fit int64 us")
        self.timestamps = self.timestamps.astype(np.int64)
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def height(self) -> int:
        return int(self.shape[-2])

    @property
    def width(self) -> int:
        return int(self.shape[-1])

    def __len__(self) -> int:
        return int(self.shape[0])

    def indices_in(self, t0: int, t1: int) -> np.ndarray:
        """Indices (int64, ascending) of the items with t0 <= timestamp < t1."""
        lo, hi = np.searchsorted(self.timestamps, [t0, t1], side="left")
        return np.arange(lo, max(lo, hi), dtype=np.int64)

    def read(self, index) -> np.ndarray:
        """Items at ``index`` (an int, a slice or a 1-D sequence of ints, any order) as (n, ...) ``dtype``."""
        if isinstance(index, slice):
            with hdf5_errors(self.path, f"dataset '{self.name}'[{index.start}:{index.stop}:{index.step}]"):
                return self._dataset()[index].astype(self.dtype, copy=False)
        indices = np.asarray(index)
        if indices.size == 0:
            indices = indices.astype(np.int64)  # [] arrives as float64
        if indices.dtype.kind not in "iu" or indices.ndim > 1:
            raise TypeError(f"{self.path}: read() takes an int, a slice or a 1-D int sequence, got {index!r}")
        indices = np.atleast_1d(indices).astype(np.int64)
        if np.any((indices < -len(self)) | (indices >= len(self))):
            raise IndexError(f"{self.path}: index {index!r} out of range for {len(self)} items")
        indices %= max(len(self), 1)
        if not len(indices):
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        # h5py wants increasing unique indices: read those once, then restore the requested order.
        unique, inverse = np.unique(indices, return_inverse=True)
        with hdf5_errors(self.path, f"dataset '{self.name}' items {unique[0]}..{unique[-1]}"):
            dataset = self._dataset()
            if unique[-1] - unique[0] + 1 == len(unique):
                data = dataset[int(unique[0]):int(unique[-1]) + 1]
            else:
                data = dataset[unique]
        return data[inverse].astype(self.dtype, copy=False)

    def _dataset(self) -> h5py.Dataset:
        # Reopen in a new process: an h5py handle inherited through fork must not be shared.
        if self._file is None or self._pid != os.getpid():
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file[self.name]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        span = f"{self.timestamps[0]}..{self.timestamps[-1]} us" if len(self) else "empty"
        return f"{type(self).__name__}('{self.path}', shape={self.shape}, {span})"
