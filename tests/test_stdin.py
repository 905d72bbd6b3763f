"""input.path "-": JSON lines or another connector's Airbyte messages on stdin, enriched as they flow."""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from connector.airbyte import commands
from connector.config.input import InputConfig
from connector.errors import InputError
from connector.pipeline.ordered import ordered_map
from connector.rows.columns import field_schema
from connector.rows.stdin import StdinTable
from tests.conftest import CLI, ROOT, Server, catalog_for, run_cli


def config_for(server: Server, input_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": {"path": "-", **input_}, "cache": {"enabled": False}, **extra}


def airbyte_lines(rows: list[dict[str, Any]], stream: str = "users") -> bytes:
    out = [{"type": "LOG", "log": {"level": "INFO", "message": "starting"}},
           {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1.0,
                                       "stream_status": {"stream_descriptor": {"name": stream},
                                                         "status": "STARTED"}}}]
    for row in rows:
        out.append({"type": "RECORD", "record": {"stream": stream, "data": row, "emitted_at": 1}})
    out.append({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream},
                                                                          "stream_state": {"x": 1}}}})
    return b"".join(json.dumps(m).encode() + b"\n" for m in out) + b"not json at all\n"


async def read_all(config: dict[str, Any], stdin: bytes, **kw: Any) -> list[dict[str, Any]]:
    return [m async for m in commands.read(config, catalog_for(), stdin=io.BytesIO(stdin), **kw)]


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


async def test_json_lines_on_stdin(fake_server: Server) -> None:
    lines = b'{"text": "one", "n": 1}\n\n{"text": "two", "n": 2, "extra": true}\n{"n": 3}\n'
    out = records(await read_all(config_for(fake_server, {}), lines))
    assert [r["answer"] for r in out] == ["echo: Say one", "echo: Say two", "echo: Say "]
    assert [r["n"] for r in out] == [1, 2, 3] and [r["_row_number"] for r in out] == [1, 2, 3]
    assert "extra" in out[0]  # seen in the first batch, so it is a column; null where missing
    assert out[0]["extra"] is None and out[1]["extra"] is True


async def test_airbyte_records_from_another_connector(fake_server: Server) -> None:
    stdin = airbyte_lines([{"text": "a"}, {"text": "b"}]) + airbyte_lines([{"text": "c"}], stream="orders")
    out = records(await read_all(config_for(fake_server, {}), stdin))
    assert [r["text"] for r in out] == ["a", "b", "c"]
    only = records(await read_all(config_for(fake_server, {"stream": "orders", "format": "airbyte"}), stdin))
    assert [r["text"] for r in only] == ["c"]


async def test_declared_columns_are_kept_and_typed_in_discover(fake_server: Server) -> None:
    config = config_for(fake_server, {"columns": {"text": "string", "n": "integer"}})
    catalog = [m async for m in commands.discover(config)][-1]["catalog"]
    props = catalog["streams"][0]["json_schema"]["properties"]
    assert props["text"] == {"type": ["null", "string"]} and props["n"] == {"type": ["null", "integer"]}
    out = records(await read_all(config, b'{"text": "x", "n": 4, "other": 1}\n'))
    assert out[0]["n"] == 4 and "other" not in out[0]


async def test_discover_without_columns_warns_that_input_columns_would_be_dropped(fake_server: Server) -> None:
    messages = [m async for m in commands.discover(config_for(fake_server, {}))]
    assert messages[0]["type"] == "LOG" and messages[0]["log"]["level"] == "WARN"
    assert "input.columns" in messages[0]["log"]["message"]
    props = messages[-1]["catalog"]["streams"][0]["json_schema"]["properties"]
    assert "answer" in props and "text" not in props


async def test_an_enriched_stream_can_be_enriched_again(fake_server: Server) -> None:
    first = records(await read_all(config_for(fake_server, {}), b'{"text": "hi"}\n'))
    piped = b"".join(json.dumps({"type": "RECORD", "record": {"stream": "enriched_rows", "data": r,
                                                              "emitted_at": 1}}).encode() + b"\n" for r in first)
    second_config = config_for(fake_server, {}, prompt="Again: {{answer}}",
                               response_template={"columns": {"again": "choices.0.message.content"}})
    messages = await read_all(second_config, piped)
    (row,) = records(messages)
    assert row["again"] == "echo: Again: echo: Say hi" and row["_row_number"] == 1
    # The first run's metadata is kept under input.metadata_prefix, nothing dropped.
    assert row["input_row_number"] == 1 and row["input_status"] == "ok" and row["answer"] == "echo: Say hi"
    note = next(m for m in messages if m["type"] == "LOG" and "metadata_prefix" in m["log"]["message"])
    assert "_row_number as input_row_number" in note["log"]["message"]


async def test_a_line_that_is_not_json_is_an_input_error_naming_it(fake_server: Server) -> None:
    with pytest.raises(InputError, match="stdin line 2 is not JSON"):
        await read_all(config_for(fake_server, {"format": "jsonl"}), b'{"text": "a"}\nnope\n')


async def test_check_never_reads_stdin(fake_server: Server) -> None:
    config = config_for(fake_server, {"columns": {"text": "string"}})
    (status,) = [m async for m in commands.check(config)]
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    bad = config_for(fake_server, {"columns": {"other": "string"}})
    (status,) = [m async for m in commands.check(bad)]
    assert status["connectionStatus"]["status"] == "FAILED" and "text" in status["connectionStatus"]["message"]


def test_stdin_only_options_are_refused_for_files() -> None:
    with pytest.raises(ValueError, match="standard input only"):
        InputConfig(path="x.csv", stream="s")
    with pytest.raises(ValueError, match="auto, jsonl or airbyte"):
        InputConfig(path="-", format="csv")


async def test_inferred_types_are_the_json_types_of_the_first_rows() -> None:
    table = StdinTable(InputConfig(path="-"), io.BytesIO(b'{"a": 1, "b": "x"}\n{"a": 2.5, "b": 3, "c": null}\n'))
    await table.start()
    assert [field_schema(f) for f in table.schema] == [
        {"type": ["null", "number"]}, {"type": ["null", "integer", "string"]}, {"type": ["null", "string"]}]


async def test_stdin_batches_take_what_has_arrived() -> None:
    table = StdinTable(InputConfig(path="-", batch_size=2), io.BytesIO(b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'))
    batches = [b async for b in table.batches(skip=1)]
    assert [row for b in batches for row in b] == [{"a": 2}, {"a": 3}]


async def test_an_enriched_stream_piped_in_loses_only_the_metadata_columns(fake_server: Server) -> None:
    lines = b'{"text": "one", "_status": "ok", "_row_number": 7, "answer2": "x"}\n'
    messages = await read_all(config_for(fake_server, {}), lines)
    [record] = records(messages)
    assert record["_row_number"] == 1 and record["_status"] == "ok" and record["answer2"] == "x"
    notes = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]
    assert any("_status, _row_number" in n or "_row_number, _status" in n for n in notes), notes


async def test_ordered_map_over_an_async_source_yields_while_the_source_waits() -> None:
    release = asyncio.Event()
    seen: list[int] = []

    async def source() -> Any:
        yield 1
        yield 2
        await release.wait()  # the producer is slow
        yield 3

    async def double(i: int) -> int:
        return i * 2

    async def consume() -> None:
        async for value in ordered_map(source(), double, 4):
            seen.append(value)

    task = asyncio.create_task(consume())
    for _ in range(50):
        await asyncio.sleep(0)
    assert seen == [2, 4]  # out before the third item exists
    release.set()
    await task
    assert seen == [2, 4, 6]


@pytest.mark.parametrize("unbuffered", [True, False])
def test_records_flow_out_before_the_pipe_closes(fake_server: Server, write_json, unbuffered: bool) -> None:
    """The shell pipe case: rows written one at a time are answered while stdin stays open, whether
    Python's standard output is raw (PYTHONUNBUFFERED, as the image sets it) or buffered."""
    config = write_json("c.json", config_for(fake_server, {}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([*CLI, "read", "--config", config, "--catalog", write_json("k.json", catalog_for())],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        got: list[dict[str, Any]] = []
        buffer = b""
        for i in range(3):
            proc.stdin.write(json.dumps({"text": f"row {i}"}).encode() + b"\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 20
            while len(got) <= i and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if ready:
                    buffer += os.read(proc.stdout.fileno(), 65536)
                    *lines, buffer = buffer.split(b"\n")
                    got += [json.loads(line) for line in lines if b'"RECORD"' in line]
            assert len(got) == i + 1, f"record {i} did not come out while stdin was open"
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
        assert b'"COMPLETE"' in buffer + rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [m["record"]["data"]["answer"] for m in got] == ["echo: Say row 0", "echo: Say row 1", "echo: Say row 2"]


def test_two_connectors_in_a_shell_pipe(fake_server: Server, write_json, tmp_path: Path) -> None:
    first = write_json("first.json", {"url": fake_server.base_url, "api_key": fake_server.api_key,
                                      "model": "fake-model", "prompt": "Tag {{text}}",
                                      "input": {"rows": [{"text": "a"}, {"text": "b"}]}})
    columns = {"text": "string", "answer": "string"}
    shorten = {"columns": {"short": "choices.0.message.content"}}
    second = write_json("second.json", config_for(fake_server, {"columns": columns}, prompt="Shorten {{answer}}",
                                                  response_template=shorten))
    catalog = write_json("k.json", catalog_for())
    cli = " ".join(CLI)
    proc = subprocess.run(f"{cli} read --config {first} --catalog {catalog} | "
                          f"{cli} read --config {second} --catalog {catalog}",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line)["record"]["data"] for line in proc.stdout.splitlines() if '"RECORD"' in line]
    assert [(r["text"], r["short"]) for r in rows] == [("a", "echo: Shorten echo: Tag a"),
                                                       ("b", "echo: Shorten echo: Tag b")]
    assert set(rows[0]) >= {"text", "answer", "short", "_status"}


def test_cli_reads_the_process_stdin(fake_server: Server, write_json) -> None:
    config = write_json("c.json", config_for(fake_server, {}))
    proc = subprocess.run([*CLI, "read", "--config", config, "--catalog", write_json("k.json", catalog_for())],
                          cwd=ROOT, input='{"text": "z"}\n', capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert '"answer":"echo: Say z"' in proc.stdout
    assert run_cli(["discover", "--config", config]).code == 0  # discover with stdin closed: fine


def test_stdin_without_line_breaks_stops_the_read_with_a_bound_instead_of_filling_memory(tmp_path: Path) -> None:
    """``read < /dev/zero``: a line that never ends is refused once it passes the longest line read."""
    (tmp_path / "config.json").write_text(json.dumps({
        "url": "http://127.0.0.1:9/v1", "api_key": "k", "model": "m", "prompt": "{{text}}",
        "input": {"path": "-", "columns": {"text": "string"}}}))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_for()))
    with open("/dev/zero", "rb") as zeros:
        proc = subprocess.run([*CLI, "read", "--config", str(tmp_path / "config.json"), "--catalog",
                               str(tmp_path / "catalog.json")], stdin=zeros, capture_output=True, cwd=ROOT)
    errors = [json.loads(line)["trace"]["error"] for line in proc.stdout.splitlines() if b'"ERROR"' in line]
    assert proc.returncode == 1 and len(errors) == 1 and errors[0]["failure_type"] == "config_error"
    assert "stdin line 1 is longer than 256 MB without a line break" in errors[0]["message"]
