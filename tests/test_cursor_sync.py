"""Incremental syncs by cursor (``input.cursor``) over files: a day-2 sync enriches exactly the rows added or
changed since day 1, pays once for them (the fake server counts requests; the answer cache is off), keeps
the rows tied at the boundary value neither lost nor enriched twice, compares values in the column's
type, and refuses a state from another input, column or type."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.airbyte import commands
from connector.airbyte.protocol import Message
from connector.errors import CatalogError, ConfigError, StateError
from connector.pipeline.run_loop import Checkpointing
from tests.conftest import catalog_for, chat_reply, mock_transport


class Server:
    """A fake endpoint that answers 'Say <text>' and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # discover's model listing
            return httpx.Response(404)
        prompt = json.loads(request.content)["messages"][-1]["content"]
        self.asked.append(prompt)
        return httpx.Response(200, json=chat_reply(prompt))


def config(input_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": "m", "prompt": "{{text}}",
            "cache": {"enabled": False}, "input": input_, **extra}


def sync(cfg: dict[str, Any], state: Any = None, server: Server | None = None, *, catalog: Any = None,
         every: int = 1000) -> tuple[list[dict[str, Any]], list[Message], Any]:
    """(records, all messages, the last STATE as a --state file holds it) of one read."""
    async def collect() -> list[Message]:
        return [m async for m in commands.read(cfg, catalog or catalog_for(sync_mode="incremental"), state,
                                               mock_transport(server or Server()), Checkpointing(rows=every))]

    messages = asyncio.run(collect())
    states = [m for m in messages if m["type"] == "STATE"]
    return ([m["record"]["data"] for m in messages if m["type"] == "RECORD"], messages,
            [states[-1]["state"]] if states else None)


def cursor_of(state: Any) -> dict[str, Any]:
    return dict(state[0]["stream"]["stream_state"]["cursor"])


def logs(messages: list[Message]) -> list[str]:
    return [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def write_csv(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "text", "updated_at"])
        writer.writerows(rows)
    return path


DAY1 = [(1, "a", "2025-01-01T10:00:00Z"), (2, "b", "2025-01-01T11:00:00Z"), (3, "c", "2025-01-01T09:00:00Z"),
        (4, "d", "2025-01-01T12:00:00Z"), (5, "e", "2025-01-01T12:00:00Z")]


def test_day_two_enriches_exactly_the_new_and_changed_rows_once_with_ties_at_the_boundary(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", DAY1)
    cfg = config({"path": str(data), "cursor": "updated_at", "primary_key": "id"})
    server = Server()
    records, _, state = sync(cfg, server=server)
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5] and len(server.asked) == 5
    saved = cursor_of(state)
    assert (saved["value"], saved["keys_at_value"], saved["type"]) == ("2025-01-01T12:00:00Z", ["4", "5"], "timestamp")
    assert state[0]["stream"]["stream_state"]["position"] == 0
    # Day 2: row 2 edited (new updated_at), row 6 lands on the boundary value, row 7 after it; order shuffled.
    write_csv(data, [(7, "g", "2025-01-02T08:00:00Z"), DAY1[0], (2, "b2", "2025-01-01T13:00:00Z"), DAY1[2],
                     DAY1[3], (6, "f", "2025-01-01T12:00:00Z"), DAY1[4]])
    server = Server()
    records, messages, state = sync(cfg, state, server)
    assert [r["id"] for r in records] == [7, 2, 6] and sorted(server.asked) == ["b2", "f", "g"]
    assert cursor_of(state)["value"] == "2025-01-02T08:00:00Z" and cursor_of(state)["keys_at_value"] == ["7"]
    summary = next(line for line in logs(messages) if "rows/s" in line)
    assert ("cursor updated_at: 7 rows read, 4 skipped as already enriched (at or before '2025-01-01T12:00:00Z'), "
            "3 enriched; highest updated_at enriched: '2025-01-02T08:00:00Z'") in summary
    server = Server()
    records, _, _ = sync(cfg, state, server)  # day 3, nothing changed: nothing is asked
    assert records == [] and server.asked == []


def test_timestamps_compare_as_instants_and_integers_as_numbers_not_as_text(tmp_path: Path) -> None:
    rows = [{"id": 9, "text": "a", "at": "2025-01-01T10:00:00+02:00"}]  # 08:00 UTC
    timestamps = {"at": "timestamp"}  # JSON text is text unless declared (the typing rule)
    cfg = config({"rows": rows, "cursor": "at", "columns": timestamps})
    _, _, state = sync(cfg)
    later = {"id": 10, "text": "b", "at": "2025-01-01T08:30:00Z"}  # as text it sorts before '2025-01-01T10...'
    cfg = config({"rows": [*rows, later], "cursor": "at", "columns": timestamps})
    records, _, _ = sync(cfg, state)
    assert [r["text"] for r in records] == ["b"]
    by_id = config({"rows": rows, "cursor": "id"})
    _, _, state = sync(by_id)
    records, _, state = sync(config({"rows": [*rows, later], "cursor": "id"}), state)  # 10 > 9, though "10" < "9"
    assert [r["text"] for r in records] == ["b"] and cursor_of(state)["value"] == 10


def test_rows_without_a_key_are_told_apart_by_their_hash_at_the_boundary() -> None:
    rows = [{"text": "a", "n": 1}, {"text": "b", "n": 2}, {"text": "c", "n": 2}]
    _, _, state = sync(config({"rows": rows, "cursor": "n"}))
    assert cursor_of(state)["keyed_by"] == "row_sha256" and len(cursor_of(state)["keys_at_value"]) == 2
    server = Server()
    records, messages, _ = sync(config({"rows": [*rows, {"text": "d", "n": 2}], "cursor": "n"}), state, server)
    assert [r["text"] for r in records] == ["d"] and server.asked == ["d"]
    assert any("without input.primary_key: _row_number counts the rows of each sync" in line for line in logs(messages))


def test_a_sync_stopped_midway_resumes_inside_its_selection_and_saves_the_mark_only_at_the_end(
        tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", DAY1)
    cfg = config({"path": str(data), "cursor": "updated_at", "primary_key": "id"}, max_requests=2)
    records, _, state = sync(cfg, every=1)
    assert [r["id"] for r in records] == [1, 2]
    stream_state = state[0]["stream"]["stream_state"]
    # Rows 1-2 are done but row 3 (09:00) is not: the mark cannot move yet.
    assert stream_state["position"] == 2 and cursor_of(state)["selected_from"] == {"value": None, "keys_at_value": []}
    assert cursor_of(state)["value"] == "2025-01-01T11:00:00Z"
    del cfg["max_requests"]
    server = Server()
    records, _, state = sync(cfg, state, server)
    assert [r["id"] for r in records] == [3, 4, 5] and server.asked == ["c", "d", "e"]
    assert "selected_from" not in cursor_of(state) and state[0]["stream"]["stream_state"]["position"] == 0
    assert cursor_of(state)["keys_at_value"] == ["4", "5"]


def test_null_cursor_values_are_read_by_the_first_sync_and_skipped_and_counted_later() -> None:
    rows = [{"id": 1, "text": "a", "v": None}, {"id": 2, "text": "b", "v": 5}]
    records, _, state = sync(config({"rows": rows, "cursor": "v", "primary_key": "id"}))
    assert [r["id"] for r in records] == [1, 2]
    more = [*rows, {"id": 3, "text": "c", "v": None}, {"id": 4, "text": "d", "v": 6}]
    records, messages, _ = sync(config({"rows": more, "cursor": "v", "primary_key": "id"}), state)
    assert [r["id"] for r in records] == [4]
    assert any("1 skipped as already enriched (at or before 5), 2 skipped with a null v, 1 enriched" in line
               for line in logs(messages))


def test_parquet_timestamps_with_a_zone_are_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    moments = pa.array([1_700_000_000_000_000, 1_700_000_100_000_000], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"text": ["a", "b"], "at": moments}), path)
    cfg = config({"path": str(path), "cursor": "at"})
    _, _, state = sync(cfg)
    assert cursor_of(state)["value"] == "2023-11-14T22:15:00+00:00"
    later = pa.array([*moments.to_pylist(), 1_700_000_100_000_001], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"text": ["a", "b", "c"], "at": later}), path)
    records, _, _ = sync(cfg, state)
    assert [r["text"] for r in records] == ["c"]


def test_discover_declares_the_cursor_and_a_catalog_may_pick_it() -> None:
    rows = [{"id": 1, "text": "a", "v": 1}]

    async def catalog(cfg: dict[str, Any]) -> dict[str, Any]:
        messages = [m async for m in commands.discover(cfg, mock_transport(Server()))]
        return dict(messages[-1]["catalog"]["streams"][0])

    declared = asyncio.run(catalog(config({"rows": rows, "cursor": "v"})))
    assert declared["source_defined_cursor"] is True and declared["default_cursor_field"] == ["v"]
    assert declared["supported_sync_modes"] == ["full_refresh", "incremental"]
    plain = asyncio.run(catalog(config({"rows": rows})))
    assert plain["source_defined_cursor"] is False and plain["default_cursor_field"] == ["_row_number"]
    picked = catalog_for(sync_mode="incremental")
    picked["streams"][0]["cursor_field"] = ["v"]
    _, _, state = sync(config({"rows": rows}), catalog=picked)
    assert cursor_of(state)["column"] == "v"
    picked["streams"][0]["cursor_field"] = ["id"]
    with pytest.raises(CatalogError, match=re.escape("cursor_field ['id'] but input.cursor is 'v'")):
        sync(config({"rows": rows, "cursor": "v"}), catalog=picked)


def test_full_refresh_reads_every_row_whatever_the_cursor_state() -> None:
    rows = [{"id": 1, "text": "a", "v": 1}, {"id": 2, "text": "b", "v": 2}]
    cfg = config({"rows": rows, "cursor": "v"})
    _, _, state = sync(cfg)
    records, _, _ = sync(cfg, state, catalog=catalog_for(sync_mode="full_refresh"))
    assert [r["id"] for r in records] == [1, 2]


def test_bad_cursor_configs_and_states_are_config_errors_saying_what_to_do(tmp_path: Path) -> None:
    rows = [{"id": 1, "text": "a", "v": 1}]
    with pytest.raises(ConfigError, match=re.escape("input.cursor: column 'updated' is not in the "
                                                    "input; its columns are: id, text, v")):
        sync(config({"rows": rows, "cursor": "updated"}))
    _, _, state = sync(config({"rows": rows, "cursor": "v"}))
    retyped = [{"id": 1, "text": "a", "v": "x"}]
    with pytest.raises(ConfigError, match=r"the state's cursor is 'v' \(integer\), the config's is 'v' \(string\)"):
        sync(config({"rows": retyped, "cursor": "v"}), state)
    data = write_csv(tmp_path / "t.csv", DAY1)
    with pytest.raises(StateError, match="cursor was saved for another input"):
        sync(config({"path": str(data), "cursor": "id"}), state)
    with pytest.raises(StateError, match=re.escape("written by a sync with input.cursor 'v'")):
        sync(config({"rows": rows}), state)
    _, _, by_row = sync(config({"rows": rows}))
    with pytest.raises(StateError, match=re.escape("written by a sync without input.cursor")):
        sync(config({"rows": rows, "cursor": "v"}), by_row)
    nested = [{"id": 1, "text": "a", "v": {"x": 1}}]
    with pytest.raises(ConfigError, match="column 'v' holds object values, which cannot order rows"):
        sync(config({"rows": nested, "cursor": "v"}))


def test_a_changed_request_between_cursor_syncs_is_seen_by_on_request_change() -> None:
    rows = [{"id": 1, "text": "a", "v": 1}]
    _, _, state = sync(config({"rows": rows, "cursor": "v"}))
    more = [*rows, {"id": 2, "text": "b", "v": 2}]
    records, messages, _ = sync(config({"rows": more, "cursor": "v"}, prompt="Say {{text}}"), state)
    assert [r["answer"] for r in records] == ["Say b"]
    assert any("the request changed since the last sync (prompt); the rows up to v 1 keep the answers" in line
               for line in logs(messages))
    records, _, _ = sync(config({"rows": more, "cursor": "v"}, prompt="Say {{text}}", on_request_change="reenrich"),
                         state)
    assert [r["answer"] for r in records] == ["Say a", "Say b"]


def test_parquet_row_groups_wholly_before_the_mark_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    day1 = {"text": ["a", "b", "c", "d"], "n": [1, 2, 3, 4]}
    pq.write_table(pa.table(day1), path, row_group_size=2)
    cfg = config({"path": str(path), "cursor": "n"})
    _, _, state = sync(cfg)
    pq.write_table(pa.table({"text": [*day1["text"], "e"], "n": [*day1["n"], 5]}), path, row_group_size=2,
                   compression="none")
    # Damage the first row group's pages (n in 1..2, all before the mark 4): reading it would fail the sync.
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    with path.open("r+b") as damaged:
        damaged.seek(chunk.data_page_offset)
        damaged.write(b"\xff" * 8)
    server = Server()
    records, messages, _ = sync(cfg, state, server)
    assert [r["text"] for r in records] == ["e"] and server.asked == ["e"]
    assert any("5 rows read, 4 skipped as already enriched (at or before 4), 1 enriched" in line
               for line in logs(messages))
