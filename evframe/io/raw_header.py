"""The text header of Prophesee RAW files: ``% key value`` lines before the binary event stream.

Examples of lines: ``% evt 3.0``, ``% format EVT3;height=720;width=1280``, ``% geometry 1280x720``,
``% plugin_name hal_plugin_gen41_evk3``, ``% Date 2020-09-25 07:48:29``, and an optional closing ``% end``.
The encoding comes from ``format`` (first field) or ``evt``; the sensor size from ``format`` (height=, width=),
``geometry`` (WxH), ``Height`` / ``Width`` lines, or, for older recordings that say none of these, the camera
plugin's name (Gen3 VGA: 640x480, Gen4.1 / IMX636: 1280x720, GenX320: 320x320).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

from evframe.io.errors import EventFileError

ENCODINGS = ("evt2", "evt3")
_MAX_LINE = 1 << 16
_MAX_HEADER = 1 << 20
#: (pattern in the plugin name, (height, width)), first match wins
_PLUGIN_GEOMETRY = ((re.compile(r"gen41|imx636|gen4_|gen4$"), (720, 1280)),
                    (re.compile(r"genx320|gen_?x320"), (320, 320)),
                    (re.compile(r"gen31|gen3"), (480, 640)))
_ENCODING_NAMES = {"evt2": "evt2", "2.0": "evt2", "evt3": "evt3", "3.0": "evt3", "evt21": "evt21", "2.1": "evt21"}


@dataclass(frozen=True)
class RawHeader:
    """What the header says.

    Attributes:
        fields: {key: value} of the ``%`` lines (key = first word, as written).
        encoding: ``"evt2"`` or ``"evt3"``.
        height, width: sensor size, None when the header does not give it.
        geometry_source: which line gave the size ("format", "geometry", "Height/Width", "plugin_name", or None).
        body_offset: byte offset of the first event word.
    """

    fields: dict[str, str] = field(default_factory=dict)
    encoding: str = "evt3"
    height: int | None = None
    width: int | None = None
    geometry_source: str | None = None
    body_offset: int = 0


def _get(fields: dict[str, str], key: str) -> str | None:
    for k, v in fields.items():
        if k.lower() == key:
            return v
    return None


#: bytes a header key is made of (Metavision writes snake_case words such as ``plugin_name``, ``system_ID``)
_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


def _looks_like_header_line(head: bytes) -> bool:
    """True when ``head`` starts with ``"% "``, a key of at least two key bytes, then a space or a line end.

    Used once the encoding is known, where the data may start right after the last header line (``% end`` is
    optional) and its first byte may be 0x25 ``%``. Why this tells them apart:

    - EVT 2.0: bytes 2-3 of such a line are key bytes (0x2D-0x7A), so the first 32-bit word would have type
      ``byte 3 >> 4`` in 2-7, which EVT 2.0 reserves: valid data never starts like this.
    - EVT 3.0: the line would read as ADDR_X 37 (bytes 25 20) followed by key bytes and a space/newline; for
      uniformly random words that is about 1 in 10**8 recordings, while every header line matches.
    """
    if not head.startswith(b"% "):
        return False
    key = 0
    for byte in head[2:]:
        if byte in _KEY_BYTES:
            key += 1
            continue
        return key >= 2 and byte in b" \t\r\n"
    return False


def read_header_lines(path: str | os.PathLike, f) -> tuple[dict[str, str], int]:
    """Reads the ``%`` lines from the start of open binary file ``f``; returns ({key: value}, body offset).

    The header ends at ``% end``, or at the first byte that is not ``%``, or, once a line has given the encoding
    (``evt`` or ``format``), at the first bytes that do not look like a header line (see
    :func:`_looks_like_header_line`): without ``% end``, event data starting with 0x25 is data, not a header line.

    Raises:
        EventFileError: a header line that is not newline-terminated ASCII text (naming its byte offset).
    """
    fields: dict[str, str] = {}
    encoding_known = False
    while True:
        start = f.tell()
        if start > _MAX_HEADER:
            raise EventFileError(path, f"RAW header longer than {_MAX_HEADER} bytes: garbled header", start)
        head = f.read(256)
        if head.startswith(b"%") and b"\n" not in head:  # a long line: look as far as a line may go
            head += f.read(_MAX_LINE - len(head))
        if not head.startswith(b"%") or (encoding_known and not _looks_like_header_line(head)):
            f.seek(start)
            return fields, start
        end = head.find(b"\n")
        if end < 0:
            raise EventFileError(path, f"garbled RAW header: a '%' line is not newline-terminated within {_MAX_LINE} "
                                       "bytes", start)
        line = head[1:end + 1]
        f.seek(start + end + 1)
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            raise EventFileError(path, f"garbled RAW header: non-ASCII bytes in header line {line[:60]!r}",
                                 start) from None
        if text.lower() == "end":
            return fields, f.tell()
        if text:
            key, _, value = text.partition(" ")
            fields[key] = value.strip()
            encoding_known = encoding_known or key.lower() in ("evt", "format")


def _encoding(path: str | os.PathLike, fields: dict[str, str]) -> str:
    fmt = _get(fields, "format")
    evt = _get(fields, "evt")
    from_format = _ENCODING_NAMES.get(fmt.split(";")[0].strip().lower()) if fmt else None
    from_evt = _ENCODING_NAMES.get(evt.strip().lower()) if evt else None
    if fmt and from_format is None:
        raise EventFileError(path, f"RAW header '% format {fmt}': unknown encoding, expected EVT2 or EVT3")
    if evt and from_evt is None and from_format is None:
        raise EventFileError(path, f"RAW header '% evt {evt}': unknown encoding, expected 2.0 or 3.0")
    if from_format and from_evt and from_format != from_evt:
        warnings.warn(f"{path}: RAW header says '% evt {evt}' but '% format {fmt}'; decoding as {from_format}",
                      stacklevel=3)
    encoding = from_format or from_evt
    if encoding is None:
        raise EventFileError(path, "RAW header gives no encoding: expected a '% evt 2.0|3.0' or "
                                   "'% format EVT2|EVT3;...' line")
    if encoding not in ENCODINGS:
        raise EventFileError(path, f"RAW encoding {encoding.upper()} is not supported (supported: EVT 2.0, EVT 3.0)")
    return encoding


def _positive(path: str | os.PathLike, text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= 2048:
        raise EventFileError(path, f"RAW header {what}: {text!r} should be an integer in [1, 2048]")
    return value


def _geometry(path: str | os.PathLike, fields: dict[str, str]) -> tuple[int | None, int | None, str | None]:
    """All the sizes the header gives, checked against each other; the first in priority order wins."""
    found: list[tuple[str, int, int]] = []
    fmt = _get(fields, "format")
    if fmt:
        params = dict(p.split("=", 1) for p in fmt.split(";")[1:] if "=" in p)
        params = {k.strip().lower(): v.strip() for k, v in params.items()}
        if "height" in params and "width" in params:
            found.append(("format", _positive(path, params["height"], "format height"),
                          _positive(path, params["width"], "format width")))
    geometry = _get(fields, "geometry")
    if geometry:
        w, sep, h = geometry.lower().partition("x")
        if not sep:
            raise EventFileError(path, f"RAW header '% geometry {geometry}': expected WIDTHxHEIGHT, e.g. 1280x720")
        found.append(("geometry", _positive(path, h, "geometry height"), _positive(path, w, "geometry width")))
    height, width = _get(fields, "height"), _get(fields, "width")
    if height and width:
        found.append(("Height/Width", _positive(path, height, "Height"), _positive(path, width, "Width")))
    plugin = (_get(fields, "plugin_name") or "").lower()
    if not found and plugin:
        for pattern, (h, w) in _PLUGIN_GEOMETRY:
            if pattern.search(plugin):
                found.append(("plugin_name", h, w))
                break
    if not found:
        return None, None, None
    source, h, w = found[0]
    for other, h2, w2 in found[1:]:
        if (h2, w2) != (h, w):
            warnings.warn(f"{path}: RAW header '{source}' says {w}x{h} but '{other}' says {w2}x{h2}; using {w}x{h}",
                          stacklevel=3)
    return h, w, source


def parse_raw_header(path: str | os.PathLike) -> RawHeader:
    """Reads and interprets the header of RAW file ``path``.

    Raises:
        EventFileError: empty file, no header, garbled header, unknown or unsupported encoding, bad geometry.
    """
    with open(path, "rb") as f:
        head = f.read(1)
        if not head:
            raise EventFileError(path, "empty file, expected a RAW header ('% evt 3.0' ...) and event data")
        f.seek(0)
        fields, body_offset = read_header_lines(path, f)
    if not fields:
        raise EventFileError(path, "no RAW header: expected '% ' lines with the encoding ('% evt 3.0')", 0)
    encoding = _encoding(path, fields)
    height, width, source = _geometry(path, fields)
    return RawHeader(fields, encoding, height, width, source, body_offset)
