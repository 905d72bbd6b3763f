"""The bad-input catalogue: every mistake a user can make is refused clearly, through the real CLI.

For each case, ``read`` (and ``check``, where the mistake is in the config or the
input) runs as a process, exactly as a platform runs it, and must:

- say what is wrong in a message that names the field (or the row) and what to do;
- report the right Airbyte failure type: ``read`` ends with a TRACE ERROR and
  exit 1; ``check`` answers CONNECTION_STATUS FAILED with exit 0;
- print no traceback at all on stderr, and only protocol messages on stdout;
- never print the API key (a distinctive one is used in every config).

The one exception is a row whose body is too large for the server (413): that is
the row's error, emitted with the row, and the sync goes on and succeeds.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Run, catalog_for, run_cli
from tests.fake_openai import spawn

SECRET = "sk-catalogue-DO-NOT-PRINT-8c1f2e9a7b"
MAX_BODY = 4096


@dataclass(frozen=True)
class Case:
    """One bad input. ``config`` is merged into a good config; ``{dir}`` and ``{url}`` are filled in."""

    name: str
    needles: tuple[str, ...]  # every one must be in the error message
    config: dict[str, Any] = field(default_factory=dict)
    failure_type: str = "config_error"
    catalog: dict[str, Any] | None = None
    state: Any = None  # written as JSON; a str is written as it is
    check: bool = True  # does ``check`` see this mistake too?
    check_needles: tuple[str, ...] | None = None  # when check words it differently


FOREIGN_STATE = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                               "stream_state": {"updated_at": "2024-01-01"}}}]
TEMPLATE = {"messages": [{"role": "user", "content": "{{text}}"}]}
FILE_FIX = "Fix or replace the file"
URL_FIX = ("url:", "must be an absolute http:// or https:// URL, e.g. http://localhost:8000/v1")

CATALOGUE = [
    # --- the endpoint ------------------------------------------------------------------------
    Case("url is not a URL", URL_FIX, {"url": "localhost 8000"}),
    Case("url is relative", URL_FIX, {"url": "/v1/chat/completions"}),
    Case("url has an unsupported scheme (key in it)", URL_FIX, {"url": f"ftp://llm.example.com/v1?key={SECRET}"}),
    Case("remote host and no key", ("api_key:", "api.example.com is a remote host", "set api_key"),
         {"url": "https://api.example.com/v1", "api_key": None}),
    Case("timeout is zero", ("timeout:", "must be > 0"), {"timeout": 0}),
    Case("timeout is negative", ("timeout:", "must be > 0"), {"timeout": -3}),
    Case("timeout is not a number", ("timeout:", "must be a number of seconds such as 30"), {"timeout": "soon"}),
    Case("endpoint unreachable", ("every row failed", "cannot connect to http://127.0.0.1:{closed_port}"),
         {"url": "http://127.0.0.1:{closed_port}/v1", "max_retries": 0}, failure_type="transient_error",
         check_needles=("Host unreachable", "Is the server running, and are host and port in url right?")),
    # --- the request and response templates --------------------------------------------------
    Case("request template is not JSON", ("request_template:", "is not valid JSON", "give a JSON object"),
         {"prompt": None, "request_template": '{"messages": [{"role": "user", "content": "{{text}}"}'}),
    Case("request template names a column the input lacks",
         ("column(s) review", "the input does not have", "input columns are: id, text"),
         {"prompt": None, "request_template": {"messages": [{"role": "user", "content": "{{review}}"}]}}),
    Case("request template renders a body without messages",
         ("request_template:", "no 'messages' list", '{"messages": [{"role": "user"'),
         {"prompt": None, "request_template": {"model": "fake-model", "input": "{{text}}"}}),
    Case("response template has a bad path",
         ("response_template.columns", "'answer'", "'choices..content'", "write dotted steps"),
         {"response_template": {"columns": {"answer": "choices..content"}}}),
    # --- the input ----------------------------------------------------------------------------
    Case("input file missing", ("input.path:", "missing.csv", "does not exist"),
         {"input": {"path": "{dir}/missing.csv"}}),
    Case("input file empty (0 bytes)", ("input.path:", "empty.csv", "as csv", "Empty CSV file", FILE_FIX),
         {"input": {"path": "{dir}/empty.csv"}}),
    Case("input unreadable", ("input.path:", "unreadable.csv", "{unreadable_reason}"),
         {"input": {"path": "{dir}/unreadable.csv"}}),
    Case("input .csv holding binary junk", ("input.path:", "junk.csv", "line 2 (byte offset 128) holds 0x80",
                                            "not utf-8 text", "input.encoding", "replace it"),
         {"input": {"path": "{dir}/junk.csv"}}),
    Case("input format parquet on a CSV", ("input.path:", "rows.csv", "as parquet", "set input.format"),
         {"input": {"path": "{dir}/rows.csv", "format": "parquet"}}),
    Case("input Parquet with a corrupt footer", ("input.path:", "corrupt.parquet", "as parquet", FILE_FIX),
         {"input": {"path": "{dir}/corrupt.parquet"}}),
    Case("input CSV header with an empty name", ("input.path:", "unnamed.csv line 1 (the header): column 1 has "
                                                 "no name", "give every column a name", "index=False"),
         {"input": {"path": "{dir}/unnamed.csv"}}),
    Case("input.primary_key repeated", ("input.primary_key: rows 1 and 3 have the same 'id' (7)",
                                        "Make the key unique", "leave input.primary_key unset"),
         {"input": {"path": "{dir}/twice.csv", "primary_key": "id"}}),
    Case("input.primary_key missing in a row", ("input.primary_key: row 2 has no value in column 'id'",
                                                "Give every row a key"),
         {"input": {"path": "{dir}/keyless.jsonl", "primary_key": "id"}}),
    # --- the catalog and the state (read only) -----------------------------------------------
    Case("catalog names an unknown stream", ("catalog.streams.0", "unknown stream 'tickets'",
                                             "this source offers: enriched_rows"),
         catalog=catalog_for("tickets"), check=False),
    Case("catalog asks for an unsupported sync mode", ("stream 'enriched_rows' does not support sync_mode 'cdc'",
                                                       "use one of: full_refresh, incremental"),
         catalog=catalog_for(sync_mode="cdc"), check=False),
    Case("state file is not JSON", ("--state:", "is not valid JSON"), state="[{'type': 'STREAM',", check=False),
    Case("state with sync_complete as a string", ("sync_complete must be true or false, got 'false' (str)",),
         state=[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                              "stream_state": {"position": 1, "sync_complete": "false"}}}],
         check=False),
    Case("state is another source's", ("state for stream 'enriched_rows' is not this source's",
                                       "pass the state this source emitted, or none to start over"),
         state=FOREIGN_STATE, check=False),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A fake endpoint that takes our distinctive key and refuses bodies over MAX_BODY bytes."""
    with spawn("--api-key", SECRET, "--models", "fake-model", "--max-body-bytes", str(MAX_BODY)) as (url, _pid):
        yield url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free once closed: nothing listens there


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The input files the catalogue points at, and how an unreadable file is made here."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "rows.csv").write_text("id,text\n1,great product\n2,arrived broken\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "unnamed.csv").write_text(",id,text\n0,1,a\n1,2,b\n")
    (d / "twice.csv").write_text("id,text\n7,a\n8,b\n7,c\n")
    (d / "keyless.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": null, "text": "b"}\n')
    (d / "junk.csv").write_bytes(bytes(range(256)) * 64)
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), d / "corrupt.parquet")
    raw = bytearray((d / "corrupt.parquet").read_bytes())
    raw[-8:-4] = (2**31 - 1).to_bytes(4, "little")  # footer length pointing far beyond the file
    (d / "corrupt.parquet").write_bytes(bytes(raw))
    unreadable = d / "unreadable.csv"
    if os.geteuid() == 0:  # root reads a chmod 000 file anyway; a folder where a file is expected
        unreadable.mkdir()
        reason = "holds no .csv, .jsonl or .parquet file"
    else:
        unreadable.write_text("id,text\n1,a\n")
        unreadable.chmod(0)
        reason = "is not readable (permissions)"
    return {"dir": str(d), "unreadable_reason": reason, "closed_port": str(_closed_port())}


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in names.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(v, names) for v in value)
    return value


def good_config(url: str, data_dir: str) -> dict[str, Any]:
    return {"url": url, "api_key": SECRET, "model": "fake-model", "prompt": "Classify: {{text}}",
            "input": {"path": f"{data_dir}/rows.csv"}, "max_retries": 1}


def _config_for(case: Case, url: str, names: dict[str, str]) -> dict[str, Any]:
    config = good_config(url, names["dir"])
    config.update(_fill(case.config, names))
    return {k: v for k, v in config.items() if v is not None}


def _assert_safe(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.messages, f"no protocol message at all; stderr: {run.stderr[-2000:]}"
    assert SECRET not in run.stdout and SECRET not in run.stderr


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_read_refuses_it_clearly(case: Case, server: str, inputs: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config_for(case, server, inputs)))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(case.catalog or catalog_for(sync_mode="incremental")))
    args = ["read", "--config", str(config), "--catalog", str(catalog)]
    if case.state is not None:
        state = tmp_path / "state.json"
        state.write_text(case.state if isinstance(case.state, str) else json.dumps(case.state))
        args += ["--state", str(state)]

    run = run_cli(args, timeout=120)

    _assert_safe(run)
    assert run.code == 1, run.stdout[-3000:]
    (error,) = run.trace_errors
    assert run.messages[-1]["type"] == "TRACE"  # the error is the last word
    assert error["failure_type"] == case.failure_type, error
    for needle in _fill(case.needles, inputs):
        assert needle in error["message"], error["message"]


CHECKED = [c for c in CATALOGUE if c.check]


@pytest.mark.parametrize("case", CHECKED, ids=[c.name for c in CHECKED])
def test_check_reports_it_as_connection_failed(case: Case, server: str, inputs: dict[str, str],
                                               tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config_for(case, server, inputs)))

    run = run_cli(["check", "--config", str(config)], timeout=120)

    _assert_safe(run)
    assert run.code == 0, run.stdout[-3000:]
    (status,) = [m["connectionStatus"] for m in run.of_type("CONNECTION_STATUS")]
    assert status["status"] == "FAILED"
    assert run.trace_errors == []
    needles = case.check_needles if case.check_needles is not None else case.needles
    for needle in _fill(needles, inputs):
        assert needle in status["message"], status["message"]


def test_a_row_too_large_for_the_server_is_that_rows_error_and_the_sync_goes_on(
    server: str, inputs: dict[str, str], tmp_path: Path
) -> None:
    rows = [{"id": 1, "text": "short"}, {"id": 2, "text": "x" * (MAX_BODY * 2)}, {"id": 3, "text": "also short"}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**good_config(server, inputs["dir"]), "input": {"path": str(data)}}))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_for()))

    run = run_cli(["read", "--config", str(config), "--catalog", str(catalog)], timeout=120)

    _assert_safe(run)
    assert run.code == 0 and run.trace_errors == [], run.stdout[-3000:]
    assert [r["_row_number"] for r in run.records] == [1, 2, 3]
    assert [r["_status"] for r in run.records] == ["ok", "error", "ok"]
    too_large = run.records[1]
    assert "(413)" in too_large["_error"] and "too large" in too_large["_error"]
    assert f"limit of {MAX_BODY} bytes" in too_large["_error"]  # the server's own words, passed on
    assert "shorten" in too_large["_error"]  # and what to do about it
    assert too_large["_attempts"] == 1  # a 413 is not retried: the same body would be refused again
    summary = run.of_type("LOG")[-1]["log"]["message"]
    assert "row 2:" in summary and "413" in summary
    assert run.of_type("STATE")[-1]["state"]["stream"]["stream_state"]["position"] == 3


def test_a_repeated_key_on_stdin_stops_the_sync_at_that_row_after_a_state_for_the_rows_before() -> None:
    import asyncio
    import io

    import httpx

    from connector.airbyte import commands
    from connector.errors import ConnectorError
    from tests.conftest import chat_reply, mock_transport

    lines = b"".join(json.dumps({"id": i, "text": f"t{i}"}).encode() + b"\n" for i in (1, 2, 3, 2, 5))
    config = {"url": "http://fake.local/v1", "api_key": SECRET, "model": "m", "prompt": "{{text}}",
              "input": {"path": "-", "primary_key": "id", "columns": {"id": "integer", "text": "string"},
                        "batch_size": 1}, "concurrency": 1}
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["messages"][0]["content"])
        return httpx.Response(200, json=chat_reply("ok"))

    messages: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in commands.read(config, catalog_for(), None, mock_transport(answer),
                                           stdin=io.BytesIO(lines)):
            messages.append(message)

    with pytest.raises(ConnectorError) as caught:
        asyncio.run(collect())
    assert caught.value.failure_type == "config_error"
    assert "rows 2 and 4 have the same 'id' (2)" in caught.value.message
    assert "t4" not in asked and "t5" not in asked
    states = [m["state"]["stream"]["stream_state"]["position"] for m in messages if m["type"] == "STATE"]
    assert states[-1] == 3 and [m["record"]["data"]["id"] for m in messages if m["type"] == "RECORD"] == [1, 2, 3]


@pytest.mark.parametrize("where", ["file", "stdin", "inline"])
def test_a_json_value_nested_too_deep_to_send_is_that_rows_bad_input_not_a_crash(where: str, tmp_path: Path) -> None:
    import asyncio
    import io

    import httpx

    from connector.airbyte import commands
    from tests.conftest import chat_reply, mock_transport

    deep: Any = []
    for _ in range(400):  # orjson writes at most 255 levels
        deep = [deep]
    rows = [{"text": "a", "v": [1]}, {"text": "b", "v": deep}, {"text": "c", "v": {"k": 2}}]
    lines = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    (tmp_path / "deep.jsonl").write_bytes(lines)
    source = {"file": {"path": str(tmp_path / "deep.jsonl")}, "stdin": {"path": "-"}, "inline": {"rows": rows}}
    config = {"url": "http://fake.local/v1", "api_key": SECRET, "model": "m", "prompt": "{{text}} {{v}}",
              "input": source[where]}
    messages: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in commands.read(config, catalog_for(), None, mock_transport(
                lambda _request: httpx.Response(200, json=chat_reply("ok"))), stdin=io.BytesIO(lines)):
            messages.append(message)

    asyncio.run(collect())
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert [r["_status"] for r in records] == ["ok", "error", "ok"]
    assert records[1]["_error_class"] == "bad_input" and records[1]["v"] is None
    assert "column 'v': the value cannot be sent or written" in records[1]["_error"]
    assert "nested more than 255 levels deep" in records[1]["_error"]
    assert messages[-1]["type"] == "TRACE" and messages[-1]["trace"]["stream_status"]["status"] == "COMPLETE"
