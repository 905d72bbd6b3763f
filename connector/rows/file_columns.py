"""The columns a row carries from its file with ``input.incremental: files``: which file, when it was
modified, which row of it.

With files read by file, a row's position in a sync (``_row_number``) starts again at 1 every sync, so
it identifies nothing across syncs. Each row therefore carries, as Airbyte's file-based sources add
them, ``_ab_source_file_url`` (the file's URI) and ``_ab_source_file_last_modified`` (its modification
time, UTC, ISO 8601 with microseconds and ``Z``), and ``_ab_source_file_row`` (its 1-based row in
that file): the records' primary key is (``_ab_source_file_url``, ``_ab_source_file_row``) unless
``input.primary_key`` names one, and the stream's cursor is ``_ab_source_file_last_modified``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from itertools import accumulate

import pyarrow as pa

from connector.errors import InputError
from connector.rows.columns import Column
from connector.rows.fingerprint import InputFile
from connector.rows.table import Row

FILE_URL = "_ab_source_file_url"
FILE_MODIFIED = "_ab_source_file_last_modified"
FILE_ROW = "_ab_source_file_row"

FILE_COLUMNS = (
    Column(FILE_URL, {"type": "string", "description": "the file the row was read from"}, pa.string()),
    Column(FILE_MODIFIED, {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone",
                           "description": "when that file was last modified (UTC)"}, pa.string()),
    Column(FILE_ROW, {"type": "integer", "description": "1-based row of the row in that file"}, pa.int64()),
)


def with_file_columns(columns: list[Column]) -> list[Column]:
    """The input's columns and the three above; InputError when the input has one of their names."""
    taken = [c.name for c in columns if c.name in (FILE_URL, FILE_MODIFIED, FILE_ROW)]
    if taken:
        raise InputError(f"input.incremental files: the input has a column named {taken[0]!r}, which this mode "
                         "adds to every row (the file it came from); rename that column, or use "
                         "input.incremental rows")
    return [*columns, *FILE_COLUMNS]


def modified(mtime_ns: int) -> str:
    """A modification time as Airbyte's file-based sources write it: ``2025-01-31T10:00:00.000000Z``."""
    whole = datetime.fromtimestamp(mtime_ns // 10**9, timezone.utc).replace(microsecond=mtime_ns // 1000 % 10**6)
    return whole.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tagged(batches: Iterator[list[Row]], files: Sequence[InputFile], skip: int) -> Iterator[list[Row]]:
    """The batches (rows after ``skip`` of these files, in order), each row given its file's columns."""
    ends = list(accumulate(f.rows for f in files))
    times = [modified(f.mtime_ns) for f in files]
    index, at = skip, 0
    for batch in batches:
        for row in batch:
            while index >= ends[at]:
                at += 1
            row[FILE_URL], row[FILE_MODIFIED] = files[at].name, times[at]
            row[FILE_ROW] = index - (ends[at] - files[at].rows) + 1
            index += 1
        yield batch
