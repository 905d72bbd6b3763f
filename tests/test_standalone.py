"""``run``: the enriched table into Parquet, CSV or JSONL, column types from the discovered schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from connector.answers.arrow_schema import Columns, arrow_type_for
from connector.endpoint.transport import HttpxTransport
from connector.standalone.writers import OutputError, TableWriter, format_for
from tests.conftest import CLI, FAKE_KEY, ROOT, Server, chat_reply


@dataclass
class Plain:
    code: int
    stdout: str
    stderr: str


def run_plain(args: list[str], stdin: str | None = None, timeout: float = 120) -> Plain:
    """The connector as a process, its stdout kept as text (run is not the Airbyte protocol)."""
    proc = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          input=stdin if stdin is not None else "")
    return Plain(proc.returncode, proc.stdout, proc.stderr)


def config_for(server: Server, input_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": input_, "cache": {"enabled": False}, **extra}


@pytest.fixture
def parquet_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "text": ["alpha", None, "gamma"],
        "day": pa.array([dt.date(2025, 1, 1), None, dt.date(2025, 3, 1)], pa.date32()),
        "tags": pa.array([["a"], [], None], pa.list_(pa.string())),
    }), path)
    return path


def test_run_writes_parquet_with_the_discovered_types(fake_server: Server, write_json, tmp_path: Path,
                                                      parquet_input: Path) -> None:
    out = tmp_path / "out" / "enriched.parquet"
    config = config_for(fake_server, {"path": str(parquet_input), "batch_size": 2},
                        response_template={"columns": {"answer": "choices.0.message.content",
                                                       "usage": "usage"}})
    run = run_plain(["run", "--config", write_json("c.json", config), "--output", str(out)])
    assert run.code == 0, run.stderr
    assert run.stdout == ""
    assert f"wrote 3 rows to {out} (parquet)" in run.stderr
    assert not Path(f"{out}.partial").exists()
    table = pq.read_table(out)
    types = {f.name: f.type for f in table.schema}
    assert types["id"] == pa.int32() and types["day"] == pa.date32()  # input columns keep their types
    assert types["tags"] == pa.list_(pa.string())
    assert types["answer"] == pa.string() and types["usage"] == pa.string()  # untyped: JSON text
    assert types["_row_number"] == pa.int64() and types["_cached"] == pa.bool_()
    assert types["_cost"] == pa.float64() and types["_prompt_tokens"] == pa.int64()
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["answer"] == "echo: Say alpha" and rows[1]["answer"] == "echo: Say "
    assert json.loads(rows[0]["usage"])["total_tokens"] > 0
    assert rows[0]["day"] == dt.date(2025, 1, 1) and rows[0]["_status"] == "ok"


def test_run_writes_csv_with_nested_values_as_json_text(fake_server: Server, write_json, tmp_path: Path,
                                                         parquet_input: Path) -> None:
    out = tmp_path / "enriched.csv"
    run = run_plain(["run", "--config", write_json("c.json", config_for(fake_server, {"path": str(parquet_input)})),
                     "--output", str(out)])
    assert run.code == 0, run.stderr
    table = pacsv.read_csv(out)
    assert table.column("tags").to_pylist() == ['["a"]', "[]", ""]  # CSV has no null: empty
    assert table.column("_row_number").to_pylist() == [1, 2, 3]


def test_run_writes_jsonl_to_a_file_or_to_stdout(fake_server: Server, write_json, tmp_path: Path) -> None:
    config = write_json("c.json", config_for(fake_server, {"rows": [{"text": "one"}, {"text": "two"}]}))
    out = tmp_path / "enriched.jsonl"
    assert run_plain(["run", "--config", config, "--output", str(out)]).code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["answer"] for r in lines] == ["echo: Say one", "echo: Say two"]
    assert list(lines[0])[:3] == ["text", "answer", "_row_number"]  # the schema's order
    piped = run_plain(["run", "--config", config, "--output", "-"])
    assert piped.code == 0, piped.stderr
    assert [json.loads(line)["answer"] for line in piped.stdout.splitlines()] == ["echo: Say one", "echo: Say two"]


def test_run_dry_run_prints_the_report_and_writes_nothing(fake_server: Server, write_json, tmp_path: Path) -> None:
    out = tmp_path / "never.parquet"
    config = config_for(fake_server, {"rows": [{"text": "hello"}]},
                        prices={"*": {"input_per_million": 2.5, "output_per_million": 10}})
    before = fake_server.stats().get("chat", 0)
    run = run_plain(["run", "--config", write_json("c.json", config), "--output", str(out), "--dry-run"])
    assert run.code == 0, run.stderr
    assert not out.exists() and fake_server.stats().get("chat", 0) == before
    assert run.stdout.startswith("dry run of enriched_rows: no request was sent\nrows: 1; requests: 1;")
    assert "estimated cost: ~" in run.stdout and "Authorization: Bearer ****" in run.stdout
    assert FAKE_KEY not in run.stdout + run.stderr


def test_a_failed_run_leaves_no_file_and_says_why(fake_server: Server, write_json, tmp_path: Path) -> None:
    out = tmp_path / "enriched.parquet"
    config = config_for(fake_server, {"rows": [{"text": "x"}]}, api_key="sk-wrong-key-00000000")
    run = run_plain(["run", "--config", write_json("c.json", config), "--output", str(out)])
    assert run.code == 1
    assert "ERROR: API key rejected (401)" in run.stderr and "sk-wrong-key-00000000" not in run.stderr
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_run_usage_errors_are_plain_lines(write_json, tmp_path: Path) -> None:
    bad = run_plain(["run", "--config", str(tmp_path / "missing.json"), "--output", "x.parquet"])
    assert bad.code == 1 and bad.stderr.startswith("ERROR: --config: cannot read")
    config = write_json("c.json", {"url": "http://127.0.0.1:9/v1", "prompt": "{{t}}", "input": {"rows": [{"t": 1}]}})
    odd = run_plain(["run", "--config", config, "--output", str(tmp_path / "x.xlsx")])
    assert odd.code == 1 and "cannot tell the format of" in odd.stderr


def test_arrow_types_of_json_schema_properties() -> None:
    assert arrow_type_for({"type": ["null", "integer"]}) == pa.int64()
    assert arrow_type_for({"type": "string", "format": "date-time",
                           "airbyte_type": "timestamp_with_timezone"}) == pa.timestamp("us", tz="UTC")
    assert arrow_type_for({"type": ["null", "array"], "items": {"type": "number"}}) == pa.list_(pa.float64())
    assert arrow_type_for({"type": ["null", "object"], "properties": {"a": {"type": "boolean"}}}) == \
        pa.struct([("a", pa.bool_())])
    assert arrow_type_for({"type": ["null", "object"]}) is None
    assert arrow_type_for({"type": ["null", "string", "number"]}) is None
    assert format_for("x.PARQUET") == "parquet" and format_for("-") == "jsonl" and format_for("x", "csv") == "csv"


def test_a_value_that_does_not_fit_its_column_is_a_clear_error(tmp_path: Path) -> None:
    schema = {"properties": {"n": {"type": ["null", "integer"]}}}
    with pytest.raises(OutputError, match="column 'n' \\(int64\\)"):
        Columns(schema, None, "parquet").batch([{"n": "seven"}])
    writer = TableWriter(str(tmp_path / "o.parquet"), "parquet", schema, None, batch_rows=2)
    writer.add({"n": 1})
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_stdin_columns_inferred_as_null_take_later_values_as_text(fake_server: Server, write_json,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "piped.parquet"
    config = config_for(fake_server, {"path": "-", "batch_size": 1})
    lines = '{"text": "a", "note": null}\n{"text": "b", "note": {"k": 1}}\n'
    run = run_plain(["run", "--config", write_json("c.json", config), "--output", str(out)], stdin=lines)
    assert run.code == 0, run.stderr
    rows = pq.read_table(out).to_pylist()
    assert [(r["text"], r["note"]) for r in rows] == [("a", None), ("b", '{"k":1}')]


class _Watched(io.BytesIO):
    """A stdout that tells when the first line reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.first_line = asyncio.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if b"\n" in data:
            self.first_line.set()
        return super().write(data)


def test_run_to_stdout_writes_each_record_as_soon_as_it_and_the_rows_before_are_done() -> None:
    """A live pipe: row 1's record is on stdout while row 2 is still waiting for its answer
    (before, nothing was written until a whole input batch of 1,024 rows was done)."""
    from connector.standalone.command import run as standalone_run

    out = _Watched()
    seen_before_row_2: list[bool] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        if text == "Say two":  # answers only once row 1 is out, or after 5 s if it never comes
            try:
                await asyncio.wait_for(out.first_line.wait(), 5)
                seen_before_row_2.append(True)
            except asyncio.TimeoutError:
                seen_before_row_2.append(False)
        return httpx.Response(200, json=chat_reply(f"echo: {text}"))

    def transport(_config: object) -> HttpxTransport:
        return HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(handler)))

    config = {"url": "http://fake.local/v1", "api_key": "k", "model": "m", "prompt": "Say {{t}}",
              "cache": {"enabled": False}, "concurrency": 1,
              "input": {"rows": [{"t": "one"}, {"t": "two"}]}}
    result = asyncio.run(standalone_run(config, "-", stdout=out, transport_factory=transport))
    assert result.rows_written == 2 and result.complete
    assert seen_before_row_2 == [True]
    assert [json.loads(line)["answer"] for line in out.getvalue().splitlines()] == ["echo: Say one", "echo: Say two"]
