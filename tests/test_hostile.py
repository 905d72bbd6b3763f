"""Issue 12 end to end: the connector against misbehaving endpoints (modes of tests/hostile_modes.py).

One fake server process; the connector runs in-process through ``connector.cli.run``
with the real aiohttp transport. Each row picks its server behaviour with a marker.
Asserted per behaviour: the run ends within the configured bounds (by its outcome, and
an upper limit on the wall time far above what a working bound takes, never a tight
timing), each row's ``_status`` / ``_error_class``, every answer bought at most once
(counted at the server), the exit code and the failure type.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector import cli
from tests.conftest import Run, catalog_for
from tests.fake_openai import spawn

pytestmark = pytest.mark.timeout(120)  # a safety net: a hang fails here instead of stalling the suite

KEY = "sk-hostile-test-key-77"
FAR = 60.0  # seconds: far above what any bounded run below takes, far below "forever"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with spawn("--api-key", KEY, "--models", "fake-model") as (url, _pid):
        yield url


def _get(url: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + path, timeout=10) as reply:
        return dict(json.load(reply))


def bought(url: str, token: str) -> dict[str, int]:
    """Complete answers the server sent, per request body mentioning ``token``."""
    return {body: n for body, n in _get(url, "/_answers").items() if token in body}


def asked(url: str, token: str) -> dict[str, int]:
    """Requests the server received, per request body mentioning ``token``."""
    return {body: n for body, n in _get(url, "/_requests").items() if token in body}


def config(url: str, texts: list[str], **extra: Any) -> dict[str, Any]:
    return {"url": url, "api_key": KEY, "model": "fake-model", "prompt": "Say {{text}}",
            "input": {"rows": [{"text": t} for t in texts]}, "max_retries": 2, "timeout": 10,
            "concurrency": 4, **extra}


def run_cli(tmp_path: Path, command: str, raw_config: dict[str, Any], *extra: str,
            out: Any = None, stdin: Any = None) -> tuple[Run, float]:
    """One CLI command in-process; its parsed output and how long it took."""
    config_path = tmp_path / f"config-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps(raw_config))
    args = [command, "--config", str(config_path), *extra]
    if command == "read":
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps(catalog_for()))
        args += ["--catalog", str(catalog)]
    buffer, err = io.BytesIO(), io.StringIO()
    started = time.monotonic()
    code = cli.run(args, buffer if out is None else out, err, stdin or io.BytesIO())
    elapsed = time.monotonic() - started
    stdout = buffer.getvalue().decode()
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return Run(code, messages, stdout, err.getvalue()), elapsed


def by_mode(run: Run) -> dict[str, dict[str, Any]]:
    return {r["text"].split("[[fake:")[1].split("]]")[0] if "[[fake:" in r["text"] else "normal": r
            for r in run.records}


def rows_for(token: str, modes: list[str]) -> list[str]:
    return [f"{token} normal", *(f"{token} {m} [[fake:{m}]]" for m in modes)]


# Replies and wire forms: every row gets its right status, each answer is bought once ------


PLAIN_OK = ["budget-exhausted-3s", "usage-na", "usage-list", "usage-string-tokens", "bad-utf8", "lone-surrogate",
            "content-parts", "gzip", "deflate", "chunked", "http10"]
PLAIN_BAD = ["message-string", "content-number", "content-null"]
STREAM_OK = ["crlf-sse", "cr-sse", "sse-comments", "sse-event-lines", "multiline-data", "usage-only-final",
             "no-done", "json-to-stream", "bad-utf8", "lone-surrogate", "http10", "gzip", "after-done"]
STREAM_BAD = ["sse-error-event", "content-null"]


def test_plain_replies_are_read_right_and_bought_once(server: str, tmp_path: Path) -> None:
    token = "plain-replies"
    raw = config(server, rows_for(token, PLAIN_OK + PLAIN_BAD), concurrency=1)  # all meet the pause
    first, elapsed = run_cli(tmp_path, "read", raw)
    assert first.code == 0, first.stdout[-2000:]
    rows = by_mode(first)
    for mode in ["normal", *PLAIN_OK]:
        assert rows[mode]["_status"] == "ok", (mode, rows[mode])
        assert isinstance(rows[mode]["answer"], str) and rows[mode]["answer"].startswith(("echo", "ech")), mode
    for mode in PLAIN_BAD:
        assert (rows[mode]["_status"], rows[mode]["_error_class"]) == ("error", "bad_reply"), (mode, rows[mode])
    assert rows["content-parts"]["answer"] == f"echo: Say {token} content-parts [[fake:content-parts]]"
    assert "\ufffd" in rows["bad-utf8"]["answer"] and "\ufffd" in rows["lone-surrogate"]["answer"]
    assert rows["usage-string-tokens"]["_prompt_tokens"] > 0
    assert rows["usage-na"]["_prompt_tokens"] in (None, 0) and rows["usage-list"]["_prompt_tokens"] in (None, 0)
    assert any("x-ratelimit-remaining-requests is 0" in m["log"]["message"] for m in first.of_type("LOG")
               if m["log"]["level"] == "WARN")  # the 3 s pause was announced
    assert max(bought(server, token).values()) == 1
    assert max(asked(server, token).values()) == 1  # a malformed reply is not bought again either
    assert elapsed < FAR

    again, _ = run_cli(tmp_path, "read", raw)  # the same answer cache: no answer is paid for twice
    assert again.code == 0
    assert all(r["_cached"] for r in again.records if r["_status"] == "ok")
    ok_bodies = {body: n for body, n in bought(server, token).items() if not any(m in body for m in PLAIN_BAD)}
    assert len(ok_bodies) == 1 + len(PLAIN_OK) and max(ok_bodies.values()) == 1


def test_stream_forms_are_read_right_and_bought_once(server: str, tmp_path: Path) -> None:
    token = "stream-forms"
    run, elapsed = run_cli(tmp_path, "read", config(server, rows_for(token, STREAM_OK + STREAM_BAD), stream=True,
                                                    max_retries=0))
    assert run.code == 0, run.stdout[-2000:]
    rows = by_mode(run)
    assert rows.pop("sse-error-event")["_error_class"] == "bad_reply"  # before: the partial text was ok
    assert rows.pop("content-null")["_error_class"] == "bad_reply"  # before: ok with an empty answer
    for mode, row in rows.items():
        assert row["_status"] == "ok", (mode, row)
        expected = f"echo: Say {row['text']}"
        if mode in ("bad-utf8", "lone-surrogate"):
            assert row["answer"] == expected.replace("echo", "ech\ufffd", 1), mode
        else:
            assert row["answer"] == expected, mode
    assert max(bought(server, token).values()) == 1
    assert max(asked(server, token).values()) == 1
    assert elapsed < FAR


_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


@pytest.mark.parametrize("stream", [False, True])
def test_record_columns_keep_their_schema_types_whatever_the_server_sends(server: str, tmp_path: Path,
                                                                          stream: bool) -> None:
    """Before: a ``model`` sent as an object (or a number) was emitted as one in ``_model``, declared a string."""
    from connector.answers.records import META_COLUMNS

    token = f"types-{stream}"
    run, _ = run_cli(tmp_path, "read", config(server, rows_for(token, ["model-object", "model-number"]),
                                              stream=stream))
    assert run.code == 0, run.stdout[-2000:]
    rows = by_mode(run)
    assert rows["model-object"]["_model"] == '{"id":"m-obj","provider":"p"}'
    assert rows["model-number"]["_model"] == "7"
    for record in run.records:
        for column, schema in META_COLUMNS.items():
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            allowed = tuple(t for k in kinds for t in (_JSON_TYPES[k] if isinstance(_JSON_TYPES[k], tuple)
                                                      else (_JSON_TYPES[k],)))
            assert isinstance(record[column], allowed) and not (
                isinstance(record[column], bool) and "boolean" not in kinds), (column, record[column])


def test_prompt_tokens_as_text_reach_a_parquet_file_as_integers(server: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "out.parquet"
    rows = rows_for("parquet-usage", ["usage-string-tokens", "usage-na"])
    run, _ = run_cli(tmp_path, "run", config(server, rows), "--output", str(target))
    assert run.code == 0, run.stderr
    table = pq.read_table(target).to_pylist()
    assert [r["_status"] for r in table] == ["ok"] * 3
    assert isinstance(table[1]["_prompt_tokens"], int) and table[2]["_prompt_tokens"] in (None, 0)


# Hangs: every attempt ends at its deadline, and the row says timeout ---------------------------


@pytest.mark.parametrize(("mode", "stream"), [("trickle-json", False), ("keepalive-stream", True),
                                              ("hang", False)])
def test_a_server_that_never_finishes_ends_at_the_deadline_as_timeout(server: str, tmp_path: Path, mode: str,
                                                                      stream: bool) -> None:
    token = f"deadline-{mode}"
    raw = config(server, rows_for(token, [mode]), stream=stream, timeout=1, max_retries=1)
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    row = by_mode(run)[mode]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "timeout", 2), row
    assert "within 1 s" in row["_error"]
    assert [n for body, n in asked(server, token).items() if f"[[fake:{mode}]]" in body] == [2]
    assert elapsed < FAR  # unbounded before: a trickle or keep-alive held the sync forever


def test_check_probes_have_the_same_deadline(server: str, tmp_path: Path) -> None:
    raw = config(server, [f"check [[fake:{'trickle-json'}]]"], timeout=1)
    run, elapsed = run_cli(tmp_path, "check", raw)
    assert run.code == 0
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "Timeout" in status["message"]
    assert elapsed < FAR


# Waits the endpoint asks for: capped, announced, and beyond the cap a resumable stop ------------


@pytest.mark.parametrize(("mode", "done_before"), [
    ("ratelimited-retry-after-3600", 3), ("ratelimited-retry-after-1e400", 3),
    ("ratelimited-retry-after-ms-1e12", 3), ("budget-exhausted-1h", 4),
])
def test_a_wait_beyond_max_wait_seconds_ends_the_sync_resumably(server: str, tmp_path: Path, mode: str,
                                                                 done_before: int) -> None:
    token = f"pause-{mode}"
    texts = [f"{token} {i}" for i in range(3)] + [f"{token} [[fake:{mode}]]"] + [f"{token} after {i}" for i in range(3)]
    run, elapsed = run_cli(tmp_path, "read", config(server, texts, concurrency=1))
    assert run.code == 1
    [error] = run.trace_errors
    assert error["failure_type"] == "transient_error"
    assert "max_wait_seconds (300 s)" in error["message"] and "Run it again" in error["message"]
    states = run.of_type("STATE")
    assert states and states[-1]["state"]["stream"]["stream_state"]["position"] == done_before  # resumable from here
    assert len(run.records) == done_before
    assert run.messages.index(states[-1]) < run.messages.index(run.of_type("TRACE")[-1])
    assert sum(bought(server, token).values()) == done_before  # nothing after the stop was asked for
    assert elapsed < FAR  # not an hour


# Crashes: clear messages, never a traceback ---------------------------------------------------


def test_a_key_with_a_trailing_newline_works_and_says_so(server: str, tmp_path: Path) -> None:
    run, _ = run_cli(tmp_path, "check", {**config(server, ["hello"]), "api_key": KEY + "\n"})
    assert run.code == 0
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "SUCCEEDED" and "Note: api_key ended with a line break" in status["message"]
    read, _ = run_cli(tmp_path, "read", {**config(server, ["hello"]), "api_key": KEY + "\n"})
    assert read.code == 0 and [r["_status"] for r in read.records] == ["ok"]
    assert any("api_key ended with a line break" in m["log"]["message"] for m in read.of_type("LOG")
               if m["log"]["level"] == "WARN")


@pytest.mark.parametrize(("extra", "field"), [({"headers": {"X-Tenant": "acme\r\nX-Evil: 1"}}, "headers"),
                                              ({"api_key": "sk-one\nsk-two"}, "api_key")])
def test_line_breaks_inside_header_values_are_refused_naming_the_field(server: str, tmp_path: Path,
                                                                       extra: dict[str, Any], field: str) -> None:
    run, _ = run_cli(tmp_path, "check", {**config(server, ["hello"]), **extra})
    assert run.code == 0
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and f"{field}: " in status["message"] and "line break" in status["message"]
    assert "acme" not in status["message"] and "sk-one" not in status["message"]


def test_read_into_a_full_disk_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with open("/dev/full", "wb", buffering=0) as full:
        run, _ = run_cli(tmp_path, "read", config(server, ["full disk"]), out=full)
    assert run.code == 1
    assert "cannot write to standard output: No space left on device" in run.stderr
    assert "Traceback" not in run.stderr


def test_run_into_a_full_disk_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with open("/dev/full", "wb", buffering=0) as full:
        run, _ = run_cli(tmp_path, "run", config(server, ["full disk"]), "--output", "-", out=full)
    assert run.code == 1
    assert "cannot write standard output: No space left on device" in run.stderr
    assert "Traceback" not in run.stderr


class _BrokenStdin(io.BytesIO):
    """Standard input whose producer fails in a way the reader does not expect."""

    def __next__(self) -> bytes:
        raise RuntimeError("the pipe's producer crashed")


def test_an_unexpected_error_reading_stdin_ends_the_run_instead_of_hanging(server: str, tmp_path: Path) -> None:
    raw = {**config(server, []), "input": {"path": "-", "format": "jsonl", "columns": {"text": "string"}}}
    run, elapsed = run_cli(tmp_path, "run", raw, "--output", str(tmp_path / "x.jsonl"), stdin=_BrokenStdin())
    assert run.code == 1
    assert "reading standard input failed: the pipe's producer crashed" in run.stderr
    assert elapsed < FAR


class _BrokenOutput(io.BytesIO):
    """An output stream that fails in a way no layer of the connector expects."""

    def write(self, _data: Any) -> int:
        raise RuntimeError("the terminal went away oddly")


def test_run_reports_an_unexpected_error_in_one_line(server: str, tmp_path: Path) -> None:
    run, _ = run_cli(tmp_path, "run", config(server, ["dry"]), "--dry-run", out=_BrokenOutput())
    assert run.code == 1
    assert "internal error in source-openai-compatible (RuntimeError: the terminal went away oddly)" in run.stderr
    assert "please report it" in run.stderr and "Traceback" not in run.stderr


# Local resources: a low open-files limit shrinks the pool instead of failing rows --------------


def test_a_low_open_files_limit_sizes_the_pool_and_fails_no_row(tmp_path: Path) -> None:
    """As a process of its own: the limit is the process's. Before, with max_retries 0, every
    request past the limit failed its row with "Too many open files"."""
    import resource
    import subprocess
    import sys

    from tests.conftest import ROOT

    limit = 160
    rows = [{"text": f"fd row {i}"} for i in range(400)]
    with spawn("--api-key", KEY, "--models", "fake-model", "--latency-ms", "300") as (url, _pid):
        raw = {**config(url, []), "input": {"rows": rows}, "concurrency": 1024, "max_retries": 0}
        (tmp_path / "config.json").write_text(json.dumps(raw))
        (tmp_path / "catalog.json").write_text(json.dumps(catalog_for()))
        proc = subprocess.run(
            [sys.executable, "-m", "connector", "read", "--config", str(tmp_path / "config.json"),
             "--catalog", str(tmp_path / "catalog.json")],
            cwd=ROOT, capture_output=True, text=True, timeout=FAR * 2, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [r["_status"] for r in records] == ["ok"] * len(rows)
    warnings = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]
    assert any(f"may open only {limit} files" in w and "running 96 requests at once" in w for w in warnings)


# Replies too large to hold: cut off at max_reply_bytes, the row's error, memory bounded ------------


def test_a_gzip_bomb_is_cut_off_at_max_reply_bytes_and_memory_stays_bounded(server: str, tmp_path: Path) -> None:
    """A 1 MB gzip reply that decompresses to 1 GiB. Before: the process grew past 2 GB and the row was
    ok. Measured as the connector process's own peak resident memory."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    raw = config(server, rows_for("bomb", ["gzip-bomb"]), max_retries=1)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_for()))
    peak = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_KB', "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
            "sys.argv = ['connector', *sys.argv[1:]]; runpy.run_module('connector', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", peak, "read", "--config", str(tmp_path / "config.json"),
                           "--catalog", str(tmp_path / "catalog.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=FAR * 2, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = {r["text"]: r for r in (json.loads(line)["record"]["data"] for line in proc.stdout.splitlines()
                                      if '"type":"RECORD"' in line.replace(" ", ""))}
    bomb = records["bomb gzip-bomb [[fake:gzip-bomb]]"]
    assert (bomb["_status"], bomb["_error_class"], bomb["_attempts"]) == ("error", "bad_reply", 1), bomb
    assert "larger than max_reply_bytes (67,108,864 bytes)" in bomb["_error"]
    assert records["bomb normal"]["_status"] == "ok"
    peak_mb = int(proc.stderr.split("PEAK_KB ")[1].split()[0]) / 1024
    # Under 1 GiB: the whole body (or its 2 GB of copies, before the fix) cannot fit. Typically
    # ~160 MB (the limit, 64 MiB, plus what a few reads decompress at once); once 557 MB on a
    # machine at load ~14, where more compressed chunks wait decompressed before the reader.
    assert peak_mb < 1024, peak_mb


def test_a_stream_beyond_max_reply_bytes_is_cut_off_as_the_rows_error(server: str, tmp_path: Path) -> None:
    raw = config(server, rows_for("flood", ["stream-flood"]), stream=True, max_reply_bytes=1 << 20)
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    rows = by_mode(run)
    assert (rows["stream-flood"]["_status"], rows["stream-flood"]["_error_class"]) == ("error", "bad_reply")
    assert "larger than max_reply_bytes (1,048,576 bytes)" in rows["stream-flood"]["_error"]
    assert rows["stream-flood"]["_attempts"] == 1  # not asked again: the same server would send it again
    assert rows["normal"]["_status"] == "ok"
    assert elapsed < FAR


# Attempts cut after the endpoint began answering: what the provider billed is counted (issue 20) --------

# One unit of cost per input token and two per output token: a row's _cost reads as its tokens.
PER_TOKEN = {"*": {"input_per_million": 1_000_000.0, "output_per_million": 2_000_000.0}}


def _cut_run(server: str, tmp_path: Path, token: str, mode: str, **extra: Any) -> tuple[Run, dict[str, Any]]:
    """A read of the cut row, then a normal one (one at a time: the token estimate is not moved by the
    normal answer before the cut row is counted), each attempt 1 s long at most, one retry."""
    texts = [f"{token} {mode} [[fake:{mode}]]", f"{token} normal"]
    raw = config(server, texts, **{"stream": True, "timeout": 1, "max_retries": 1, "concurrency": 1,
                                   "prices": PER_TOKEN, **extra})
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert elapsed < FAR
    return run, by_mode(run)


def _summary(run: Run) -> str:
    return next(m["log"]["message"] for m in run.of_type("LOG") if "rows by status" in m["log"]["message"])


def test_a_stream_cut_by_the_deadline_counts_the_tokens_it_was_billed(server: str, tmp_path: Path) -> None:
    from tests.hostile_modes import FILLER

    run, rows = _cut_run(server, tmp_path, "cut-stall", "stall-after-3")
    assert run.code == 0, run.stdout[-2000:]
    row = rows["stall-after-3"]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "timeout", 2), row
    # No usage arrived: each attempt's completion is estimated from the text received (3 deltas), at the
    # estimator's 4 characters per token rounded up; the prompt as the dry run estimates it.
    per_attempt = len(3 * FILLER) // 4 + 1
    assert row["_completion_tokens"] == 2 * per_attempt, row  # was None: the two cut attempts were not counted
    assert row["_prompt_tokens"] > 0 and row["_prompt_tokens"] % 2 == 0, row
    assert row["_cost"] == row["_prompt_tokens"] + 2 * row["_completion_tokens"]
    assert row["_cost_source"] == "config+estimated"
    normal = rows["normal"]
    summary = _summary(run)
    assert f"tokens in {row['_prompt_tokens'] + normal['_prompt_tokens']}" in summary, summary
    assert f"out {row['_completion_tokens'] + normal['_completion_tokens']}" in summary, summary


def test_a_stream_cut_after_a_usage_chunk_counts_the_usage_it_reported(server: str, tmp_path: Path) -> None:
    from tests.hostile_modes import FILLER, USAGE_SO_FAR

    run, rows = _cut_run(server, tmp_path, "cut-usage", "stall-after-usage")
    assert run.code == 0, run.stdout[-2000:]
    row = rows["stall-after-usage"]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "timeout", 2), row
    # The server's own counts as it last reported them (the delta after them is not estimated on top).
    assert (row["_prompt_tokens"], row["_completion_tokens"]) == (2 * USAGE_SO_FAR["prompt_tokens"],
                                                                 2 * USAGE_SO_FAR["completion_tokens"]), row
    assert row["_cost_source"] == "config" and len(FILLER) == 40  # nothing estimated


@pytest.mark.parametrize(("mode", "stream"), [("stall-before-done", True), ("done-then-hang", True),
                                              ("json-then-reset", False), ("json-then-hang", False)])
def test_an_answer_that_came_whole_but_never_ended_is_the_answer_bought_once(server: str, tmp_path: Path,
                                                                             mode: str, stream: bool) -> None:
    token = f"complete-{mode}"
    run, rows = _cut_run(server, tmp_path, token, mode, stream=stream)
    assert run.code == 0, run.stdout[-2000:]
    row = rows[mode]
    # Was a timeout or a broken connection, asked again (and paid twice): the answer had come whole, only
    # its end marker (or the end of the connection, or a chunked body's last chunk) had not.
    assert (row["_status"], row["_attempts"]) == ("ok", 1), row
    assert row["answer"] == f"echo: Say {token} {mode} [[fake:{mode}]]"
    assert row["_prompt_tokens"] > 0 and row["_cost_source"] == "config"  # its usage chunk had come
    assert [n for body, n in asked(server, token).items() if f"[[fake:{mode}]]" in body] == [1]


def test_the_spend_guard_counts_the_tokens_of_a_cut_stream(server: str, tmp_path: Path) -> None:
    # 200 deltas of 40 characters: about 2,000 output tokens billed for an attempt that brought no answer.
    token, mode = "cut-budget", "stall-after-200"
    texts = [f"{token} first", f"{token} {mode} [[fake:{mode}]]", f"{token} last"]
    raw = config(server, texts, stream=True, timeout=1, max_retries=1, concurrency=1, max_total_tokens=1500,
                 prices=PER_TOKEN)
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    assert [r["text"] for r in run.records] == [f"{token} first"]  # the run stops before the cut row
    sent = {body.split(f"{token} ")[1].split(" ")[0].split('"')[0]: n for body, n in asked(server, token).items()}
    assert sent == {"first": 1, mode: 1}, sent  # was 2 and "last" 1: the cut attempt counted as 0 tokens
    assert any("max_total_tokens (1500) reached" in m["log"]["message"] for m in run.of_type("LOG")), run.stdout
    assert run.of_type("STATE")[-1]["state"]["stream"]["stream_state"]["position"] == 1  # resumable from there
    # What the refused row's cut attempt was billed is in the summary, apart from the rows emitted.
    from tests.hostile_modes import FILLER

    summary = _summary(run)
    unemitted = summary.split("bought for rows not emitted")[1]  # was absent: the bill had 2,000 tokens more
    tokens_in = int(unemitted.split("tokens in ")[1].split(",")[0])
    tokens_out = int(unemitted.split(", out ")[1].split(",")[0])
    # 8,000 characters of text at the learnt characters per token (row 1's usage moved it from 4)
    assert 1500 < tokens_out <= len(200 * FILLER) // 4 + 1 and tokens_in > 0, summary
    assert f"cost {tokens_in + 2 * tokens_out:.4f}" in unemitted, summary
    assert elapsed < FAR


@pytest.mark.parametrize(("mode", "stream", "error_class"), [("reset-after-3", True, "connection"),
                                                             ("cut-json", False, "connection")])
def test_an_answer_cut_by_a_reset_counts_the_tokens_it_was_billed(server: str, tmp_path: Path, mode: str,
                                                                  stream: bool, error_class: str) -> None:
    from tests.hostile_modes import FILLER

    token = f"cut-{mode}"
    texts = [f"{token} {mode} [[fake:{mode}]]", f"{token} normal"]
    raw = config(server, texts, stream=stream, timeout=5, max_retries=1, concurrency=1, prices=PER_TOKEN,
                 parameters={"max_tokens": 50})
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    row = by_mode(run)[mode]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", error_class, 2), row
    # A stream: the text received (3 deltas) at 4 characters per token. A plain answer was generated whole
    # before it was sent: its max_tokens, what the spend guard reserves for it.
    per_attempt = len(3 * FILLER) // 4 + 1 if stream else 50
    assert row["_completion_tokens"] == 2 * per_attempt, row  # was None
    assert row["_prompt_tokens"] > 0 and row["_cost_source"] == "config+estimated", row
    assert elapsed < FAR


@pytest.mark.parametrize("mode", ["message-string", "content-number"])
def test_a_reply_refused_for_its_shape_counts_the_usage_it_reported(server: str, tmp_path: Path, mode: str) -> None:
    from tests.hostile_modes import _usage

    token = f"refused-{mode}"
    raw = config(server, [f"{token} [[fake:{mode}]]", f"{token} normal"], prices=PER_TOKEN, concurrency=1)
    run, _ = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    row = by_mode(run)[mode]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "bad_reply", 1), row
    sent = next(json.loads(body) for body in asked(server, token) if f"[[fake:{mode}]]" in body)
    billed = _usage(sent, f"echo: Say {token} [[fake:{mode}]]")
    # The answer was generated and billed, though unusable: its usage counts (was None).
    assert (row["_prompt_tokens"], row["_completion_tokens"]) == (billed["prompt_tokens"], billed["completion_tokens"])
    assert row["_cost"] == billed["prompt_tokens"] + 2 * billed["completion_tokens"] and row["_cost_source"] == "config"


# Each API shape's reply with a field of the wrong type (refused: bad_reply) and the usage it reported.
REFUSED_SHAPES = {
    "anthropic_messages": {"type": "message", "content": ["not a block"], "stop_reason": "end_turn",
                           "usage": {"input_tokens": 15, "output_tokens": 7}},
    "gemini_generate_content": {"candidates": ["not a candidate"],
                                "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 7}},
    "openai_responses": {"object": "response", "status": "completed",
                         "output": [{"type": "message", "content": ["not a part"]}],
                         "usage": {"input_tokens": 15, "output_tokens": 7, "total_tokens": 22}},
}


@pytest.mark.parametrize("shape", sorted(REFUSED_SHAPES))
def test_every_shape_counts_the_usage_of_a_reply_refused_for_its_shape(tmp_path: Path, shape: str) -> None:
    import httpx

    from tests.conftest import read_through

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=REFUSED_SHAPES[shape])

    raw = {"url": "http://shape.test/v1", "api_key": KEY, "model": "m", "api_compatibility": shape,
           "prompt": "Say {{text}}", "input": {"rows": [{"text": "hi"}]}, "prices": PER_TOKEN,
           "cache": {"path": str(tmp_path / "cache.sqlite")}}
    messages, error = read_through(raw, handler)
    assert error is not None and "every row failed" in error.message, error  # the one row is emitted before
    row = next(m["record"]["data"] for m in messages if m["type"] == "RECORD")
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "bad_reply", 1), row
    # The reply was generated and billed, though unusable: the usage it reported counts (was None: the
    # shape's parser failed before its usage was read).
    assert (row["_prompt_tokens"], row["_completion_tokens"]) == (15, 7), row
    assert row["_cost"] == 15 + 2 * 7 and row["_cost_source"] == "config", row


def _unemitted(run: Any) -> tuple[int, int]:
    """The summary's tokens in and out bought for rows a spend guard's stop left unemitted."""
    summary = _summary(run)
    assert "bought for rows not emitted" in summary, summary
    unemitted = summary.split("bought for rows not emitted")[1]
    return int(unemitted.split("tokens in ")[1].split(",")[0]), int(unemitted.split(", out ")[1].split(",")[0])


def test_a_task_refused_by_the_spend_guard_counts_its_cut_attempts_in_the_summary(server: str, tmp_path: Path) -> None:
    from tests.hostile_modes import FILLER

    token, mode = "task-cut", "stall-after-200"
    tasks = [{"name": "plain", "prompt": "Plain {{text}}"},
             {"name": "cut", "prompt": f"Cut {{{{text}}}} [[fake:{mode}]]"}]
    raw = config(server, [f"{token} one"], stream=True, timeout=1, max_retries=1, concurrency=1,
                 max_total_tokens=1500, tasks=tasks)
    del raw["prompt"]
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    assert run.records == [] and any("max_total_tokens (1500) reached" in m["log"]["message"]
                                     for m in run.of_type("LOG")), run.stdout[-2000:]
    # The cut task's attempt (about 2,000 output tokens) and the plain task's answer: both bought, for a row
    # not emitted. Was absent from the summary: only the single-prompt enricher's refusals were read.
    tokens_in, tokens_out = _unemitted(run)
    assert 1500 < tokens_out <= len(200 * FILLER) // 4 + 1 + 50 and tokens_in > 0, _summary(run)
    assert elapsed < FAR


def test_the_done_tasks_of_a_row_the_spend_guard_refused_are_in_the_summary(server: str, tmp_path: Path) -> None:
    from tests.hostile_modes import _usage

    token = "task-refused"
    # Row 2's first task is the third request, its second the fourth: refused by max_requests.
    tasks = [{"name": "first", "prompt": "First {{text}}"}, {"name": "then", "prompt": "Then {{first.answer}}"}]
    raw = config(server, [f"{token} one", f"{token} two"], concurrency=1, max_requests=3, tasks=tasks)
    del raw["prompt"]
    run, _ = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    assert [r["text"] for r in run.records] == [f"{token} one"]
    sent = next(json.loads(body) for body in asked(server, f"First {token} two"))
    billed = _usage(sent, f"echo: First {token} two")
    # Row 2's first task was answered (and paid) before the stop: was in no summary.
    assert _unemitted(run) == (billed["prompt_tokens"], billed["completion_tokens"]), _summary(run)


def test_an_attempt_cut_with_an_image_counts_the_image_in_its_prompt_estimate(server: str, tmp_path: Path) -> None:
    from tests.test_media import b64, png

    token, mode = "cut-media", "cut-json"
    photo = b64(png(1024, 1024))  # 765 tokens as OpenAI counts a 1024 x 1024 image; its base64 is not text
    raw = config(server, [], timeout=5, max_retries=1, concurrency=1, prices=PER_TOKEN, parameters={"max_tokens": 50},
                 prompt="Say {{text}} {{photo}}", media_columns={"photo": "image"},
                 input={"rows": [{"text": f"{token} [[fake:{mode}]]", "photo": photo},
                                 {"text": f"{token} normal", "photo": photo}]})
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    row = by_mode(run)[mode]
    assert (row["_status"], row["_error_class"], row["_attempts"]) == ("error", "connection", 2), row
    # Each cut attempt's prompt as the dry run estimates it: the text (a few dozen tokens) and the image's
    # 765. Was the text alone (under 100 for both attempts).
    assert 2 * 765 < row["_prompt_tokens"] < 2 * (765 + 100), row
    assert row["_completion_tokens"] == 2 * 50 and row["_cost_source"] == "config+estimated", row
    assert elapsed < FAR


def test_a_packed_request_cut_before_its_answer_counts_in_its_rows_tokens(server: str, tmp_path: Path) -> None:
    from tests.hostile_modes import _usage

    token, mode = "cut-pack", "cut-json"
    texts = [f"{token} one", f"{token} two [[fake:{mode}]]", f"{token} three"]
    raw = config(server, texts, timeout=5, max_retries=1, concurrency=1, prices=PER_TOKEN, rows_per_request=3,
                 system_prompt="Answer briefly.")
    run, elapsed = run_cli(tmp_path, "read", raw)
    assert run.code == 0, run.stdout[-2000:]
    rows = {r["text"]: r for r in run.records}
    # The packed request (carrying row 2's marker) was cut twice, then each row was asked alone: rows 1 and 3
    # answered, row 2 cut twice again. The packed attempts were billed: each row carries its share.
    for text in (texts[0], texts[2]):
        row = rows[text]
        alone = next(json.loads(body) for body in asked(server, text)
                     if json.loads(body)["messages"][-1]["content"] == f"Say {text}")
        own = _usage(alone, f"echo: Say {text}")
        assert row["_status"] == "ok", row
        # Was its own request's tokens alone, from "config": the two cut packed attempts were not counted.
        assert row["_prompt_tokens"] > own["prompt_tokens"] and row["_cost_source"] == "config+estimated", row
    assert rows[texts[1]]["_status"] == "error" and rows[texts[1]]["_cost_source"] == "config+estimated"
    assert [n for body, n in asked(server, token).items() if all(t in body for t in texts)] == [2]  # packed, cut
    assert elapsed < FAR
