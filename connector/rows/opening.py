"""Opening the input table the config names, and numbering its rows: what every read starts with.

:func:`open_input` gives a :class:`~connector.rows.table.Table` (a file's, or standard input's);
callers use the protocol only, never the kind of table. :func:`numbered_rows` turns its batches
into (position, row) pairs from a starting position on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.files import Chooser, InputTable
from connector.rows.table import Row, Table

if TYPE_CHECKING:
    from connector.rows.cursor import CursorState
    from connector.rows.cursor_table import CursorTable


def open_input(config: InputConfig, stdin: BinaryIO | None = None, reserved: Collection[str] = (),
               cursor: CursorState | None = None, choose: Chooser | None = None) -> Table:
    """The input table the config names; stdin is only read once a read starts.

    ``reserved``: the names of the columns the run adds to each record; input columns with
    those names are kept under ``input.metadata_prefix``. With ``input.cursor`` set, the rows after
    the mark of ``cursor`` (the STATE's; every row without one): a
    :class:`~connector.rows.cursor_table.CursorTable`. ``choose``: which of the files listed to
    read (input.incremental files, :mod:`connector.pipeline.file_sync`); default all."""
    # Standard input's table, the cursor's and the key check are imported where used: check and
    # discover of a file import none of them (issue 25, cold start).
    if config.is_stdin:
        from connector.rows.stdin import StdinTable

        return StdinTable(config, stdin, reserved)  # its keys are checked as rows arrive
    opened = InputTable(config, reserved, choose)
    # A cursor sync checks the keys of the rows it reads: a changed row keeps its key on purpose.
    table = opened if config.cursor is None else _past_mark(opened, config, cursor)
    if config.primary_key is not None and config.primary_key in table.columns:
        from connector.rows.keys import check_keys

        # Before anything is sent: checking while reading would find a duplicate after paying for the rows
        # before it. A query's check reads only its key column (one pass of the query before the read's).
        rows = opened.key_batches(config.primary_key) if table is opened else table.batches()
        check_keys(rows, config.primary_key)
    return table


def _past_mark(opened: InputTable, config: InputConfig, cursor: CursorState | None) -> CursorTable:
    """The rows after the mark of ``cursor``: a cursor sync's table."""
    from connector.rows.cursor_table import CursorTable

    return CursorTable(opened, config, cursor)


def numbered_rows(
    batches: Iterator[list[Row]] | AsyncIterator[list[Row]],
    start: int,
    stop: Callable[[], bool],
    limit: int | None = None,
) -> Iterator[tuple[int, Row]] | AsyncIterator[tuple[int, Row]]:
    """(position, row) pairs from ``start`` on, until the batches end, ``stop()`` says so or
    ``limit`` rows of the input (input.limit, a sample) have been numbered.

    Stays a plain iterator over a file's batches (no await per row) and becomes an async
    one over stdin's.
    """
    if isinstance(batches, AsyncIterator):
        return _numbered_async(batches, start, stop, limit)
    return _numbered(batches, start, stop, limit)


def _numbered(batches: Iterator[list[Row]], start: int, stop: Callable[[], bool],
              limit: int | None) -> Iterator[tuple[int, Row]]:
    position = start
    if limit is not None and position >= limit:
        return  # not one batch is read: a sample already done reads nothing
    for batch in batches:
        for row in batch:
            if stop() or (limit is not None and position >= limit):
                return
            yield position, row
            position += 1


async def _numbered_async(batches: AsyncIterator[list[Row]], start: int,
                          stop: Callable[[], bool], limit: int | None) -> AsyncIterator[tuple[int, Row]]:
    position = start
    if limit is not None and position >= limit:
        return
    async for batch in batches:
        for row in batch:
            if stop() or (limit is not None and position >= limit):
                return
            yield position, row
            position += 1


def row_for_check(config: InputConfig, template: Any, reserved: Collection[str] = ()) -> Row | None:
    """The row ``check`` renders the template with, after checking the template's and the primary
    key's columns.

    A file's first row; for stdin, which ``check`` never reads, a stand-in row with an
    empty value of each declared column's type (of each template column when none are declared).
    """
    table = open_input(config, reserved=reserved)
    if not table.columns_known:
        return dict.fromkeys(template.columns, "")
    template.check_columns(table.columns)
    key = config.primary_key
    if key is not None and key not in table.columns:
        raise InputError(f"input.primary_key: column {key!r} is not in the input; its columns are: "
                         f"{', '.join(table.columns) or '(none)'}")
    return table.first_row()
