"""The input table as a run sees it: a schema, a size estimate and batches of rows.

Files (:class:`~connector.rows.files.InputTable`) and standard input
(:class:`~connector.rows.stdin.StdinTable`) both provide it; the pipeline depends
on this protocol only: what is special about stdin (columns inferred once reading starts,
columns unknown to ``discover``) is said through it, so no caller asks which kind it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from connector.rows.fingerprint import InputFile

Row = dict[str, Any]


class Table(Protocol):
    """An input table (see the module doc)."""

    @property
    def schema(self) -> pa.Schema:
        """The columns and their Arrow types (for stdin: declared, or inferred once reading started)."""

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""

    @property
    def columns_known(self) -> bool:
        """The columns are known before reading (a file's; stdin's only when input.columns lists them)."""

    async def start(self) -> None:
        """Begin reading: stdin infers its columns from the first rows here; a file has nothing to do."""

    def estimate_rows(self) -> tuple[int, bool] | None:
        """(rows, is_estimate), or None when the size cannot be known before reading."""

    def count_rows(self) -> int | None:
        """The exact row count, or None when it cannot be known before reading (stdin)."""

    @property
    def notes(self) -> list[str]:
        """What the read should say about the input (columns kept under another name, ...)."""

    @property
    def files(self) -> tuple[InputFile, ...]:
        """The files the rows come from, in reading order, as they were when opened (none for stdin and
        inline rows): what a STATE's fingerprint names when the input changed."""

    def first_row(self) -> Row | None:
        """The row ``check`` renders the template with (a stand-in for stdin)."""

    def batches(self, skip: int = 0) -> Iterator[list[Row]] | AsyncIterator[list[Row]]:
        """Rows in input order, in lists, after skipping ``skip`` rows (async for stdin)."""
