"""Incremental syncs by cursor over ``input.sql``, against a real PostgreSQL 15 (started here as user nobody
on a free port, stopped by PID) and SQLite: day 2, after INSERTs and UPDATEs of an ``updated_at``, enriches
exactly the new and changed rows, pays once for them (the fake server counts; the answer cache is off), and
a sync stopped among rows tied at one value resumes with the rest of them only."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ConfigError
from tests.storage_servers import Running, running_postgres
from tests.test_cursor_sync import Server, config, cursor_of, logs, sync

pytestmark = pytest.mark.storage

PASSWORD = "pg-cursor-secret-21"
SQL = "SELECT id, text, updated_at FROM tickets"
Execute = Callable[[str], None]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Running]:
    yield from running_postgres(PASSWORD)


def pg_execute(server: Running) -> Execute:
    import adbc_driver_postgresql.dbapi as pg

    def execute(sql: str) -> None:
        with pg.connect(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{server.port}/postgres") as con:
            with con.cursor() as cur:
                cur.execute(sql)
            con.commit()

    return execute


def sqlite_execute(path: Path) -> Execute:
    def execute(sql: str) -> None:
        with sqlite3.connect(path) as con:
            con.execute(sql)

    return execute


def day_two(execute: Execute, database: dict[str, Any], at: Callable[[str], str], stamp: str) -> None:
    """The scenario, on a table ``tickets`` whose updated_at values are written by ``at`` and come back as
    ``stamp`` shows them."""
    execute("INSERT INTO tickets VALUES (1, 'a', " + at("2025-01-01 10:00:00") + "), (2, 'b', " +
            at("2025-01-01 11:00:00") + "), (3, 'c', " + at("2025-01-01 09:00:00") + "), (4, 'd', " +
            at("2025-01-01 12:00:00") + "), (5, 'e', " + at("2025-01-01 12:00:00") + ")")
    cfg = config({"sql": SQL, "database": database, "cursor": "updated_at", "primary_key": "id"})
    server = Server()
    records, _, state = sync(cfg, server=server, every=1)
    assert [r["id"] for r in records] == [3, 1, 2, 4, 5] and len(server.asked) == 5  # in cursor order
    assert cursor_of(state)["value"] == stamp.format("2025-01-01", "12:00:00")
    assert cursor_of(state)["keys_at_value"] == ["4", "5"]
    execute("INSERT INTO tickets VALUES (6, 'f', " + at("2025-01-01 12:00:00") + "), (7, 'g', " +
            at("2025-01-02 08:00:00") + ")")
    execute("UPDATE tickets SET text = 'b2', updated_at = " + at("2025-01-01 13:00:00") + " WHERE id = 2")
    server = Server()
    records, messages, state = sync(cfg, state, server, every=1)
    assert [r["id"] for r in records] == [6, 2, 7] and server.asked == ["f", "b2", "g"]
    assert any(f"cursor updated_at: 7 rows read, 4 skipped as already enriched (at or before "
               f"'{stamp.format('2025-01-01', '12:00:00')}'), 3 enriched" in line for line in logs(messages))
    # Day 3: three rows tied at one value; the sync stops after two of them, the next one reads the third only.
    execute("INSERT INTO tickets VALUES " + ", ".join(f"({i}, 't{i}', {at('2025-01-03 00:00:00')})"
                                                      for i in (8, 9, 10)))
    records, _, state = sync({**cfg, "max_requests": 2}, state, every=1)
    assert [r["id"] for r in records] == [8, 9] and cursor_of(state)["keys_at_value"] == ["8", "9"]
    server = Server()
    records, _, state = sync(cfg, state, server)
    assert [r["id"] for r in records] == [10] and server.asked == ["t10"]
    server = Server()
    assert sync(cfg, state, server)[0] == [] and server.asked == []


def test_postgres_day_two_enriches_the_inserted_and_updated_rows_once(postgres: Running) -> None:
    execute = pg_execute(postgres)
    execute("DROP TABLE IF EXISTS tickets")
    execute("CREATE TABLE tickets (id int PRIMARY KEY, text text, updated_at timestamptz)")
    database = {"url": f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres", "password": PASSWORD}
    day_two(execute, database, lambda text: f"'{text}+00'", "{}T{}+00:00")


def test_sqlite_day_two_enriches_the_inserted_and_updated_rows_once(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    execute = sqlite_execute(path)
    execute("CREATE TABLE tickets (id integer PRIMARY KEY, text text, updated_at text)")
    day_two(execute, {"url": f"sqlite:///{path}"}, lambda text: f"'{text}'", "{} {}")


def test_a_cursor_the_query_does_not_have_is_named_with_the_query_columns(postgres: Running) -> None:
    execute = pg_execute(postgres)
    execute("DROP TABLE IF EXISTS tickets")
    execute("CREATE TABLE tickets (id int PRIMARY KEY, text text, updated_at timestamptz)")
    database = {"url": f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres", "password": PASSWORD}
    with pytest.raises(ConfigError, match=re.escape("input.cursor: column 'changed' is not in the input; its "
                                                    "columns are: id, text, updated_at")):
        sync(config({"sql": SQL, "database": database, "cursor": "changed"}))


def test_sqlite_number_cursor_is_bound_as_sqlite_compares_it(tmp_path: Path) -> None:
    path = tmp_path / "scores.db"
    execute = sqlite_execute(path)
    execute("CREATE TABLE scores (id integer PRIMARY KEY, text text, score real)")
    execute("INSERT INTO scores VALUES (1, 'a', 1.5), (2, 'b', 10.25)")
    cfg = config({"sql": "SELECT * FROM scores", "database": {"url": f"sqlite:///{path}"}, "cursor": "score",
                  "primary_key": "id"})
    _, _, state = sync(cfg)
    assert cursor_of(state)["type"] == "number" and cursor_of(state)["value"] == "10.25"
    execute("INSERT INTO scores VALUES (3, 'c', 10.25), (4, 'd', 9.5), (5, 'e', 11)")
    server = Server()
    records, _, _ = sync(cfg, state, server)
    assert [r["id"] for r in records] == [3, 5] and server.asked == ["c", "e"]


def test_a_killed_cursor_sync_resumes_with_every_row_once_ties_included(tmp_path: Path) -> None:
    """SIGKILL at seeded moments (tests/test_kill_resume.py's harness), resumed from the last STATE a destination
    saw: 7 rows share each updated_at, so the 1,000-row checkpoints fall inside groups of tied rows."""
    import json
    import os
    import random

    from tests.conftest import catalog_for
    from tests.fake_openai import spawn
    from tests.test_kill_resume import _run_round, _split

    rows = 3000
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE tickets (id integer PRIMARY KEY, text text, updated_at text)")
        con.executemany("INSERT INTO tickets VALUES (?, ?, ?)",
                        [(i, f"ticket {i}", f"2025-01-01 00:{i // 420:02d}:{i // 7 % 60:02d}") for i in range(rows)])
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_for(sync_mode="incremental")))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    rng = random.Random(2121)
    with spawn("--latency-ms", "30") as (url, _pid):
        config = tmp_path / "config.json"
        config.write_text(json.dumps({
            "url": url, "api_key": "sk-x", "model": "m", "prompt": "Answer {{text}}", "concurrency": 32,
            "cache": {"path": str(tmp_path / "answers.sqlite")},
            "input": {"sql": SQL, "database": {"url": f"sqlite:///{path}"}, "cursor": "updated_at",
                      "primary_key": "id", "batch_size": 333}}))
        committed: list[dict[str, Any]] = []
        printed_not_committed: set[int] = set()
        state: dict[str, Any] | None = None
        log: list[str] = []
        marks: list[dict[str, Any]] = []  # the cursor of the STATE each round ended with
        for round_number in range(4):
            args = ["read", "--config", str(config), "--catalog", str(catalog)]
            if state is not None:
                (tmp_path / "state.json").write_text(json.dumps([state["state"]]))
                args += ["--state", str(tmp_path / "state.json")]
            stdout, completed, how = _run_round(args, env, None if round_number == 3 else rng)
            records, last_state, after = _split(stdout)
            again = [r for r in records + after if r["id"] in printed_not_committed]
            assert all(r["_cached"] and r["_attempts"] == 0 for r in again), how  # paid once
            printed_not_committed.update(r["id"] for r in after)
            committed += records
            state = last_state or state
            mark = state["state"]["stream"]["stream_state"]["cursor"] if state else {"keys_at_value": []}
            marks.append(mark)
            log.append(f"round {round_number}: {how}; {len(records)} committed; mark {mark.get('value')} with "
                       f"{len(mark.get('keys_at_value', []))} keys")
            if completed:
                break
    ids = [r["id"] for r in committed]
    assert sorted(ids) == list(range(rows)), log  # every row once: none lost at a tie, none twice
    assert ids == sorted(ids, key=lambda i: (i // 7, i)), log  # in cursor order, ties by key
    tied = [len(m["keys_at_value"]) for m in marks[:-1]]
    assert any(0 < n < 7 for n in tied), log  # a kill came after a STATE saved inside a group of tied rows


def test_a_first_sync_of_an_empty_sqlite_table_does_not_pin_the_cursor_type(tmp_path: Path) -> None:
    # SQLite types values, not columns: with no row yet the cursor's type is a guess; a state that saved no
    # value cannot misplace a row, so the type the first rows bring is taken without a 'type changed' error.
    path = tmp_path / "shop.db"
    execute = sqlite_execute(path)
    execute("CREATE TABLE tickets (id integer PRIMARY KEY, text text, updated_at text)")
    cfg = config({"sql": SQL, "database": {"url": f"sqlite:///{path}"}, "cursor": "updated_at", "primary_key": "id"})
    records, _, state = sync(cfg)
    assert records == [] and cursor_of(state)["value"] is None
    execute("INSERT INTO tickets VALUES (1, 'a', '2025-01-01 10:00:00')")
    records, _, state = sync(cfg, state)
    assert [r["id"] for r in records] == [1] and cursor_of(state)["type"] == "string"
