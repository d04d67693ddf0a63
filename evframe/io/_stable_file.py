"""Positional reads of a file that must stay as it was when a reader opened it (DAT and RAW readers).

The readers do not memory-map their files: a map of a file that another process truncates raises SIGBUS on the
next access, which kills the process instead of raising. Reading with explicit ``readinto`` calls turns a shrunken
file into a short read, and comparing the file's size and modification / change times with those seen
when the reader was created catches a file rewritten in place. Either case raises :class:`EventFileError`.
A file replaced by renaming another one over it (as atomic writers do) is not a change for an open reader: it keeps
reading the file it opened. A reader reopened in another process (after pickling) checks the file at the path
against what it saw first.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from evframe.io.errors import EventFileError


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


class StableFile:
    """Reads byte ranges of ``path`` into numpy arrays, refusing to read once the file has changed.

    Args:
        path: the file. The size and times are taken now: later reads compare against them.
    Attributes:
        size: the file's size in bytes when the reader was created.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        st = os.stat(self.path)
        self.size = st.st_size
        self._identity = (st.st_dev, st.st_ino)
        self._signature = _signature(st)
        self._file: io.FileIO | None = None
        self._pid: int | None = None

    def _changed(self, st: os.stat_result) -> EventFileError:
        size = "" if st.st_size == self.size else f"its size went from {self.size} to {st.st_size} bytes, "
        return EventFileError(self.path, f"the file changed while a reader had it open ({size}modified after "
                                         "the reader was created): open it again to read the new content")

    def _handle(self) -> io.FileIO:
        # Reopened in a new process: a descriptor inherited through fork shares its offset with the parent.
        if self._file is None or self._pid != os.getpid():
            try:
                handle = io.FileIO(self.path, "r")
            except FileNotFoundError:
                raise EventFileError(self.path, "the file was removed after the reader was created") from None
            st = os.fstat(handle.fileno())
            if (st.st_dev, st.st_ino) != self._identity or _signature(st) != self._signature:
                handle.close()
                raise self._changed(st)
            self._file, self._pid = handle, os.getpid()
        return self._file

    def check(self) -> None:
        """Raises EventFileError when the file's size or times differ from those seen at creation."""
        st = os.fstat(self._handle().fileno())
        if _signature(st) != self._signature:
            raise self._changed(st)

    def read_into(self, offset: int, out: np.ndarray) -> np.ndarray:
        """Fills the contiguous array ``out`` with the bytes at ``offset``; returns ``out``.

        Raises:
            EventFileError: the file ends before ``out`` is full (it shrank since the reader was created).
        """
        handle = self._handle()
        view = memoryview(out).cast("B")
        handle.seek(offset)
        done = 0
        while done < len(view):
            got = handle.readinto(view[done:])
            if not got:
                raise EventFileError(self.path, f"the file ends at byte {offset + done}, but {len(view)} bytes "
                                                f"were expected there: it shrank while a reader had it open",
                                     offset + done)
            done += got
        return out

    def read(self, offset: int, count: int, dtype: np.dtype) -> np.ndarray:
        """``count`` items of ``dtype`` at byte ``offset`` (a new array)."""
        return self.read_into(offset, np.empty(count, dtype=dtype))

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __del__(self) -> None:
        # readers are often dropped without close(): release the descriptor quietly (no ResourceWarning)
        try:
            self.close()
        except Exception:  # at interpreter shutdown there may be nothing left to release
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state
