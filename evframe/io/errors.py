"""The one exception type raised for unreadable or malformed event / label files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class EventFileError(ValueError):
    """A file that cannot be read as what it claims to be.

    ``str(err)`` is ``"<path>: <message> (at byte <offset>)"`` (the byte part only when ``offset`` is known), so the
    user always sees which file is broken and where.
    """

    def __init__(self, path: str | os.PathLike, message: str, offset: int | None = None) -> None:
        self.path = os.fspath(path)
        self.message = message
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "" if self.offset is None else f" (at byte {self.offset})"
        return f"{self.path}: {self.message}{where}"

    def __reduce__(self):
        # DataLoader workers pickle exceptions back to the main process: rebuild from the original arguments.
        return type(self), (self.path, self.message, self.offset)


@contextlib.contextmanager
def hdf5_errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turns the exceptions h5py raises on damaged or changed files into an :class:`EventFileError` naming ``path``.

    h5py reports a damaged file as ``OSError`` (unreadable chunk, truncated file), ``KeyError`` (broken link or
    object header), ``RuntimeError``, ``AttributeError`` / ``TypeError`` (a group where a dataset should be) or
    ``ValueError``. ``what`` says what was being read (e.g. ``"/CD/events[0:65536]"``). Wrap only h5py calls, so
    that a genuine bug elsewhere is not disguised as a bad file; EventFileError passes through unchanged.
    """
    try:
        yield
    except (EventFileError, FileNotFoundError):
        raise
    except (OSError, KeyError, RuntimeError, AttributeError, TypeError, ValueError) as err:
        raise EventFileError(path, f"damaged or unreadable HDF5 file: cannot read {what} "
                                   f"({type(err).__name__}: {err})") from None
