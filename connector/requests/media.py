"""Media columns: a cell that is an image or a PDF, loaded once, placed where the template puts it.

``media_columns`` (``{"photo": "image", "invoice": "document"}``) declares them. A cell may be

- a URL (``http://``, ``https://``): kept as a URL, for the providers that fetch it;
- a data URL (``data:image/png;base64,...``) or base64 text (what a Parquet binary column becomes
  in a row): decoded;
- a path to a local file: read;
- an object in a store (``s3://``, ``gs://``, ``az://``), when the run gives a :class:`StoreReader`
  (the input's store settings): downloaded, at most the API shape's limit of it.

The media type comes from the bytes (their magic numbers: PNG, JPEG, GIF, WebP, PDF), never from a
name or an extension; a declared image that holds a PDF, or bytes of no known type, is the row's
``bad_input`` (:class:`MediaError`). A URL's bytes are not fetched here, so its type is unknown.

The template places a media column like any other (``{{photo}}``): :func:`stand_ins` puts a
:class:`MediaCell` in the row, and :func:`place` turns the rendered body's text around it into
chat-completions content parts, the one form every dialect translates into its own
(:mod:`connector.dialects`): an image is ``{"type": "image_url", "image_url": {"url": ...}}``, a
document ``{"type": "file", "file": {"filename", "file_data": "data:application/pdf;base64,..."}}``
(or ``"file_url"`` for a URL). A cell that is exactly a template string (``"url": "{{photo}}"``)
becomes the URL or data URL itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol

from connector.errors import InputError

MediaKind = Literal["image", "document"]
_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters around a media column's name in rendered text
_STAND_IN = re.compile(f"{_OPEN}([^{_CLOSE}]*){_CLOSE}")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class MediaError(ValueError):
    """A media cell that cannot be used: the row's ``bad_input``, nothing sent."""


@dataclass(frozen=True)
class Media:
    """One media cell: the bytes (or a URL), their type, and what the providers' limits need."""

    kind: MediaKind
    column: str
    data: bytes | None = None
    url: str | None = None
    mime: str | None = None
    pages: int | None = None  # a PDF's pages
    name: str = field(default="")

    @property
    def size(self) -> int:
        """Bytes sent inline (0 for a URL)."""
        return len(self.data) if self.data is not None else 0

    @property
    def encoded_size(self) -> int:
        """Characters of its base64 form (what some limits count)."""
        return (self.size + 2) // 3 * 4

    @cached_property
    def data_url(self) -> str:
        """``data:<type>;base64,...``, or the URL for a URL."""
        if self.data is None:
            return self.url or ""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    @cached_property
    def dimensions(self) -> tuple[int, int] | None:
        """An image's (width, height) from its header; None for a URL, a PDF or an unreadable header."""
        return image_size(self.data) if self.kind == "image" and self.data is not None else None

    @cached_property
    def sha256(self) -> str:
        """A hash of the content (of the URL, for a URL)."""
        return hashlib.sha256(self.data if self.data is not None else (self.url or "").encode()).hexdigest()


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` from its first bytes, or None when it is none we know."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.lstrip()[:5] == b"%PDF-":
        return "application/pdf"
    return None


_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_pages(data: bytes) -> int:
    """A PDF's pages: its ``/Type /Page`` objects (not ``/Pages``), counted in the bytes as written
    (pages inside compressed object streams are not seen: then at least 1)."""
    return max(1, len(_PAGE.findall(data)))


class StoreReader(Protocol):
    """Reads a media cell that names an object in a store (``connector.rows.media_files.StoreMedia``); each
    method raises :class:`~connector.errors.InputError` naming the column and the object."""

    @property
    def schemes(self) -> frozenset[str]: ...

    def size(self, url: str, column: str) -> int | None: ...

    def read(self, url: str, column: str, limit: int) -> bytes: ...


DEFAULT_LIMIT = 64 * 1024 * 1024  # a store object's bytes when the API shape names no limit


def load(value: Any, kind: MediaKind, column: str, base: Path | None = None, *, store: StoreReader | None = None,
         limit: int = DEFAULT_LIMIT) -> Media:
    """The media a cell gives; MediaError naming the column and what to do. A cell naming an object in a
    store ``store`` reads (``s3://bucket/key``) is downloaded, never more than ``limit`` bytes of it."""
    if not isinstance(value, (str, bytes)):
        raise MediaError(f"column {column!r} is declared {kind} but holds {type(value).__name__}; give a URL, a "
                         "path, base64 text or bytes")
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return Media(kind, column, url=value, name=value.rsplit("/", 1)[-1] or column)
    if isinstance(value, str) and store is not None and value.split("://", 1)[0].lower() in store.schemes:
        data, name = _stored(value, column, kind, store, limit), value.rsplit("/", 1)[-1] or column
    else:
        data, name = _bytes_of(value, column, kind, base)
    mime = sniff(data)
    if mime is None:
        raise MediaError(f"column {column!r}: the bytes are none of PNG, JPEG, GIF, WebP or PDF (their first bytes "
                         f"are {data[:8]!r}); the media type is read from the bytes, not the name")
    wanted = _IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if mime not in wanted:
        raise MediaError(f"column {column!r} is declared {kind} but holds {mime}; declare it "
                         f"{'document' if kind == 'image' else 'image'} or fix the input")
    pages = pdf_pages(data) if mime == "application/pdf" else None
    return Media(kind, column, data=data, mime=mime, pages=pages, name=name)


def _stored(url: str, column: str, kind: str, store: StoreReader, limit: int) -> bytes:
    """An object's bytes from its store; MediaError when it cannot be read or is over ``limit``."""
    over = (f"column {column!r}: '{url}' is over {limit / 1024 / 1024:.1f} MB, the most this API shape takes per "
            f"{kind}")
    try:
        size = store.size(url, column)
        if size is not None and size > limit:
            raise MediaError(f"{over} (it holds {size / 1024 / 1024:.1f} MB); nothing was downloaded")
        data = store.read(url, column, limit)
    except InputError as exc:
        raise MediaError(exc.message) from None
    if len(data) > limit:
        raise MediaError(f"{over}; the download stopped there")
    return data


def _bytes_of(value: str | bytes, column: str, kind: str, base: Path | None) -> tuple[bytes, str]:
    if isinstance(value, bytes):
        return value, column
    if value.startswith("data:"):
        head, _, payload = value.partition(",")
        if not head.endswith(";base64"):
            raise MediaError(f"column {column!r}: a data URL must be base64 (data:<type>;base64,...)")
        return _decoded(payload, column), column
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if len(value) < 4096 and _is_file(path):
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise MediaError(f"column {column!r}: cannot read '{value}': {exc.strerror}") from None
    try:
        return _decoded(value, column), column
    except MediaError:
        raise MediaError(f"column {column!r} is declared {kind}, and '{value[:80]}' is not a URL, a file that "
                         "exists, or base64 text") from None


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False for text no file can be named (base64 longer than NAME_MAX)."""
    try:
        return path.is_file()
    except OSError:  # ENAMETOOLONG and the like: not a path, perhaps base64
        return False


def _decoded(text: str, column: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"column {column!r}: not valid base64") from None


class MediaCell(str):
    """A media column's cell in a row about to be rendered: its stand-in text, with the media."""

    media: Media

    def __new__(cls, media: Media) -> MediaCell:
        cell = super().__new__(cls, f"{_OPEN}{media.column}{_CLOSE}")
        cell.media = media
        return cell


def stand_ins(row: Mapping[str, Any], media: Mapping[str, Media]) -> dict[str, Any]:
    """``row`` with each loaded media cell replaced by its :class:`MediaCell`."""
    return {**row, **{column: MediaCell(m) for column, m in media.items()}}


def media_of(row: Mapping[str, Any]) -> dict[str, Media]:
    """The media of a row that went through :func:`stand_ins`."""
    return {column: cell.media for column, cell in row.items() if isinstance(cell, MediaCell)}


def chat_part(media: Media) -> dict[str, Any]:
    """The chat-completions content part of one media cell."""
    if media.kind == "image":
        return {"type": "image_url", "image_url": {"url": media.data_url}}
    if media.data is None:
        return {"type": "file", "file": {"file_url": media.url}}
    return {"type": "file", "file": {"filename": media.name or f"{media.column}.pdf", "file_data": media.data_url}}


def place(body: Any, media: Mapping[str, Media], key: str | None = None) -> Any:
    """The rendered ``body`` with each stand-in replaced: message content around one becomes content
    parts; a string that is exactly one becomes its URL or data URL; MediaError anywhere else."""
    if not media:
        return body
    if isinstance(body, dict):
        return {k: _content(v, media) if k == "content" else place(v, media, k) for k, v in body.items()}
    if isinstance(body, list):
        return [place(item, media, key) for item in body]
    if isinstance(body, str) and _OPEN in body:
        whole = _STAND_IN.fullmatch(body)
        if whole is not None and whole.group(1) in media:
            return media[whole.group(1)].data_url
        raise MediaError(f"media column(s) {', '.join(_STAND_IN.findall(body))} placed inside '{key}': put "
                         "{{column}} in a message's content (or as an image_url's url)")
    return body


def _content(value: Any, media: Mapping[str, Media]) -> Any:
    """A message's content with its stand-ins as parts."""
    if isinstance(value, str):
        return _parts(value, media) if _OPEN in value else value
    if isinstance(value, list):
        out: list[Any] = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and _OPEN in str(part.get("text", "")):
                out.extend(_parts(str(part["text"]), media))
            else:
                out.append(place(part, media, "content"))
        return out
    return place(value, media, "content")


def _parts(text: str, media: Mapping[str, Media]) -> list[dict[str, Any]]:
    pieces = _STAND_IN.split(text)  # text, name, text, name, ..., text
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            parts.append(chat_part(media[piece]))
        elif piece.strip():
            parts.append({"type": "text", "text": piece})
    return parts


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, WebP (VP8X) or JPEG from its header; None when not found."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"GIF") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[12:16] == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
    return None
