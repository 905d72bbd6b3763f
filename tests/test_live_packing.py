"""rows_per_request against the real llama.cpp server (SmolLM2-135M, json_schema by grammar).

Packed rows come back one record per row, in input order, each answered: from its packed request, or asked
again alone when the small model's packed answer left it out or broke it. The requests are counted in the
server's own log (one ``launch_slot_ ... processing task`` line a request): the packed ones (their prompt
carries the ask to answer by id, far longer than a row alone) and the rows asked alone. The answers stored
from the packs serve a rerun with one row a request, and it sends nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, Server, run_command

pytestmark = pytest.mark.live

TEXTS = ["great value", "broke in a day", "works fine", "meh", "love it", "too small", "arrived late",
         "perfect fit", "cheap plastic", "would buy again", "smells odd", "five stars"]
PER_PACK = 4
_TASK = re.compile(r"launch_slot_: id +\d+ \| task (\d+) \| processing task")
_DONE = re.compile(r"release: id +\d+ \| task (\d+) \| stop processing: n_tokens = (\d+)")


def config(server: Server, tmp_path: Path, rows: int | str) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "smollm2-135m-instruct",
            "system_prompt": "Label the review positive or negative, in one word.", "prompt": "{{text}}",
            "input": {"rows": [{"id": i + 1, "text": t} for i, t in enumerate(TEXTS)], "primary_key": "id"},
            "rows_per_request": rows, "parameters": {"max_tokens": 8, "temperature": 0},
            # one request at a time: the server's log then holds each request whole, in order
            "concurrency": 1, "timeout": 120, "context_window": 2048,
            "cache": {"path": str(tmp_path / "answers.sqlite")}}


def tasks_since(log: Path, start: int) -> dict[int, int]:
    """The requests the server processed after byte ``start`` of its log: task id -> its tokens (prompt and
    answer) when released."""
    text = log.read_bytes()[start:].decode(errors="replace")
    started = {int(m.group(1)) for m in _TASK.finditer(text)}
    released = {int(m.group(1)): int(m.group(2)) for m in _DONE.finditer(text)}
    assert started == set(released), (started, released)  # every request finished before the read ended
    return released


def read(server: Server, tmp_path: Path, name: str, rows: int | str) -> tuple[Run, dict[int, int]]:
    assert server.log is not None
    start = server.log.stat().st_size
    run = run_command(tmp_path, name, "read", config(server, tmp_path, rows), timeout=600)
    assert run.code == 0, run.stderr[-2000:]
    return run, tasks_since(server.log, start)


def test_packed_rows_are_each_answered_and_serve_an_unpacked_rerun(live_server: Server, tmp_path: Path) -> None:
    run, sent = read(live_server, tmp_path, "packed", PER_PACK)
    rows = run.records
    assert [r["id"] for r in rows] == list(range(1, len(TEXTS) + 1))  # one record a row, in input order
    for row in rows:  # each answered: from its pack, or asked again alone (an answer cut at max_tokens: truncated)
        assert row["_status"] in ("ok", "truncated") and row["answer"], row
        assert row["_cached"] is False and row["_prompt_tokens"] and row["_completion_tokens"] is not None
    # The packed requests carry the ask to answer by id (~70 tokens) and four rows; a row alone is its system
    # prompt, its text and at most 8 tokens of answer.
    packed = [tokens for tokens in sent.values() if tokens >= 80]
    alone = [tokens for tokens in sent.values() if tokens < 80]
    assert len(packed) == len(TEXTS) // PER_PACK, sent
    assert len(alone) <= len(TEXTS), sent  # each row at most once more, alone
    # Every request's tokens are shared out to its rows: the records add up to what the server processed (its
    # log's n_tokens leaves out each request's last token, sampled and not decoded: seen here, one a request).
    said = sum(r["_prompt_tokens"] + r["_completion_tokens"] for r in rows)
    assert said == sum(sent.values()) + len(sent), (said, sent)

    again, resent = read(live_server, tmp_path, "unpacked", 1)
    assert resent == {}  # every answer from the cache: the packed ones stored under each row's own request
    assert [(r["id"], r["answer"]) for r in again.records] == [(r["id"], r["answer"]) for r in rows]
    assert all(r["_cached"] is True for r in again.records)
