"""``input.sql``: a query's rows from a real PostgreSQL 15 (started here as user nobody on a free
port, stopped by PID) and from SQLite, with the database's types kept exactly; ``check`` names a
syntax error's position and a refused password without showing it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.storage_servers import Running, check, echo, records, running_postgres

pytestmark = pytest.mark.storage

PASSWORD = "pg-secret-password-31"


def config(sql: str, **database: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": "m", "prompt": "Say {{text}}",
            "input": {"sql": sql, "database": database}}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Running]:
    yield from running_postgres(PASSWORD)


def pg(server: Running, password: str = PASSWORD) -> dict[str, Any]:
    return {"url": f"postgresql://postgres@127.0.0.1:{server.port}/postgres", "password": password}


def test_postgres_types_arrive_exactly(postgres: Running) -> None:
    sql = ("SELECT id, text, price, at, doc, tags, note FROM (VALUES "
           "(1, 'first', 12345678901234.5678::numeric(20,4), '2025-01-02 03:04:05.123456+02'::timestamptz, "
           "'{\"a\": [1, 2], \"b\": {\"c\": null}}'::jsonb, ARRAY[1,2,3], NULL::text), "
           "(2, 'second', 0.1::numeric, '2025-06-30 23:59:59+00'::timestamptz, '\"just text\"'::jsonb, "
           "ARRAY[]::int[], 'x')) AS t(id, text, price, at, doc, tags, note) ORDER BY id")
    rows = records(config(sql, **pg(postgres)))
    assert [r["_status"] for r in rows] == ["ok", "ok"]
    first, second = rows
    assert first["price"] == Decimal("12345678901234.5678") and second["price"] == Decimal("0.1")
    assert first["at"] == "2025-01-02T01:04:05.123456+00:00"
    assert first["doc"] == {"a": [1, 2], "b": {"c": None}} and second["doc"] == "just text"
    assert first["tags"] == [1, 2, 3] and second["tags"] == []
    assert first["answer"] == "Say first" and first["note"] is None


def test_postgres_rows_stream_in_batches_and_resume_in_order(postgres: Running) -> None:
    sql = "SELECT g AS id, 'row ' || g AS text FROM generate_series(1, 2500) AS g ORDER BY g"
    cfg = config(sql, **pg(postgres))
    cfg["input"]["batch_size"] = 300
    assert [r["id"] for r in records(cfg)] == list(range(1, 2501))


def test_postgres_check_names_the_syntax_error_position(postgres: Running) -> None:
    status = check(config("SELECT id, text FROM pg_class WHRE id > 1", **pg(postgres)))
    assert status["status"] == "FAILED"
    assert status["message"] == ('input.sql: syntax error at or near "id" (line 1, column 36); fix the query')


def test_postgres_check_names_a_missing_table_and_a_refused_password(postgres: Running) -> None:
    status = check(config("SELECT text FROM tickets", **pg(postgres)))
    assert 'relation "tickets" does not exist (line 1, column 18)' in status["message"]
    status = check(config("SELECT 1 AS text", **pg(postgres, password="wrong-password-44")))
    assert status["status"] == "FAILED"
    assert "input.database: cannot connect to postgresql://127.0.0.1:" in status["message"]
    assert 'password authentication failed for user "postgres"' in status["message"]
    assert "wrong-password-44" not in status["message"] and PASSWORD not in status["message"]


def test_sqlite_rows(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE reviews (id INTEGER, text TEXT, stars REAL)")
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?)", [(i, f"review {i}", i / 2) for i in range(1, 6)])
    rows = records(config("SELECT * FROM reviews WHERE stars >= 1 ORDER BY id", url=f"sqlite:///{db}"))
    assert [(r["id"], r["text"], r["stars"], r["answer"]) for r in rows] == [
        (i, f"review {i}", i / 2, f"Say review {i}") for i in range(2, 6)]
    status = check(config("SELECT * FROM missing_table", url=f"sqlite:///{db}"))
    assert status["status"] == "FAILED"
    assert status["message"] == "input.sql: no such table: missing_table; fix the query"


def test_a_resumed_read_skips_the_rows_already_done_in_query_order(tmp_path: Path) -> None:
    from connector.config.load import load_config
    from connector.rows.opening import open_input

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, text TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"r{i}") for i in range(10, 0, -1)])
    cfg = load_config(config("SELECT * FROM t ORDER BY id", url=f"sqlite:///{db}"))
    table = open_input(cfg.input)
    assert table.count_rows() == 10
    assert [row["id"] for batch in table.batches(skip=7) for row in batch] == [8, 9, 10]


def discovered(cfg: dict[str, Any]) -> dict[str, Any]:
    """The properties ``discover`` declares for the stream."""
    import asyncio

    from connector.airbyte import commands

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.discover(cfg)]

    (message,) = asyncio.run(collect())
    return dict(message["catalog"]["streams"][0]["json_schema"]["properties"])


def test_sqlite_columns_are_typed_by_the_values_they_hold(tmp_path: Path) -> None:
    # ADBC's SQLite driver types a `LIMIT 0` result int64 in every column: discover said `integer` for text.
    db = tmp_path / "shop.db"
    rows = [(1, "first", 2.5, "2025-01-31", None), (2, "007", 3.0, "2025-02-01", None)]
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, text TEXT, price REAL, day TEXT, gone TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    cfg = config("SELECT * FROM t ORDER BY id", url=f"sqlite:///{db}")
    props = discovered(cfg)
    assert {name: props[name]["type"] for name in ("id", "text", "price", "day", "gone")} == {
        "id": ["null", "integer"], "text": ["null", "string"], "price": ["null", "number"],
        "day": ["null", "string"], "gone": ["null", "string"]}
    got = records(cfg)
    assert [(r["id"], r["text"], r["price"], r["day"], r["gone"]) for r in got] == rows
    assert isinstance(got[1]["price"], float) and isinstance(got[0]["id"], int)


def test_a_sqlite_column_of_mixed_value_types_is_refused_by_name(tmp_path: Path) -> None:
    # The driver would send 1 and 2.5 in one column as the text '1' and '2.500000e+00'.
    db = tmp_path / "mixed.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, text TEXT, amount)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(1, "a", 1), (2, "b", 2.5), (3, "c", "x")])
    status = check(config("SELECT * FROM t", url=f"sqlite:///{db}"))
    assert status["status"] == "FAILED"
    assert status["message"] == (
        "input.sql: column 'amount' holds SQLite values of more than one type (integer, real, text); SQLite types "
        "each value, not its column, and a value is never changed to fit one type. Cast it in the query "
        "(e.g. CAST(amount AS TEXT)) or select the types apart")
    assert records(config("SELECT id, text, CAST(amount AS TEXT) AS amount FROM t ORDER BY id",
                          url=f"sqlite:///{db}"))[1]["amount"] == "2.5"


def test_a_sqlite_column_null_in_its_first_rows_keeps_its_later_text(tmp_path: Path) -> None:
    # ADBC's driver typed the column int64 from its first 1,024 rows and stopped at 'late' (type mismatch).
    db = tmp_path / "late.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, text TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, None) for i in range(2000)] + [(2000, "late")])
    cfg = config("SELECT * FROM t ORDER BY id", url=f"sqlite:///{db}")
    cfg["prompt"] = "Say {{id}}"
    assert records(cfg)[-1]["text"] == "late"


@pytest.mark.parametrize("where", ["postgresql", "sqlite"])
def test_a_query_key_broken_is_named_with_both_rows_before_anything_is_asked(
        where: str, postgres: Running, tmp_path: Path) -> None:
    # The check reads only the key column now, numbering the rows as the query orders them.
    from tests.conftest import read_through

    sql = ("SELECT id, text FROM (VALUES (5, 'a'), (7, 'b'), (9, 'c'), (7, 'd')) AS t(id, text) "
           "ORDER BY text")
    if where == "sqlite":
        sql = ("SELECT id, text FROM (SELECT 5 AS id, 'a' AS text UNION ALL SELECT 7, 'b' UNION ALL "
               "SELECT 9, 'c' UNION ALL SELECT 7, 'd') AS t ORDER BY text")
    database = pg(postgres) if where == "postgresql" else {"url": f"sqlite:///{tmp_path / 'k.db'}"}
    cfg = config(sql, **database)
    cfg["input"]["primary_key"] = "id"
    asked: list[str] = []

    def endpoint(request: Any) -> Any:
        asked.append(request.url.path)
        return echo(request)

    messages, error = read_through(cfg, endpoint)
    assert error is not None and error.failure_type == "config_error"
    assert str(error).startswith("input.primary_key: rows 2 and 4 have the same 'id' (7)")
    assert [p for p in asked if not p.endswith("/models")] == []
    assert not [m for m in messages if m["type"] == "RECORD"]


def test_an_empty_text_key_is_named_although_the_database_counts_it_distinct(tmp_path: Path) -> None:
    # The database's screen (count(NULLIF(key, '')), count(DISTINCT key)) sends such rows to the exact check.
    db = tmp_path / "keys.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (code TEXT, text TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [("a1", "x"), ("", "y"), ("b2", "z")])
    cfg = config("SELECT * FROM t ORDER BY text", url=f"sqlite:///{db}")
    cfg["input"]["primary_key"] = "code"
    status = check(cfg)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("input.primary_key: row 2 has no value in column 'code'")
    cfg["input"]["sql"] = "SELECT * FROM t WHERE code <> '' ORDER BY text"
    assert [r["code"] for r in records(cfg)] == ["a1", "b2"]
