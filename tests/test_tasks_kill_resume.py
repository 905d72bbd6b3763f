"""A sync with tasks killed (SIGKILL) in the middle of its rows' tasks: the answers of the tasks that finished
are in the answer cache, so the resumed sync buys nothing twice.

The endpoint is a small threaded server in this test process: it answers every request at once, except the
dependent task's ("later ..."), which it holds without an answer while ``hold`` is set. The sync runs as a
process; once every row's first tasks are answered and its dependent task is waiting, it is killed. The
second sync (nothing held) must ask only the dependent tasks: each request answered once in all.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import CLI, ROOT, catalog_for

ROWS = 4
TASKS = [{"name": "first", "prompt": "first {{text}}"}, {"name": "other", "prompt": "other {{text}}"},
         {"name": "later", "prompt": "later {{first.answer}}"}]


class Endpoint:
    """What the server saw: requests and answers per prompt; ``hold`` keeps the 'later' ones unanswered."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.hold = threading.Event()
        self.lock = threading.Lock()


@contextmanager
def endpoint() -> Iterator[tuple[str, Endpoint]]:
    seen = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            with seen.lock:
                seen.asked[prompt] += 1
            if prompt.startswith("later") and seen.hold.is_set():
                time.sleep(60)  # held: never answered (the client is killed meanwhile)
                return
            reply = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {prompt}"},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            with seen.lock:
                seen.answered[prompt] += 1

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def committed(path: Path) -> int:
    """The answers another process has committed to the answer cache."""
    if not path.exists():
        return 0
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT count(*) FROM answers").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


def test_a_sync_killed_between_a_rows_tasks_buys_nothing_twice_when_resumed(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_for(sync_mode="incremental")))
    with endpoint() as (url, seen):
        config = tmp_path / "config.json"
        config.write_text(json.dumps({
            "url": url, "api_key": "sk-kill-tasks", "model": "m", "tasks": TASKS, "concurrency": 8, "max_retries": 0,
            "input": {"rows": [{"text": f"row {i}"} for i in range(1, ROWS + 1)]},
            "cache": {"path": str(tmp_path / "answers.sqlite")}}))
        args = [*CLI, "read", "--config", str(config), "--catalog", str(catalog)]
        seen.hold.set()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # Every row's dependent task waits, and the answers of the others are durable in the cache.
            deadline = time.monotonic() + 60
            while sum(n for p, n in seen.asked.items() if p.startswith("later")) < ROWS \
                    or committed(tmp_path / "answers.sqlite") < 2 * ROWS:
                assert time.monotonic() < deadline and proc.poll() is None, \
                    f"the finished tasks' answers never reached the cache: {seen.asked}"
                time.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=60)
        assert b'"type":"RECORD"' not in out  # no row was done: each waited for its 'later' task
        assert sum(seen.answered.values()) == 2 * ROWS  # 'first' and 'other' of every row were bought

        seen.hold.clear()
        resumed = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    records = [json.loads(line)["record"]["data"] for line in resumed.stdout.splitlines()
               if line.startswith(b'{"type":"RECORD"')]
    assert [r["_status"] for r in records] == ["ok"] * ROWS
    assert all(r["first_cached"] and r["other_cached"] and not r["later_cached"] for r in records)
    # Every request answered exactly once over both syncs: nothing bought twice.
    assert set(seen.answered.values()) == {1} and len(seen.answered) == 3 * ROWS
