"""Collecting the ``python -m evframe.run ...`` commands the documentation shows, as a user would copy them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ENTRY = "python -m evframe.run"
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"`(python -m evframe\.run[^`]*)`")


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is written and its arguments after ``python -m evframe.run``."""

    source: str
    line: int
    args: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join((ENTRY, *self.args))

    def value(self, key: str) -> str | None:
        """The value of ``key=value`` in the command (the last one wins, as in Hydra), or None."""
        found = None
        for arg in self.args:
            if arg.startswith(key + "="):
                found = arg[len(key) + 1:]
        return found


def _strip_comment(line: str) -> str:
    # a shell comment starts at a '#' preceded by whitespace; Hydra values here never contain one
    match = re.search(r"\s#", line)
    return line[:match.start()] if match else line


def commands_in_markdown(text: str, source: str) -> list[DocCommand]:
    """Every ``python -m evframe.run`` command of a markdown text: lines of fenced code blocks (joined over
    backslash continuations, shell comments removed) and inline code spans. Returns them in document order."""
    found: list[DocCommand] = []
    lines = text.splitlines()
    in_block = False
    prose = []  # the text outside code blocks, blanked inside them so that line numbers stay true
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_block = not in_block
            prose.append("")
            i += 1
            continue
        prose.append("" if in_block else line)
        if in_block:
            start = i
            command = _strip_comment(line).rstrip()
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + _strip_comment(lines[i]).strip()
            command = command.strip()
            if command.startswith(ENTRY):
                found.append(DocCommand(source, start + 1, tuple(shlex.split(command[len(ENTRY):]))))
            prose.extend([""] * (i - start))
        i += 1
    # an inline code span may wrap onto the next line of its paragraph
    joined = "\n".join(prose)
    for match in _INLINE.finditer(joined):
        line = joined.count("\n", 0, match.start()) + 1
        found.append(DocCommand(source, line, tuple(shlex.split(match.group(1)[len(ENTRY):]))))
    return sorted(found, key=lambda c: c.line)


def documented_commands(paths: list[Path], root: Path) -> list[DocCommand]:
    """The commands of every markdown file in ``paths``, each command once (the first place it is written)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for path in paths:
        for command in commands_in_markdown(path.read_text(), str(path.relative_to(root))):
            if command.args not in seen:
                seen.add(command.args)
                out.append(command)
    return out
