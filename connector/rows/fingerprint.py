"""What a STATE binds itself to: a running hash of the rows it covers, and the files they came from.

A STATE says "rows 1..N are done". That is only true of the input it was written
for: pointed at another file, or at the same file with a row edited or inserted
before row N, reading on from row N+1 would skip or repeat rows without a word.
So a STATE carries the input's fingerprint (``stream_state.input``, see
:mod:`connector.airbyte.state`), and the next sync checks it before reading on.

The row hash is a chain over the rows in input order::

    h_0 = 32 zero bytes
    h_i = SHA-256(h_(i-1) || row_bytes(row_i))
    rows_sha256 = hex(h_N)

:func:`row_bytes` is the row's values in column order as a compact JSON array of
text: a string as it is, a boolean ``"true"``/``"false"``, any other number or
JSON value as its compact JSON text, null as null (``[null,"7","a text"]``); a row
holding a string JSON cannot write (a lone surrogate) is each value tagged and
length-prefixed instead. Text, not the
typed value, so that appending a row which changes a CSV column's inferred type
(``1`` becoming ``"1"``) does not read as an edit of every earlier row. Column
names are not hashed (a renamed header changes no row); a column added or removed
changes every row. The chain can be continued from a saved ``h_N`` without the
rows before it (an input that cannot be read again, a cursor sync).

Files (:class:`InputFile`) are kept for the message only: name, size, mtime and
how many rows each held, so a mismatch can say what changed. The hash decides.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from connector import jsonbytes
from connector.errors import StateError

ZERO = bytes(32)
_NULL = b"\x00"


def row_bytes(row: Mapping[str, Any]) -> bytes:
    """The bytes of one row the chain hashes: its values as a JSON array of text (see the module doc)."""
    try:  # a string or null as it is, without a call for it: most cells of most rows
        return orjson.dumps([value if value is None or value.__class__ is str else _as_text(value)
                             for value in row.values()])
    except orjson.JSONEncodeError:  # a lone surrogate: no JSON text, so bytes of its own
        return _tagged(row)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return jsonbytes.dumps(value).decode("utf-8")


def _tagged(row: Mapping[str, Any]) -> bytes:
    """Each value as text, tagged and length-prefixed (for a row JSON cannot write)."""
    parts: list[bytes] = []
    for value in row.values():
        if value is None:
            parts.append(_NULL)
            continue
        text = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else _text(value)
        parts.append(b"\x01" + len(text).to_bytes(8, "big") + text)
    return b"".join(parts)


def _text(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode("ascii")
    return jsonbytes.dumps(value)


def chain(previous: bytes, row: Mapping[str, Any]) -> bytes:
    """h_i from h_(i-1) and row i."""
    return hashlib.sha256(previous + row_bytes(row)).digest()


@dataclass(frozen=True)
class InputFile:
    """One file of the input as a sync saw it: where, how big, when last modified, how many rows."""

    name: str
    size: int
    mtime_ns: int
    rows: int

    @classmethod
    def stat(cls, path: str, rows: int) -> InputFile:
        """The file at ``path`` as it is now."""
        found = os.stat(path)
        return cls(path, found.st_size, found.st_mtime_ns, rows)

    def as_state(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns, "rows": self.rows}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> InputFile:
        if not isinstance(raw, dict):
            raise StateError(f"{where}: expected an object with name, size, mtime_ns and rows")
        name = raw.get("name")
        if not isinstance(name, str):
            raise StateError(f"{where}.name: expected a string, got {_shown(name)}")
        numbers = [_count(raw.get(key), f"{where}.{key}") for key in ("size", "mtime_ns", "rows")]
        return cls(name, *numbers)

    def described(self) -> str:
        when = datetime.fromtimestamp(self.mtime_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.size:,} bytes, modified {when}"


@dataclass(frozen=True)
class InputFingerprint:
    """The fingerprint of rows 1..N of an input: the chain's ``h_N`` and the files those rows came from."""

    rows_sha256: str
    files: tuple[InputFile, ...] = ()

    def as_state(self) -> dict[str, Any]:
        return {"rows_sha256": self.rows_sha256, "files": [f.as_state() for f in self.files]}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> InputFingerprint:
        if not isinstance(raw, dict):
            raise StateError(f"{where}: expected an object with rows_sha256 and files, got {_shown(raw)}")
        digest = raw.get("rows_sha256")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StateError(f"{where}.rows_sha256: expected 64 lowercase hex digits, got {_shown(digest)}")
        files = raw.get("files")
        if files is None:
            files = []
        if not isinstance(files, list):
            raise StateError(f"{where}.files: expected a list, got {_shown(files)}")
        return cls(digest, tuple(InputFile.from_state(f, f"{where}.files.{i}") for i, f in enumerate(files)))

    @property
    def digest(self) -> bytes:
        """``h_N`` as bytes, to continue the chain from."""
        return bytes.fromhex(self.rows_sha256)


def covering(files: Sequence[InputFile], rows: int) -> tuple[InputFile, ...]:
    """The files that hold rows 1..``rows`` (the last one perhaps only in part)."""
    out: list[InputFile] = []
    held = 0
    for found in files:
        if held >= rows:
            break
        out.append(found)
        held += found.rows
    return tuple(out)


def changes(saved: Sequence[InputFile], now: Sequence[InputFile]) -> list[str]:
    """What differs between the files a STATE read and the input's files now, in words."""
    current = {f.name: f for f in now}
    out: list[str] = []
    for before in saved:
        after = current.get(before.name)
        if after is None:
            out.append(f"'{before.name}' is no longer in the input")
        elif (after.size, after.mtime_ns) != (before.size, before.mtime_ns):
            out.append(f"'{before.name}' changed: {before.described()} then, {after.described()} now")
    return out


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StateError(f"{where}: expected a whole number >= 0, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{str(jsonbytes.dumps(value), 'utf-8')[:60]} ({kind})"
