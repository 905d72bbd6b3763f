"""Incremental by file (``input.incremental: files``): a folder synced daily enriches only new and changed
files, skips unchanged ones and says so, notes deleted ones, and resumes a killed sync inside a file.

The S3 twin of these (moto's server) is in tests/test_remote_inputs.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.airbyte import commands
from connector.errors import ConfigError, StateError
from connector.rows.file_history import LOOKBACK_NS, FileHistory, FileVersion, plan_files
from tests.conftest import catalog_for, chat_reply, mock_transport


class Endpoint:
    """The fake LLM endpoint: answers each prompt with itself and keeps every prompt it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        prompt = json.loads(request.content)["messages"][-1]["content"]
        self.asked.append(prompt)
        return httpx.Response(200, json=chat_reply(prompt))


def write(folder: Path, name: str, texts: list[str], mtime_s: int = 1_700_000_000) -> None:
    path = folder / name
    pq.write_table(pa.table({"text": texts}), path)
    os.utime(path, (mtime_s, mtime_s))


def config(path: str, **extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": "m", "prompt": "{{text}}",
            "input": {"path": path, "incremental": "files"}, **extra}


def sync(cfg: dict[str, Any], state: Any = None, endpoint: Endpoint | None = None,
         ) -> tuple[list[str], list[tuple[str, str]], Any, Endpoint]:
    """(the records' text, the LOG lines as (level, text), the last STATE, the endpoint) of one incremental read."""
    endpoint = endpoint or Endpoint()

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(cfg, catalog_for(sync_mode="incremental"), state,
                                               mock_transport(endpoint))]

    messages = asyncio.run(collect())
    records = [m["record"]["data"]["text"] for m in messages if m["type"] == "RECORD"]
    logs = [(m["log"]["level"], m["log"]["message"]) for m in messages if m["type"] == "LOG"]
    states = [m for m in messages if m["type"] == "STATE"]
    return records, logs, [states[-1]["state"]] if states else None, endpoint


def said(logs: list[tuple[str, str]], text: str) -> list[str]:
    return [line for _, line in logs if text in line]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "tickets"
    data.mkdir()
    write(data, "day-1.parquet", ["a1", "a2"])
    write(data, "day-2.parquet", ["b1", "b2", "b3"])
    write(data, "day-3.parquet", ["c1"])
    return data


def test_the_second_day_enriches_only_the_new_and_the_changed_file(folder: Path) -> None:
    cfg = config(str(folder), cache={"enabled": False})
    records, _, state, endpoint = sync(cfg)
    assert records == endpoint.asked == ["a1", "a2", "b1", "b2", "b3", "c1"]
    write(folder, "day-2.parquet", ["b1", "B2", "b3"], mtime_s=1_700_100_000)  # changed: read again whole
    write(folder, "day-0.parquet", ["z1"])  # new, though it sorts before the files read
    records, logs, state, endpoint = sync(cfg, state)
    assert endpoint.asked == records == ["z1", "b1", "B2", "b3"]
    assert said(logs, "4 files listed, 2 skipped as unchanged since they were read, 2 to read (1 new, 1 changed)")
    assert said(logs, "changed since they were read, so read again whole") and said(logs, "day-2.parquet")
    assert said(logs, "files: 4 listed, 2 skipped as unchanged, 2 read (1 new, 1 changed), 0 no longer listed; "
                      "rows: 4 read, 4 enriched")
    records, logs, _, endpoint = sync(cfg, state)  # the third day: nothing new
    assert records == endpoint.asked == []
    assert said(logs, "4 skipped as unchanged since they were read, 0 to read")


def test_the_unchanged_rows_of_a_changed_file_come_from_the_answer_cache(folder: Path) -> None:
    _, _, state, _ = sync(config(str(folder)))
    write(folder, "day-2.parquet", ["b1", "B2", "b3"], mtime_s=1_700_100_000)
    records, _, _, endpoint = sync(config(str(folder)), state)
    assert records == ["b1", "B2", "b3"]  # the whole file is emitted again ...
    assert endpoint.asked == ["B2"]  # ... and only its edited row is bought


def test_a_deleted_file_is_noted_and_dropped_from_the_history(folder: Path) -> None:
    _, _, state, _ = sync(config(str(folder)))
    (folder / "day-1.parquet").unlink()
    records, logs, state, _ = sync(config(str(folder)), state)
    assert records == []
    assert said(logs, "no longer in the input") and said(logs, "day-1.parquet")
    history = state[0]["stream"]["stream_state"]["file_history"]["files"]
    assert sorted(Path(name).name for name in history) == ["day-2.parquet", "day-3.parquet"]


def test_a_killed_sync_resumes_inside_its_file_and_new_files_wait_their_turn(folder: Path) -> None:
    # max_requests stops the sync cleanly after 3 rows: inside day-2.parquet, with a STATE for them.
    records, _, state, _ = sync(config(str(folder), max_requests=3, cache={"enabled": False}))
    assert records == ["a1", "a2", "b1"]
    saved = state[0]["stream"]["stream_state"]
    assert saved["position"] == 1 and saved["input"]["files"][0]["name"].endswith("day-2.parquet")
    assert [Path(n).name for n in saved["file_history"]["files"]] == ["day-1.parquet"]
    write(folder, "day-0.parquet", ["z1"])  # arrives meanwhile, sorting before the file stopped in
    records, logs, _, endpoint = sync(config(str(folder), cache={"enabled": False}), state)
    assert records == endpoint.asked == ["b2", "b3", "z1", "c1"]
    assert said(logs, "resuming after row 1 of") and said(logs, "1 resumed where the last sync stopped")


def test_the_file_a_killed_sync_stopped_in_is_read_again_whole_when_it_changed(folder: Path) -> None:
    _, _, state, _ = sync(config(str(folder), max_requests=3, cache={"enabled": False}))
    write(folder, "day-2.parquet", ["b1", "x2"], mtime_s=1_700_100_000)
    records, logs, _, endpoint = sync(config(str(folder), cache={"enabled": False}), state)
    assert records == endpoint.asked == ["b1", "x2", "c1"]
    assert said(logs, "which the last sync stopped in, changed since: it is read again from its first row")


def test_an_edit_inside_the_file_being_resumed_is_refused_like_any_bound_state(folder: Path) -> None:
    """Same size and time but other rows (a rewrite that kept both): the STATE's fingerprint catches it."""
    _, _, state, _ = sync(config(str(folder), max_requests=3, cache={"enabled": False}))
    target = folder / "day-2.parquet"
    before = target.stat()
    write(folder, "day-2.parquet", ["q1", "b2", "b3"])
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size
    with pytest.raises(StateError, match="does not belong to this input"):
        sync(config(str(folder)), state)


def test_a_glob_works_like_a_folder(folder: Path) -> None:
    _, _, state, _ = sync(config(str(folder / "day-*.parquet")))
    write(folder, "day-4.parquet", ["d1"])
    records, _, _, _ = sync(config(str(folder / "day-*.parquet")), state)
    assert records == ["d1"]


def test_a_state_of_files_is_refused_by_a_sync_by_rows(folder: Path) -> None:
    _, _, state, _ = sync(config(str(folder)))
    cfg = config(str(folder))
    cfg["input"]["incremental"] = "rows"
    with pytest.raises(StateError, match=r"written with input\.incremental files"):
        sync(cfg, state)


def test_a_state_by_rows_read_with_files_reads_every_file_and_says_so(folder: Path) -> None:
    cfg = config(str(folder), max_requests=3)
    cfg["input"]["incremental"] = "rows"
    _, _, state, _ = sync(cfg)
    records, logs, _, _ = sync(config(str(folder)), state)
    assert records == ["a1", "a2", "b1", "b2", "b3", "c1"]
    assert said(logs, "the state has no file history")


@pytest.mark.parametrize("source", [{"path": "-"}, {"rows": [{"text": "a"}]}])
def test_files_needs_a_path_of_files(source: dict[str, Any]) -> None:
    cfg = config("x")
    cfg["input"] = {**source, "incremental": "files"}
    with pytest.raises(ConfigError, match=r"input\.incremental files needs input\.path naming files"):
        sync(cfg)


def version(name: str, mtime_ns: int, size: int = 10) -> FileVersion:
    return FileVersion(name, size, mtime_ns)


def test_the_history_keeps_the_newest_files_and_then_takes_old_unknown_files_as_read() -> None:
    day = 10 * 24 * 3600 * 10**9  # ten days apart: more than the look-back margin
    history = FileHistory().with_read([version(f"f{i}", i * day) for i in range(1, 6)], most=3)
    assert sorted(history.files) == ["f3", "f4", "f5"] and history.cutoff_mtime_ns == 3 * day
    listed = [version(f"f{i}", i * day) for i in range(1, 6)] + [version("late", 3 * day - LOOKBACK_NS + 1),
                                                                    version("old", 3 * day - LOOKBACK_NS - 1)]
    plan = plan_files(listed, history, None)
    assert plan.read == ("late",)  # within the look-back margin: read (again), never missed
    assert set(plan.unchanged) == {"f1", "f2", "f3", "f4", "f5", "old"}


def test_an_etag_decides_when_both_sides_have_one() -> None:
    history = FileHistory({"f": FileVersion("f", 10, 5, '"v1"')})
    assert plan_files([FileVersion("f", 10, 5, '"v2"')], history, None).changed == ("f",)
    assert plan_files([FileVersion("f", 10, 5, '"v1"')], history, None).unchanged == ("f",)
    assert plan_files([FileVersion("f", 10, 5, None)], history, None).unchanged == ("f",)
    assert plan_files([FileVersion("f", 11, 5, '"v1"')], history, None).changed == ("f",)


def test_batch_mode_refuses_files_for_now(folder: Path) -> None:
    with pytest.raises(ConfigError, match="not supported in batch mode yet"):
        sync(config(str(folder), batch={"enabled": True}))


def test_each_record_names_its_file_and_row_there_which_key_the_stream(folder: Path) -> None:
    endpoint = Endpoint()

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(config(str(folder)), catalog_for(sync_mode="incremental"), None,
                                               mock_transport(endpoint))]

    data = [m["record"]["data"] for m in asyncio.run(collect()) if m["type"] == "RECORD"]
    assert [(Path(r["_ab_source_file_url"]).name, r["_ab_source_file_row"], r["_row_number"]) for r in data][1:4] == [
        ("day-1.parquet", 2, 2), ("day-2.parquet", 1, 3), ("day-2.parquet", 2, 4)]
    assert data[0]["_ab_source_file_last_modified"] == "2023-11-14T22:13:20.000000Z"
    stream = next(iter(asyncio.run(_discover(config(str(folder))))))
    assert stream["source_defined_primary_key"] == [["_ab_source_file_url"], ["_ab_source_file_row"]]
    assert stream["default_cursor_field"] == ["_ab_source_file_last_modified"]
    assert stream["json_schema"]["properties"]["_ab_source_file_row"]["type"] == "integer"
    keyed = config(str(folder))
    keyed["input"]["primary_key"] = "text"
    assert next(iter(asyncio.run(_discover(keyed))))["source_defined_primary_key"] == [["text"]]


async def _discover(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    messages = [m async for m in commands.discover(cfg, mock_transport(Endpoint()))]
    return [s for m in messages for s in m["catalog"]["streams"] if s["name"] == "enriched_rows"]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_csv_or_jsonl_folder_by_file_reads_its_rows_and_their_files(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "in"
    data.mkdir()
    for name, texts in (("a", ["x", "y"]), ("b", ["z"])):
        body = "text\n" + "".join(f"{t}\n" for t in texts) if kind == "csv" else \
            "".join(json.dumps({"text": t}) + "\n" for t in texts)
        (data / f"{name}.{kind}").write_text(body)
    _, _, state, _ = sync(config(str(data)))
    (data / f"c.{kind}").write_text("text\nw\n" if kind == "csv" else '{"text": "w"}\n')
    records, _, _, endpoint = sync(config(str(data)), state)
    assert records == endpoint.asked == ["w"]


def test_an_input_column_named_like_a_file_column_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.parquet", ["x"])
    pq.write_table(pa.table({"text": ["x"], "_ab_source_file_row": [1]}), tmp_path / "a.parquet")
    with pytest.raises(ConfigError, match="has a column named '_ab_source_file_row'"):
        sync(config(str(tmp_path)))


def test_files_and_a_cursor_column_are_not_combined(folder: Path) -> None:
    cfg = config(str(folder))
    cfg["input"]["cursor"] = "text"
    with pytest.raises(ConfigError, match="set one of them"):
        sync(cfg)


def test_the_catalog_may_hand_back_the_file_cursor_discover_declared(folder: Path) -> None:
    catalog = catalog_for(sync_mode="incremental")
    catalog["streams"][0]["cursor_field"] = ["_ab_source_file_last_modified"]
    endpoint = Endpoint()

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(config(str(folder)), catalog, None, mock_transport(endpoint))]

    records = [m for m in asyncio.run(collect()) if m["type"] == "RECORD"]
    assert len(records) == len(endpoint.asked) == 6
