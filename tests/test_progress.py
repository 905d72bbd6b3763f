"""Progress: the snapshot line, LOG lines every N seconds, the terminal bars, and the row estimates."""

from __future__ import annotations

import io
from pathlib import Path

from connector.airbyte import commands
from connector.answers.records import Tally
from connector.config.input import InputConfig
from connector.pipeline.progress import NO_PROGRESS, LogProgress, Several, Snapshot, format_duration
from connector.pipeline.progress_bar import PlainBar, RichBar, render_plain, terminal_bar
from connector.rows.files import InputTable
from tests.conftest import Server, catalog_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tally_of(rows: int, failed: int = 0, tokens: tuple[int, int] = (0, 0), cost: float | None = None) -> Tally:
    tally = Tally()
    tally.by_status["ok"] = rows - failed
    tally.by_status["error"] = failed
    tally.prompt_tokens, tally.completion_tokens = tokens
    if cost is not None:
        tally.priced, tally.cost = True, cost
    return tally


def test_snapshot_line_has_rows_rate_tokens_errors_cost_and_eta() -> None:
    snap = Snapshot("s", rows=1200, total=5000, estimated=True, elapsed=30.0, prompt_tokens=52311,
                    completion_tokens=8120, errors=3, cost=0.0123)
    assert snap.line() == ("s: 1,200 of ~5,000 rows (24%), 40.0 rows/s, tokens in 52,311 out 8,120, 3 errors, "
                           "cost 0.0123, ETA 1m35s")
    unknown = Snapshot("s", 10, None, False, 2.0, 0, 0, 1, None)
    assert unknown.line() == "s: 10 rows, 5.0 rows/s, tokens in 0 out 0, 1 error"
    assert format_duration(7322) == "2h02m" and format_duration(59.4) == "59s"


def test_log_progress_speaks_every_n_seconds_only() -> None:
    clock = Clock()
    progress = LogProgress(every=10, clock=clock)
    progress.start("s", 100, False)
    assert list(progress.advance(tally_of(1))) == []
    clock.now += 9.9
    assert list(progress.advance(tally_of(5))) == []
    clock.now += 0.2
    (line,) = progress.advance(tally_of(20, failed=2, tokens=(100, 50)))
    assert line.startswith("s: 20 of 100 rows (20%), 2.0 rows/s, tokens in 100 out 50, 2 errors")
    assert "ETA 40s" in line
    assert list(progress.advance(tally_of(21))) == []  # the next one is 10 s away again
    assert list(progress.finish(tally_of(21))) == []


def test_an_estimate_that_ran_out_never_shows_more_done_than_expected() -> None:
    clock = Clock()
    progress = LogProgress(every=1, clock=clock)
    progress.start("s", 10, True)
    clock.now += 2
    (line,) = progress.advance(tally_of(12))
    assert "12 of ~12 rows (100%)" in line


def test_plain_bar_draws_on_its_stream_and_ends_the_line() -> None:
    out, clock = io.StringIO(), Clock()
    bar = PlainBar(out, every=0.5, clock=clock)
    bar.start("s", 40, False)
    clock.now += 1
    assert list(bar.advance(tally_of(10))) == []
    bar.finish(tally_of(40))
    text = out.getvalue()
    assert text.startswith("\rs [######") and "10/40 rows" in text and text.endswith("\n")
    assert "40/40 rows" in text
    snap = Snapshot("s", 5, None, False, 1.0, 3, 4, 0, None)
    assert render_plain(snap) == "s 5 rows  5.0 rows/s  tokens 7  errors 0"


def test_rich_bar_writes_only_to_the_stream_it_is_given() -> None:
    out = io.StringIO()
    bar = terminal_bar(out)
    assert isinstance(bar, RichBar)  # rich is in the dev extras
    bar.start("s", 3, False)
    bar.advance(tally_of(1))
    bar.finish(tally_of(3))
    assert "s" in out.getvalue() and "3/3" in out.getvalue()
    assert isinstance(terminal_bar(io.StringIO(), plain=True), PlainBar)


def test_several_reporters_combine_their_messages() -> None:
    clock = Clock()
    both = Several([LogProgress(1, clock), LogProgress(1, clock), NO_PROGRESS])
    both.start("s", None, False)
    clock.now += 1
    assert len(list(both.advance(tally_of(1)))) == 2


def test_file_tables_count_their_rows_exactly(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("text\n" + "".join(f"row {i}\n" for i in range(30)) + '"two\nlines"\n\n')
    assert InputTable(InputConfig(path=str(csv))).estimate_rows() == (31, False)  # counted by the type scan
    assert InputTable(InputConfig(rows=[{"a": 1}, {"a": 2}])).estimate_rows() == (2, False)


async def test_read_reports_an_estimate_log_lines_and_calls_the_injected_progress(
    fake_server: Server, tmp_path: Path
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("text\n" + "".join(f"row {i}\n" for i in range(25)))
    config = {"url": fake_server.base_url, "api_key": fake_server.api_key, "model": "fake-model",
              "prompt": "Say {{text}}", "input": {"path": str(csv)}}

    class Recorder:
        def __init__(self) -> None:
            self.started: tuple[str, int | None, bool] | None = None
            self.advanced = 0
            self.finished = False

        def start(self, stream: str, total: int | None, estimated: bool) -> None:
            self.started = (stream, total, estimated)

        def advance(self, tally: Tally) -> list[str]:
            self.advanced += 1
            return [f"progress {tally.rows}"]

        def finish(self, tally: Tally) -> list[str]:
            self.finished = True
            return []

    recorder = Recorder()
    messages = [m async for m in commands.read(config, catalog_for(), progress=recorder)]
    assert recorder.started == ("enriched_rows", 25, False)  # the scan that typed the columns counted them
    assert recorder.advanced == 25 and recorder.finished
    estimate = next(m for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ESTIMATE")
    assert estimate["trace"]["estimate"]["row_estimate"] == 25
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert not any("an estimate" in line for line in logs)
    assert "progress 25" in logs


def _run_with_terminal_stderr(args: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """The connector with stderr on a pseudo-terminal (as when run by hand) and stdout on a pipe."""
    import os
    import pty
    import subprocess

    from tests.conftest import CLI, ROOT

    leader, follower = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=follower, env={**os.environ, "COLUMNS": "160"})
    os.close(follower)
    stdout, _ = proc.communicate(stdin, timeout=60)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    return proc.returncode, stdout, terminal


def test_a_live_bar_goes_to_a_terminal_stderr_and_never_to_stdout(fake_server: Server, write_json) -> None:
    import json

    config = {"url": fake_server.base_url, "api_key": fake_server.api_key, "model": "fake-model",
              "prompt": "Say {{text}}", "input": {"rows": [{"text": str(i)} for i in range(30)]}}
    args = ["read", "--config", write_json("c.json", config), "--catalog", write_json("k.json", catalog_for())]
    code, stdout, terminal = _run_with_terminal_stderr(args)
    assert code == 0
    lines = stdout.decode().splitlines()
    assert all(json.loads(line)["type"] for line in lines)  # nothing but protocol messages
    assert sum('"RECORD"' in line for line in lines) == 30
    import re

    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", terminal)  # colours and cursor moves
    assert b"enriched_rows" in text and b"100%  30/30 rows" in text  # rich's bar, drawn on the terminal
    code, stdout, terminal = _run_with_terminal_stderr([*args, "--no-progress-bar"])
    assert code == 0 and terminal == b""
