"""``input.encoding``: bytes that are not text in it are found before any row is read, never sent.

A CSV or JSONL file is checked from its first byte to its last when it is opened
(by ``check``, ``discover`` and the start of ``read``), so a stray Latin-1 ``é``
in a UTF-8 file stops the run before the first request is paid for, with the file,
the line, the byte offset and the fix. Standard input cannot be checked ahead: a
line that is not text in the encoding stops the read at that line.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from connector.errors import InputError
from connector.rows.source_file import SourceFile

_CHUNK = 1 << 20
_ONE_BYTE_EVERYTHING = frozenset({"latin_1", "iso8859_1", "cp437"})  # every byte is a character


def normalized(encoding: str) -> str:
    """Python's name for an encoding; InputError for one it does not know."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"input.encoding: unknown encoding {encoding!r}; use a name such as utf-8, latin-1, "
                         "cp1252 or utf-16") from None


def is_utf8(encoding: str) -> bool:
    return normalized(encoding) == "utf-8"


@dataclass(frozen=True)
class TextFacts:
    """What a pass over the raw bytes of a file found."""

    newlines: int  # b"\n" bytes: lines, if the last line ends with a break
    ends_with_newline: bool


def check_file(source: SourceFile, encoding: str) -> TextFacts:
    """Read the file once, checking that all of it is text in ``encoding``; InputError at the first
    bytes that are not, naming line and byte offset."""
    name = normalized(encoding)
    decoder = None if name in _ONE_BYTE_EVERYTHING else codecs.getincrementaldecoder(name)("strict")
    newlines = 0
    offset = 0
    last = b""
    path = source.name
    try:
        with source.open() as f:
            while chunk := f.read(_CHUNK):
                if decoder is not None:
                    pending = len(decoder.getstate()[0])
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        at = exc.start - pending  # exc positions count the bytes kept from the last chunk
                        line = newlines + chunk[: max(at, 0)].count(b"\n") + 1
                        raise InputError(_message(path, encoding, line, offset + at, exc, chunk, at)) from None
                newlines += chunk.count(b"\n")
                offset += len(chunk)
                last = chunk[-1:]
            if decoder is not None:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError as exc:
                    raise InputError(f"input.path: {path} ends in the middle of a {encoding} character "
                                     f"(byte offset {offset - len(exc.object) + exc.start}); the file is cut "
                                     "short or not in this encoding. Set input.encoding to the file's "
                                     "encoding") from None
    except OSError as exc:
        raise InputError(f"input.path: cannot read '{path}': {exc.strerror or exc}") from None
    return TextFacts(newlines, last == b"\n")


def _message(path: str, encoding: str, line: int, offset: int, exc: UnicodeDecodeError, chunk: bytes,
             at: int) -> str:
    bad = exc.object[exc.start: exc.end]
    start = chunk.rfind(b"\n", 0, max(at, 0)) + 1
    end = chunk.find(b"\n", max(at, 0))
    context = chunk[max(start, at - 30): at + 10 if end < 0 else min(end, at + 10)]
    shown = context.decode(encoding if is_utf8(encoding) else "utf-8", "backslashreplace")
    opening = chunk[:2] if offset == at else b""  # the file's first bytes, when this is its first chunk
    return (f"input.path: {path} line {line} (byte offset {offset}) holds {_hex(bad)}, which is not "
            f"{encoding} text: …{shown}…. {_fix(opening or bad, encoding)}")


def _hex(data: bytes) -> str:
    return " ".join(f"0x{b:02X}" for b in data)


def _fix(bad: bytes, encoding: str) -> str:
    if bad.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "The file starts with a UTF-16 byte order mark: set input.encoding to utf-16."
    if is_utf8(encoding):
        return ("If it is text, it is probably Latin-1 or Windows-1252: set input.encoding to latin-1 (or "
                "cp1252), or convert the file to UTF-8 (iconv -f latin1 -t utf-8); if it is not text, replace it.")
    return (f"input.encoding is {encoding}, which the file is not in: set input.encoding to the encoding it is "
            f"in, or convert the file to {encoding}.")


def decode_line(raw: bytes, encoding: str, where: str) -> str:
    """One line of text (standard input); InputError naming ``where`` and the byte offset when it is not."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start: exc.end]
        raise InputError(f"input: {where} (byte {exc.start + 1} of the line) holds {_hex(bad)}, which is not "
                         f"{encoding} text. {_fix(bad, encoding)}") from None
