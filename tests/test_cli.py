"""The process edge: spec output, usage errors, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from connector import cli
from connector.airbyte.output import MessageWriter
from connector.airbyte.protocol import record, state
from connector.cli import YOUNG_COLLECTION_EVERY
from connector.config.specification import specification
from tests.conftest import Server, run_cli


def test_spec_prints_the_model_generated_specification() -> None:
    run = run_cli(["spec"], process=True)
    assert run.code == 0
    (message,) = run.messages
    assert message == {"type": "SPEC", "spec": specification()}
    assert message["spec"]["connectionSpecification"]["properties"]["api_key"]["airbyte_secret"] is True


def test_bad_usage_exits_2_with_usage_on_stderr_and_nothing_on_stdout() -> None:
    run = run_cli(["read", "--config"], process=True)
    assert run.code == 2
    assert run.stdout == "" and "usage:" in run.stderr


def test_missing_config_file_is_a_config_error_trace() -> None:
    run = run_cli(["discover", "--config", "/nonexistent/config.json"])
    assert run.code == 1
    (error,) = run.trace_errors
    assert error["failure_type"] == "config_error" and "--config: cannot read '/nonexistent/config.json'" in \
        error["message"]


def test_the_process_entry_point_collects_young_garbage_less_often() -> None:
    # At CPython's default (every 700 net allocations) 15-20 % of a read's CPU at 512 in flight
    # went to the cyclic collector, which found nothing: main() raises the threshold first.
    script = ("import gc, sys; sys.argv = ['source-openai-compatible', 'spec']\n"
              "from connector import cli\n"
              "try:\n    cli.main()\nexcept SystemExit as done:\n"
              "    print(done.code, gc.get_threshold()[0], file=sys.stderr)\n")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.stderr.split() == ["0", str(YOUNG_COLLECTION_EVERY)]
    assert YOUNG_COLLECTION_EVERY > 700
    assert json.loads(finished.stdout)["type"] == "SPEC"


def test_a_reader_that_closes_stdout_early_gets_no_traceback(tmp_path: Path) -> None:
    """``read | head -3``: the connector stops quietly with 141, as a tool killed by SIGPIPE would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: every request is refused at once
    (tmp_path / "rows.csv").write_text("id,text\n" + "".join(f"{i},row {i}\n" for i in range(5000)))
    (tmp_path / "config.json").write_text(json.dumps({
        "url": f"http://127.0.0.1:{port}/v1", "api_key": "k", "model": "m", "prompt": "{{text}}",
        "max_retries": 0, "input": {"path": str(tmp_path / "rows.csv")}}))
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": {"name": "enriched_rows", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "connector", "read", "--config", str(tmp_path / "config.json"),
                             "--catalog", str(tmp_path / "catalog.json")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what head does after its lines
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert all(lines) and stderr == ""


def test_records_on_a_raw_stdout_go_out_in_batches_and_a_state_flushes_them() -> None:
    # PYTHONUNBUFFERED (the image sets it) makes sys.stdout.buffer a raw file: one system call per record.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    raw = io.FileIO(write_end, "wb")
    try:
        writer = MessageWriter(raw)
        for i in range(3):
            writer.write(record("rows", {"i": i}))
        try:
            early = os.read(read_end, 1 << 16)
        except BlockingIOError:
            early = b""
        assert early == b""  # records wait in the buffer
        writer.write(state("rows", {"position": 3}, 3))
        lines = [json.loads(line) for line in os.read(read_end, 1 << 16).splitlines()]
        assert [m["type"] for m in lines] == ["RECORD"] * 3 + ["STATE"]
        del writer
        raw.write(b"still open\n")  # the buffer's own file object closed nothing of the stream it wraps
        assert os.read(read_end, 1 << 16) == b"still open\n"
    finally:
        raw.close()
        os.close(read_end)


class _AnswersBeforeRecords(io.BufferedIOBase):
    """Standard output that checks, at every write, that the answer cache holds (committed, as another
    process sees it) an answer for every record written so far."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.records, self.writes, self.late = cache, 0, 0, []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes += 1
        self.records += bytes(data).count(b'"type":"RECORD"')
        with contextlib.closing(sqlite3.connect(self.cache)) as db:
            kept = db.execute("SELECT count(*) FROM answers").fetchone()[0]
        if kept < self.records:
            self.late.append((self.records, kept))
        return len(data)


def test_every_answer_is_committed_before_its_record_goes_out_in_a_batch(
        tmp_path: Path, fake_server: Server) -> None:
    rows = 300
    (tmp_path / "rows.csv").write_text("text\n" + "".join(f"row {i}\n" for i in range(rows)))
    cache = tmp_path / "answers.sqlite"
    config = {"url": fake_server.base_url, "api_key": fake_server.api_key, "model": "fake-model",
              "prompt": "{{text}}", "concurrency": 32, "input": {"path": str(tmp_path / "rows.csv")},
              "cache": {"path": str(cache)}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG))
    out = _AnswersBeforeRecords(cache)
    code = cli.run(["read", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
                   out, io.StringIO(), io.BytesIO())
    assert (code, out.records, out.late) == (0, rows, [])
    assert out.writes < rows / 4  # the records went out in batches: the cache committed once before each


CATALOG = {"streams": [{"stream": {"name": "enriched_rows", "json_schema": {},
                                   "supported_sync_modes": ["full_refresh"]},
                        "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}
