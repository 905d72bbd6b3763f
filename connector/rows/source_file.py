"""One input file wherever it lives (:class:`SourceFile`), and what every location shares.

A location module (:mod:`locations` for local files, :mod:`object_store`, :mod:`https_files`,
:mod:`sftp_files`) makes these; the readers (:mod:`csv_source`, :mod:`jsonl_source`,
:mod:`parquet_source`, :mod:`encoding`) only ever open them.
"""

from __future__ import annotations

import fnmatch
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
STREAM_BUFFER = 1 << 20  # what a remote stream reads per request (pyarrow's and Python's readers alike)


@dataclass(frozen=True)
class SourceFile:
    """One input file: its name in messages, its size, modification time and ETag, and how to open it.

    ``stream`` / ``seekable`` open a remote file (an Arrow NativeFile or a Python binary file);
    both are None for a local file, which is opened by its path.
    """

    name: str
    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    stream: Callable[[], Any] | None = None
    seekable: Callable[[], Any] | None = None

    @property
    def is_local(self) -> bool:
        return self.stream is None

    @property
    def suffix(self) -> str:
        return Path(self.name.split("?", 1)[0]).suffix.lower()

    def open(self) -> BinaryIO:
        """The bytes from the first on, as a buffered Python binary file (``readlines`` works)."""
        if self.stream is None:
            return open(self.name, "rb")
        return io.BufferedReader(_Raw(self.stream()), STREAM_BUFFER)

    def arrow(self) -> Any:
        """What Arrow's sequential readers take: the local path, or a remote stream."""
        return self.name if self.stream is None else self.stream()

    def random(self) -> Any:
        """What Parquet's reader takes: the local path, or a remote file read by ranges."""
        return self.name if self.seekable is None else self.seekable()


class _Raw(io.RawIOBase):
    """Any object with ``read(n)`` (an Arrow NativeFile, an SFTP file) as a raw stream for BufferedReader."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


def has_pattern(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def matching(names: list[str], pattern: str) -> list[str]:
    """The names a glob matches (``**`` crosses folders, ``*`` too, as fnmatch does)."""
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def readable_kind(name: str) -> bool:
    return Path(name.split("?", 1)[0]).suffix.lower() in EXTENSIONS
