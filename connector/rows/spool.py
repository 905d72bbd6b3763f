"""Inputs that can be read only once, or should be: a pipe or a remote CSV/JSONL file copied once into
a temporary file, a device refused.

A table is read twice (the scan decides the columns, then the rows are read), and a
resumed sync reads rows 1..N again. A named pipe (what bash's ``<(zcat data.csv.gz)``
gives) is empty the second time, so opening it again would read nothing or wait
forever for a writer. Such a path is copied once into a temporary file, up to
``input.spool_max_mb``, and read from there; a character or block device
(``/dev/zero``, which never ends) is no table and is refused at once.

A remote CSV or JSONL file (S3, GCS, Azure, HTTPS, SFTP) is read three times too (the encoding
check, the type scan, the rows): each pass would be a download, so it is downloaded once, by one
sequential read, into the same kind of temporary file (:meth:`Spool.downloaded`), up to the same
limit. Messages still name the remote file. A Parquet file is never copied: it is read by ranges.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import replace
from typing import BinaryIO

import pyarrow as pa

from connector.errors import InputError
from connector.rows.source_file import SourceFile

_CHUNK = 1 << 20


class Spool:
    """The temporary copies of one table's once-only inputs; removed when the table is dropped."""

    def __init__(self, limit_mb: int) -> None:
        self._limit = limit_mb << 20
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._made = 0  # temporary files made
        self.notes: list[str] = []

    def readable_again(self, path: str) -> str:
        """``path`` when it is a regular file; a copy of a pipe's bytes; InputError for a device."""
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise InputError(f"input.path: cannot read '{path}': {exc.strerror or exc}") from None
        if stat.S_ISREG(mode):
            return path
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise InputError(f"input.path: '{path}' is a device, not a file of rows (a device such as /dev/zero "
                             "never ends); give a CSV, JSONL or Parquet file, or '-' for standard input")
        return self._copy(path)

    def _copy(self, path: str) -> str:
        target = self._target(os.path.splitext(path)[1])
        too_long = (f"input.path: '{path}' is a pipe longer than input.spool_max_mb ({self._limit >> 20:,} MB), the "
                    "most this run copies to read it; raise input.spool_max_mb, or give the file itself")
        try:
            with open(path, "rb") as src:
                copied = self._write(src, target, too_long)
        except OSError as exc:
            raise InputError(f"input.path: cannot copy the pipe '{path}' to {target}: {exc.strerror or exc}; "
                             "free space there (TMPDIR), or give the file itself") from None
        self.notes.append(f"input.path '{path}' can be read only once (a pipe): its {copied:,} bytes were copied "
                          f"to {target}, which the positions in messages name")
        return target

    def downloaded(self, source: SourceFile) -> SourceFile:
        """A remote file downloaded once into a temporary file, read from there under its own name."""
        target = self._target(source.suffix)
        too_long = (f"input.path: '{source.name}' is larger than input.spool_max_mb ({self._limit >> 20:,} MB), the "
                    "most this run downloads to read a remote CSV or JSONL file once; raise input.spool_max_mb, or "
                    "store the table as Parquet (read by ranges, never downloaded whole)")
        try:
            with source.open() as src:
                self._write(src, target, too_long)
        except OSError as exc:
            raise InputError(f"input.path: cannot download '{source.name}' to {target}: {exc.strerror or exc}; "
                             "check the connection, or free space there (TMPDIR)") from None
        return replace(source, stream=lambda: pa.OSFile(target, "rb"), seekable=lambda: pa.OSFile(target, "rb"))

    def _target(self, suffix: str) -> str:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="source-openai-compatible-")
        self._made += 1
        return os.path.join(self._folder.name, f"input-{self._made}{suffix}")

    def _write(self, src: BinaryIO, target: str, too_long: str) -> int:
        """Copy ``src`` into ``target``, at most the limit (InputError ``too_long`` past it); the bytes copied."""
        copied = 0
        with open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                copied += len(chunk)
                if copied > self._limit:
                    raise InputError(too_long)
                dst.write(chunk)
        return copied
