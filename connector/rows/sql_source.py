"""``input.sql``: a query's rows from PostgreSQL or SQLite through ADBC, with the database's own types.

ADBC drivers hand back Arrow batches, so a column's type comes from the database, not from
guessing: integers, floats, text, booleans, dates, ``timestamptz`` (a zoned timestamp), arrays
(lists) and uuid flow through :mod:`arrow_values` like Parquet's. Two PostgreSQL types arrive as
text and are given their meaning here: ``numeric`` becomes an exact decimal (the rule of a
declared ``decimal`` column: a JSON number with every digit), ``json``/``jsonb`` the JSON value
it holds. The query is sent as written, never with values pasted into it; rows stream in the
driver's batches (PostgreSQL: COPY), never as a whole result.

Opening a table asks the database for the result's columns (the query prepared, not run:
PostgreSQL; on SQLite the query wrapped as ``SELECT * FROM (...) LIMIT 0``, for the names) and
the row count (``SELECT count(*) FROM (...)``). SQLite types values, not columns, and its driver
says int64 for every column of an empty result: there the count's pass also gathers each column's
storage classes (``typeof``), which give its type; a column holding more than one class is refused
(a value is never changed to fit), one holding only nulls is a null column (declared as text), and
its rows are read through the standard library's ``sqlite3`` with those types. A syntax error
is named with its line and column in the query as the database reports it. Resuming at row N
runs the query again and skips N rows: the query needs an ``ORDER BY`` that gives every row one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

from connector.config.database import DatabaseConnection
from connector.errors import InputError
from connector.rows import kinds
from connector.rows.arrow_values import column_values, json_schema_for, unsupported
from connector.rows.columns import SCHEMA_KEY, Column, flag, unfit_message
from connector.rows.table import Row

_PG_TYPE = "POSTGRESQL:type"
_JSON_SCHEMA: dict[str, Any] = {"type": ["null", "object", "array", "string", "number", "boolean"]}


def _connect(connection: DatabaseConnection) -> Any:
    try:
        if connection.driver == "sqlite":
            import adbc_driver_sqlite.dbapi as sqlite

            return sqlite.connect(connection.sqlite_path())
        import adbc_driver_postgresql.dbapi as postgresql

        return postgresql.connect(connection.postgres_uri())
    except Exception as exc:  # the driver's own error classes; every one is a failed connection
        raise InputError(f"input.database: cannot connect to {connection.shown()}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The database's message without the driver's prefixes and the echoed query."""
    text = re.split(r"\n(?:Query was|query):", str(exc), maxsplit=1)[0].strip()
    text = re.sub(r"^[A-Z_]+: (\[[^\]]*\] )?", "", text.split("\nLINE ", 1)[0])
    for prefix in ("Failed to prepare query:", "Failed to execute query:", "ERROR:"):
        text = text.strip().removeprefix(prefix)
    return re.sub(r"\s+", " ", text).strip()


def _position(exc: BaseException) -> str:
    """' (line L, column C)' from PostgreSQL's LINE/caret lines; '' when the database gave none."""
    match = re.search(r"\nLINE (\d+): (.*)\n( *)\^", str(exc))
    if not match:
        return ""
    column = len(match.group(3)) - len(f"LINE {match.group(1)}: ") + 1
    shown = match.group(2)
    return f" (line {match.group(1)}, column {column}{' of the shown part' if shown.startswith('...') else ''})"


_SQLITE_BATCH = 10_000  # rows fetched at once from SQLite
_PARAM = {"postgresql": "$1", "sqlite": "?"}


def _sqlite_value(start: Any, raw: Any) -> Any:
    """A parameter SQLite compares as its rows: a float for a decimal (SQLite has none), and a date or
    timestamp as the text the rows held (SQLite keeps them as text)."""
    if isinstance(start, Decimal):
        return float(start)
    return raw if isinstance(start, date) else start


_SQLITE_TYPES = {"integer": pa.int64(), "real": pa.float64(), "text": pa.string(), "blob": pa.binary()}


def _sqlite_type(name: str, held: str | None) -> pa.DataType:
    """One column's Arrow type from the storage classes its values have (``held``: SQLite's
    ``group_concat(DISTINCT typeof(...))``); null when every value is null. More than one class is
    refused: the driver would send 1 and 2.5 as the text '1' and '2.500000e+00', or stop mid-read."""
    classes = [c for c in _SQLITE_TYPES if c in (held or "").split(",")]
    if len(classes) > 1:
        held_types = ", ".join(classes)
        raise InputError(f"input.sql: column {name!r} holds SQLite values of more than one type ({held_types}); "
                         "SQLite types each value, not its column, and a value is never changed to fit one type. "
                         f"Cast it in the query (e.g. CAST({name} AS TEXT)) or select the types apart")
    return _SQLITE_TYPES[classes[0]] if classes else pa.null()


def _schema_meta(column: Column) -> dict[bytes, bytes]:
    return {SCHEMA_KEY: orjson.dumps(dict(column.schema))}


def _kind(field: pa.Field) -> str | None:
    meta = field.metadata or {}
    pg_type = meta.get(_PG_TYPE.encode(), b"").decode()
    return {"numeric": "numeric", "json": "json", "jsonb": "json"}.get(pg_type)


def _column(field: pa.Field, declared: Mapping[str, str]) -> Column:
    kind = declared.get(field.name)
    if kind is not None:
        return Column(field.name, kinds.json_schema(kind), kinds.arrow_type(kind), kind)
    special = _kind(field)
    if special == "numeric":
        return Column(field.name, kinds.json_schema("decimal"), kinds.arrow_type("decimal"), "decimal")
    if special == "json":
        return Column(field.name, _JSON_SCHEMA, pa.string(), "json")
    why = unsupported(field.type)
    if why:
        raise InputError(f"input.sql: column {field.name!r} is {field.type}: {why}, which cannot be sent or written "
                         "exactly. Cast it in the query (e.g. ::text), or declare it in input.columns")
    return Column(field.name, json_schema_for(field.type), field.type)


def _json_value(text: Any) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise kinds.Unfit(f"{text[:40]!r} is not JSON ({exc.msg})") from None


def quoted(name: str) -> str:
    """A column name as an SQL identifier (PostgreSQL and SQLite: double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


class SqlQuery:
    """The rows of one query, typed by the database."""

    def __init__(self, sql: str, connection: DatabaseConnection, declared: Mapping[str, str]) -> None:
        self._sql = sql.strip().rstrip(";")
        self._query, self._params = self._sql, tuple[Any, ...]()  # what batches() runs (narrow() may change it)
        self._connection = connection
        self._declared = dict(declared)
        with _connect(connection) as con, con.cursor() as cur:
            schema = self._schema(cur)
            if connection.driver == "sqlite":
                schema, self.rows = self._sqlite_typed(cur, schema)
            else:
                self.rows = self._count(cur)
        self.columns = [_column(f, self._declared) for f in schema]
        # numeric arrives as text, json as its text: each given its meaning once, like a declared column's.
        self._converters: dict[str, kinds.Convert] = {
            c.name: _json_value if c.kind == "json" else kinds.converter(c.kind, from_text=False)
            for c in self.columns if c.kind is not None}

    def _schema(self, cur: Any) -> pa.Schema:
        try:
            if self._connection.driver == "postgresql":
                return cur.adbc_execute_schema(self._sql)
            cur.execute(f"SELECT * FROM ({self._sql}) LIMIT 0")
            return cur.fetch_arrow_table().schema
        except Exception as exc:  # the driver's ProgrammingError / OperationalError / ...
            raise InputError(f"input.sql: {_reason(exc)}{_position(exc)}; fix the query") from None

    def _sqlite_typed(self, cur: Any, schema: pa.Schema) -> tuple[pa.Schema, int]:
        """The result's columns typed by the SQLite storage classes of their values, and its row count, in
        one pass: a `LIMIT 0` result says int64 for every column, since the driver types from rows."""
        classes = ", ".join(f"group_concat(DISTINCT typeof(q.{quoted(n)}))" for n in schema.names)
        try:
            cur.execute(f"SELECT count(*){', ' if classes else ''}{classes} FROM ({self._sql}) AS q")
            total, *found = cur.fetchone()
        except Exception as exc:
            raise InputError(f"input.sql: counting its rows failed: {_reason(exc)}") from None
        fields = [pa.field(name, _sqlite_type(name, held)) for name, held in zip(schema.names, found, strict=True)]
        return pa.schema(fields), int(total)

    def _count(self, cur: Any) -> int:
        try:
            cur.execute(f"SELECT count(*) FROM ({self._sql}) AS counted")
            return int(cur.fetchone()[0])
        except Exception as exc:
            raise InputError(f"input.sql: counting its rows failed: {_reason(exc)}") from None

    def cursor_field(self, column: str) -> pa.Field | None:
        """The Arrow field of ``column`` as its values come; None when the query has no such column."""
        found = next((c for c in self.columns if c.name == column), None)
        return None if found is None else pa.field(column, found.arrow, metadata=_schema_meta(found))

    def narrow(self, column: str, start: Any, order_also: str | None, raw: Any = None) -> tuple[int, int]:
        """Read only the rows whose ``column`` is ``>= start`` (every row when ``start`` is None, nulls
        first), in the column's order (then ``order_also``'s); ``start`` is a bound parameter, never
        pasted into the query (``raw``: the value as the rows held it). Returns (rows before ``start``,
        rows with a null ``column``)."""
        mark = _PARAM[self._connection.driver]
        if self._connection.driver == "sqlite" and start is not None:
            start = _sqlite_value(start, raw)
        at = f"q.{quoted(column)}"
        order = f" ORDER BY {at}{' NULLS FIRST' if start is None else ''}" + (
            f", q.{quoted(order_also)}" if order_also else "")
        where = "" if start is None else f" WHERE {at} >= {mark}"
        self._query, self._params = f"SELECT * FROM ({self._sql}) AS q{where}{order}", (
            () if start is None else (start,))
        counted = f"sum(CASE WHEN {at} >= {mark} THEN 1 ELSE 0 END)" if start is not None else "count(*)"
        with _connect(self._connection) as con, con.cursor() as cur:
            try:
                cur.execute(f"SELECT count(*), sum(CASE WHEN {at} IS NULL THEN 1 ELSE 0 END), {counted} "
                            f"FROM ({self._sql}) AS q", self._params)
                total, nulls, selected = (int(n or 0) for n in cur.fetchone())
            except Exception as exc:
                raise InputError(f"input.cursor: reading the rows after the saved cursor failed: {_reason(exc)}; "
                                 "the column's type may have changed since the STATE was saved") from None
        self.rows = selected
        return total - selected - (0 if start is None else nulls), 0 if start is None else nulls

    def batches(self, skip: int, size: int, names: Mapping[str, str]) -> Iterator[list[Row]]:
        """The query's rows after ``skip`` rows, in lists of up to ``size``."""
        done = 0
        for batch in self._record_batches(self._query, self.columns):
            first, done = done, done + batch.num_rows
            if done <= skip:
                continue
            if first < skip:
                batch, first = batch.slice(skip - first), skip
            for start in range(0, batch.num_rows, size):
                yield self._rows(batch.slice(start, size), first + start, names, self.columns)

    def key_batches(self, key: str, size: int, names: Mapping[str, str]) -> Iterator[list[Row]]:
        """The rows holding only the column named ``key`` (as the records name it), in query order: what
        the primary-key check reads, one column sent by the database instead of every column. None at all
        when the database itself shows the keys whole and unique (:meth:`_keys_shown_unique`)."""
        (column,) = [c for c in self.columns if names.get(c.name, c.name) == key]
        if self._keys_shown_unique(column):
            return
        query = f"SELECT q.{quoted(column.name)} FROM ({self._query}) AS q"
        done = 0
        for batch in self._record_batches(query, [column]):
            for start in range(0, batch.num_rows, size):
                yield self._rows(batch.slice(start, size), done + start, names, [column])
            done += batch.num_rows

    def _keys_shown_unique(self, column: Column) -> bool:
        """True when one aggregate query shows every row has a key, none empty, none twice: only for an
        integer or text column read as is, whose values are equal in the database exactly when their texts
        are equal in :mod:`keys` (a collation that finds more equal only sends the rows to the exact check)."""
        kind = column.arrow
        if column.kind is not None or not (pa.types.is_integer(kind) or pa.types.is_string(kind)
                                           or pa.types.is_large_string(kind)):
            return False
        at = f"q.{quoted(column.name)}"
        present = at if pa.types.is_integer(kind) else f"NULLIF({at}, '')"
        with _connect(self._connection) as con, con.cursor() as cur:
            try:
                cur.execute(f"SELECT count(*), count({present}), count(DISTINCT {at}) FROM ({self._query}) AS q",
                            self._params)
                total, keyed, distinct = (int(n or 0) for n in cur.fetchone())
            except Exception as exc:
                raise InputError(f"input.primary_key: checking the keys failed: {_reason(exc)}") from None
        return total == keyed == distinct

    def _record_batches(self, query: str, columns: list[Column]) -> Iterator[pa.RecordBatch]:
        """``query``'s Arrow batches (run with the narrowed query's parameters), ``columns`` its columns."""
        if self._connection.driver == "sqlite":
            yield from self._sqlite_batches(query, columns)
            return
        with _connect(self._connection) as con, con.cursor() as cur:
            try:
                cur.execute(query, self._params)
                reader = cur.fetch_record_batch()
            except Exception as exc:
                raise InputError(f"input.sql: {_reason(exc)}{_position(exc)}") from None
            yield from reader

    def _sqlite_batches(self, query: str, columns: list[Column]) -> Iterator[pa.RecordBatch]:
        """SQLite's rows through the standard library, each column built with the type decided from all its
        values: ADBC's driver types a column from its first 1,024 rows and stops at a later value of another
        type (a text column whose first rows are null)."""
        import sqlite3

        schema = pa.schema([pa.field(c.name, c.arrow) for c in columns])
        with closing(sqlite3.connect(self._connection.sqlite_path())) as con:
            try:
                cur = con.execute(query, self._params)
            except sqlite3.Error as exc:
                raise InputError(f"input.sql: {_reason(exc)}") from None
            while rows := cur.fetchmany(_SQLITE_BATCH):
                values = zip(*rows, strict=True)
                arrays = [pa.array(list(v), f.type) for v, f in zip(values, schema, strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _rows(self, batch: pa.RecordBatch, first: int, names: Mapping[str, str], columns: list[Column]) -> list[Row]:
        values: list[list[Any]] = []
        unfit: dict[int, list[str]] = {}
        for column in columns:
            got, problems = column_values(batch.column(batch.schema.get_field_index(column.name)))
            for i, reason in problems.items():
                unfit.setdefault(i, []).append(unfit_message(column.name, reason, None))
            convert = self._converters.get(column.name)
            if convert is not None:
                got, bad = kinds.convert_all(got, convert)
                for i, reason in bad.items():
                    unfit.setdefault(i, []).append(unfit_message(column.name, reason, self._declared.get(column.name)))
            values.append(got)
        out = [names.get(c.name, c.name) for c in columns]
        rows = [dict(zip(out, row, strict=True)) for row in zip(*values, strict=True)]
        flag(rows, unfit, lambda i: f"input.sql row {first + i + 1}")
        return rows
