"""The one exception type raised for unreadable or malformed event / label files."""

from __future__ import annotations

import os


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
