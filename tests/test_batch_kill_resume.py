"""Batch mode, killed with SIGKILL at each moment of a batch's life, then resumed from the last STATE
a destination saw: no batch submitted twice, every row exactly once, nothing bought twice, counted
at the fake batch server (tests/fake_batch.py).

Each case starts ``read`` as a process (12 rows, batches of 4, so three batches), waits until the
moment it names, kills the process, keeps what a destination commits (the records before the last
STATE on stdout) and runs ``read`` again with that STATE while a helper thread moves the server's
batches along, until the run completes. The moments:

- ``uploading``: the first batch is in the STATE (no id) and its input file is at the server, whose
  answer to the upload is held back: no batch exists; the resumed run finds none and submits it;
- ``creating``: the server created the batch but holds back its answer: the resumed run finds it
  by its fingerprint and re-attaches instead of submitting again;
- ``validating``, ``in_progress``, ``finalizing``: every batch submitted and polled in that state;
- ``emitting``: the first batch completed and its records printed (no STATE after them, so not
  committed): the resumed run emits them again, the destination keeps each once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.batch_runs import batch_config, delta, fake_batch_server, rows_of
from tests.conftest import CLI, ROOT, catalog_for
from tests.fake_batch import Control

pytestmark = pytest.mark.timeout(180)

ROWS = 12


@pytest.fixture(scope="module")
def server() -> Iterator[Control]:
    with fake_batch_server("--advance-every", "0") as control:
        yield control


class Read:
    """``read`` as a process; its stdout lines as they come."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([*CLI, "read", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[dict[str, Any]] = []
        self.errors = bytearray()
        self._seen = threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self._errors = threading.Thread(target=lambda: self.errors.extend(self.proc.stderr.read() if self.proc.stderr
                                                                           else b""), daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.endswith(b"\n"):  # a line a kill cut short is not a message
                with self._seen:
                    self.lines.append(json.loads(raw))
                    self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> None:
        """Until a message ``wanted`` is printed (the process must still be running then)."""
        with self._seen:
            found = self._seen.wait_for(lambda: any(map(wanted, self.lines)) or not self._pump.is_alive(), 90)
        assert found and any(map(wanted, self.lines)), (self.lines[-5:], self.stderr())

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.finish(-signal.SIGKILL)

    def finish(self, code: int = 0) -> None:
        self.proc.wait(timeout=120)
        self._pump.join(timeout=30)
        self._errors.join(timeout=30)
        assert self.proc.returncode == code, self.stderr()
        assert "Traceback" not in self.stderr()

    def stderr(self) -> str:
        return bytes(self.errors).decode(errors="replace")[-3000:]

    def committed(self) -> tuple[list[dict[str, Any]], Any]:
        """The records before the last STATE, and that STATE (as the next ``--state``)."""
        last = max((i for i, m in enumerate(self.lines) if m["type"] == "STATE"), default=-1)
        records = [m["record"]["data"] for m in self.lines[:last] if m["type"] == "RECORD"]
        return records, ([self.lines[last]["state"]] if last >= 0 else None)


def logged(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "LOG" and text in m["log"]["message"]


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


@contextlib.contextmanager
def advancing(server: Control) -> Iterator[None]:
    """A helper moving every batch one step along, again and again, while the resumed run waits."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.05):
            with contextlib.suppress(OSError):
                server.advance()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def args_for(tmp_path: Path, config: dict[str, Any], state: Any, name: str) -> list[str]:
    (tmp_path / f"{name}-config.json").write_text(json.dumps(config))
    (tmp_path / f"{name}-catalog.json").write_text(json.dumps(catalog_for(sync_mode="incremental")))
    out = ["--config", str(tmp_path / f"{name}-config.json"), "--catalog", str(tmp_path / f"{name}-catalog.json")]
    if state is not None:
        (tmp_path / f"{name}-state.json").write_text(json.dumps(state))
        out += ["--state", str(tmp_path / f"{name}-state.json")]
    return out


def stage_of(server: Control, moment: str) -> None:
    """Move every batch to the lifecycle state ``moment`` names (they start validating)."""
    steps = {"in_progress": 1, "finalizing": 3}.get(moment, 0)
    if steps:
        server.advance(steps=steps)


@pytest.mark.parametrize("moment", ["uploading", "creating", "validating", "in_progress", "finalizing", "emitting"])
def test_a_sync_killed_at_any_moment_resumes_without_paying_twice(moment: str, server: Control,
                                                                 tmp_path: Path) -> None:
    config = batch_config(server.origin, rows_of(ROWS, f"killed while {moment}"), cache=tmp_path / "c.sqlite",
                          batch={"max_requests_per_batch": 4, "poll_seconds": 0.05})
    before = server.stats()
    known = {b["id"] for b in server.batches()}
    if moment in ("uploading", "creating"):
        server.delay(**{"upload" if moment == "uploading" else "create": 60})
    killed = Read(args_for(tmp_path, config, None, "first"))
    try:
        if moment == "uploading":
            until(lambda: delta(server.stats(), before, "batch_files_uploaded")["batch_files_uploaded"] >= 1)
            assert delta(server.stats(), before, "batch_created")["batch_created"] == 0
        elif moment == "creating":
            until(lambda: any(b["id"] not in known for b in server.batches()))
        elif moment == "emitting":
            killed.wait_for(logged("requests submitted in provider batches"))
            first = next(b["id"] for b in server.batches() if b["id"] not in known)
            server.advance(first, steps=4)
            killed.wait_for(lambda m: m["type"] == "RECORD")
        else:
            killed.wait_for(logged("requests submitted in provider batches"))
            stage_of(server, moment)
            killed.wait_for(logged(f" {moment} "))
        killed.kill()
    finally:
        server.delay()
    committed, state = killed.committed()
    if moment in ("uploading", "creating"):
        saved = state[0]["stream"]["stream_state"]["batches"]
        assert [b["id"] for b in saved] == [None]  # in the STATE before its create was sent

    with advancing(server):
        resumed = Read(args_for(tmp_path, config, state, "second"))
        resumed.finish()
    again, _ = resumed.committed()
    rows = [r["_row_number"] for r in committed + again]
    assert rows == list(range(1, ROWS + 1))  # every row exactly once, in order
    assert all(r["_status"] == "ok" and r["_batch_id"] for r in committed + again)
    if moment == "creating":
        assert any("re-attached batch" in m["log"]["message"] for m in resumed.lines if m["type"] == "LOG")
    assert delta(server.stats(), before, "batch_created", "batch_custom_ids_twice", "answers",
                 "bodies_answered_twice") == {"batch_created": 3, "batch_custom_ids_twice": 0, "answers": ROWS,
                                              "bodies_answered_twice": 0}


@pytest.mark.parametrize("shape", ["openai_chat_completions", "anthropic_messages", "gemini_generate_content"])
def test_a_sync_killed_while_creating_finds_its_batch_where_the_provider_echoes_no_metadata(
        shape: str, server: Control, tmp_path: Path) -> None:
    """The provider keeps no caller metadata visible: the batch the killed sync created is found by its anchor
    (OpenAI-format: its input file; Anthropic: listed above the newest batch before its create) or its size,
    model and time (Gemini), not bought again."""
    rows = 8
    config = batch_config(server.origin, rows_of(rows, f"killed without metadata {shape}"), shape,
                          cache=tmp_path / "c.sqlite", batch={"max_requests_per_batch": 4, "poll_seconds": 0.05})
    before = server.stats()
    known = {b["id"] for b in server.batches()}
    server.quirks(echo_metadata=False)
    server.delay(create=60)
    try:
        killed = Read(args_for(tmp_path, config, None, "first"))
        until(lambda: any(b["id"] not in known for b in server.batches()))
        killed.kill()
        server.delay()
        committed, state = killed.committed()
        assert [b["id"] for b in state[0]["stream"]["stream_state"]["batches"]] == [None]
        with advancing(server):
            resumed = Read(args_for(tmp_path, config, state, "second"))
            resumed.finish()
    finally:
        server.delay()
        server.quirks(echo_metadata=True)
    again, _ = resumed.committed()
    assert [r["_row_number"] for r in committed + again] == list(range(1, rows + 1))
    assert any("re-attached batch" in m["log"]["message"] for m in resumed.lines if m["type"] == "LOG")
    assert delta(server.stats(), before, "batch_created", "batch_custom_ids_twice", "answers",
                 "bodies_answered_twice") == {"batch_created": 2, "batch_custom_ids_twice": 0, "answers": rows,
                                              "bodies_answered_twice": 0}
