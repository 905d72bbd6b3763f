"""Inputs that can be read only once: a pipe copied once into a temporary file, a device refused.

A table is read twice (the scan decides the columns, then the rows are read), and a
resumed sync reads rows 1..N again. A named pipe (what bash's ``<(zcat data.csv.gz)``
gives) is empty the second time, so opening it again would read nothing or wait
forever for a writer. Such a path is copied once into a temporary file, up to
``input.spool_max_mb``, and read from there; a character or block device
(``/dev/zero``, which never ends) is no table and is refused at once.
"""

from __future__ import annotations

import os
import stat
import tempfile

from connector.errors import InputError

_CHUNK = 1 << 20


class Spool:
    """The temporary copies of one table's once-only inputs; removed when the table is dropped."""

    def __init__(self, limit_mb: int) -> None:
        self._limit = limit_mb << 20
        self._folder: tempfile.TemporaryDirectory[str] | None = None
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
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="source-openai-compatible-")
        suffix = os.path.splitext(path)[1]
        target = os.path.join(self._folder.name, f"input-{len(self.notes) + 1}{suffix}")
        copied = 0
        try:
            with open(path, "rb") as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    copied += len(chunk)
                    if copied > self._limit:
                        raise InputError(f"input.path: '{path}' is a pipe longer than input.spool_max_mb "
                                         f"({self._limit >> 20:,} MB), the most this run copies to read it; raise "
                                         "input.spool_max_mb, or give the file itself")
                    dst.write(chunk)
        except OSError as exc:
            raise InputError(f"input.path: cannot copy the pipe '{path}' to {target}: {exc.strerror or exc}; "
                             "free space there (TMPDIR), or give the file itself") from None
        self.notes.append(f"input.path '{path}' can be read only once (a pipe): its {copied:,} bytes were copied "
                          f"to {target}, which the positions in messages name")
        return target
