"""Re-ask only what failed: after some answers were cut off by ``max_tokens``, raising it and running again
asks only those rows (or tasks); the answers that ended on their own come from the answer cache
(RowEnricher.cached_answer). The endpoint is an httpx MockTransport that counts every request and
cuts an answer longer than the request's max_tokens (one token a word), as a server does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from connector.airbyte import commands
from connector.answers.cache import KEPT_BATCH, AnswerCache, connect
from connector.config.load import load_config
from connector.endpoint.transport import HttpxTransport
from tests.conftest import catalog_for, enricher_for

TEXTS = ["short", "a much longer text that needs many more words than the cap allows", "tiny too"]


class CuttingServer:
    """Answers ``echo: <prompt>``, one token a word, cut at the request's max_tokens (finish_reason length)."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()  # prompt -> requests

    async def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = body["messages"][-1]["content"]
        self.asked[prompt] += 1
        if "refused" in prompt and body["model"] == "m":  # what only another model answers
            return httpx.Response(400, json={"error": {"message": "this model refuses", "type": "invalid_request"}})
        words, cap = f"echo: {prompt}".split(), body.get("max_tokens") or 10_000
        finish = "length" if len(words) > cap else "stop"
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words[:cap])},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": min(len(words), cap),
                      "total_tokens": 5 + min(len(words), cap)}})

    def read(self, config: dict[str, Any], state: Any = None,
             sync_mode: str = "full_refresh") -> tuple[list[dict[str, Any]], Any]:
        records, states, _ = self.messages(config, state, sync_mode)
        return records, states[-1:] or None

    def dry_run(self, config: dict[str, Any]) -> list[str]:
        return self.messages(config, dry_run=True)[2]

    def messages(self, config: dict[str, Any], state: Any = None, sync_mode: str = "full_refresh",
                 dry_run: bool = False) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
        async def go() -> tuple[list[dict[str, Any]], list[Any], list[str]]:
            transport = lambda _limits: HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(self.handler)))  # noqa: E731
            records, states, logs = [], [], []
            async for m in commands.read(config, catalog_for(sync_mode=sync_mode), state, transport, dry_run=dry_run):
                if m["type"] == "RECORD":
                    records.append(m["record"]["data"])
                elif m["type"] == "STATE":
                    states.append(m["state"])
                elif m["type"] == "LOG":
                    logs.append(m["log"]["message"])
            return records, states, logs

        return asyncio.run(go())


def config(tmp_path: Path, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"url": "http://fake.local/v1", "api_key": "sk-reask", "model": "m", "prompt": "{{text}}",
            "input": {"rows": [{"text": t} for t in TEXTS]}, "max_retries": 0,
            "parameters": {"max_tokens": max_tokens}, "cache": {"path": str(tmp_path / "answers.sqlite")}, **extra}


def test_raising_max_tokens_asks_again_only_the_rows_that_were_cut_off(tmp_path: Path) -> None:
    server = CuttingServer()
    first, _ = server.read(config(tmp_path, 5))
    assert [r["_status"] for r in first] == ["ok", "truncated", "ok"]
    assert sum(server.asked.values()) == 3
    dry = server.dry_run(config(tmp_path, 50))  # what the rerun will buy, before it
    assert "already answered in the answer cache (free): 2 of the requests" in dry
    second, _ = server.read(config(tmp_path, 50))
    assert [r["_status"] for r in second] == ["ok", "ok", "ok"]
    assert server.asked == Counter({TEXTS[0]: 1, TEXTS[1]: 2, TEXTS[2]: 1})  # only the cut row twice
    assert [r["_cached"] for r in second] == [True, False, True]
    assert [r["answer"] for r in second] == [f"echo: {t}" for t in TEXTS]
    # A cap below what an answer used is not that answer's: the request is asked (and cut) again.
    third, _ = server.read(config(tmp_path, 2))
    assert [r["_status"] for r in third] == ["ok", "truncated", "truncated"]
    assert server.asked == Counter({TEXTS[0]: 1, TEXTS[1]: 3, TEXTS[2]: 2})


def test_with_tasks_and_an_incremental_sync_only_the_cut_task_requests_are_asked_again(tmp_path: Path) -> None:
    """The recipe for an incremental sync: on_request_change reenrich reads every row again (the changed
    max_tokens is a changed request); only the task requests that were cut off are bought again."""
    server = CuttingServer()
    tasks = [{"name": "copy", "prompt": "copy {{text}}"}, {"name": "first", "prompt": "first of {{copy.answer}}"}]
    raw = {k: v for k, v in config(tmp_path, 7, on_request_change="reenrich").items() if k != "prompt"}
    first, state = server.read({**raw, "tasks": tasks}, sync_mode="incremental")
    assert [r["copy_status"] for r in first] == ["ok", "truncated", "ok"]
    assert [r["first_status"] for r in first] == ["ok", "skipped_upstream", "ok"]
    asked = sum(server.asked.values())
    assert asked == 5  # 3 copies, 2 dependents (the cut one's is skipped)
    second, _ = server.read({**raw, "parameters": {"max_tokens": 60}, "tasks": tasks}, state, "incremental")
    assert [r["_row_number"] for r in second] == [1, 2, 3] and {r["_status"] for r in second} == {"ok"}
    # The cut copy, and the dependent task that now has its answer: nothing else.
    assert sum(server.asked.values()) - asked == 2
    assert [r["copy_cached"] for r in second] == [True, False, True]
    assert [r["first_cached"] for r in second] == [True, False, True]


def test_errors_another_model_avoids_go_to_it_while_the_ok_rows_keep_their_cached_answers(tmp_path: Path) -> None:
    """The recipe for errors: keep model, add the other one as a fallback model."""
    server = CuttingServer()
    rows = {"input": {"rows": [{"text": "fine"}, {"text": "refused here"}]}}
    first, _ = server.read(config(tmp_path, 50, **rows))
    assert [r["_status"] for r in first] == ["ok", "error"] and first[1]["_error_class"] == "bad_request"
    second, _ = server.read(config(tmp_path, 50, fallback_models=["m2"], fallback_on=["bad_request"], **rows))
    assert [r["_status"] for r in second] == ["ok", "ok"] and [r["_model"] for r in second] == ["m", "m2"]
    assert second[0]["_cached"] is True
    assert server.asked == Counter({"fine": 1, "refused here": 3})  # m, then m again and m2


class TracedCache:
    """An AnswerCache on a connection that records every SQL statement it runs (sqlite3's trace callback)."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        self.cache = AnswerCache(path, warn=lambda _: None, opener=self._open)
        self.opened = len(self.statements)  # what the open ran (its schema and its look at kept)

    def _open(self, path: Path) -> sqlite3.Connection:
        db = connect(path)
        db.set_trace_callback(self.statements.append)
        return db

    def on_kept(self, verb: str, until: int | None = None) -> list[str]:
        """The statements on the kept table starting with ``verb`` since the open (up to ``until``)."""
        return [s for s in self.statements[self.opened:until] if "kept" in s and s.lstrip().upper().startswith(verb)]


def _enrich(server: CuttingServer, cache: AnswerCache, max_tokens: int) -> list[dict[str, Any]]:
    """Every row of TEXTS through a RowEnricher on ``cache``."""
    transport = HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(server.handler)))
    enricher = enricher_for(load_config(config(Path("/unused"), max_tokens)), transport, cache)

    async def go() -> list[dict[str, Any]]:
        done = [await enricher((n, {"text": t})) for n, t in enumerate(TEXTS)]
        return [d.record() for d in done if d is not None]

    return asyncio.run(go())


def test_a_cache_without_kept_answers_at_open_looks_none_up_and_writes_them_at_close(tmp_path: Path) -> None:
    """A first run (nothing kept yet) runs no SELECT on kept, and writes its kept entries once, at close;
    the next run looks them up and finds them (the cut row is asked again, the others come from the cache)."""
    server, path = CuttingServer(), tmp_path / "answers.sqlite"
    first = TracedCache(path)
    assert first.cache.has_kept is False
    assert [r["_status"] for r in _enrich(server, first.cache, 5)] == ["ok", "truncated", "ok"]
    before_close = len(first.statements)
    first.cache.close()
    assert first.on_kept("SELECT") == []
    assert first.on_kept("INSERT", before_close) == [] and first.on_kept("INSERT") != []  # buffered until close
    second = TracedCache(path)
    assert second.cache.has_kept is True
    records = _enrich(server, second.cache, 50)
    second.cache.close()
    assert [r["_cached"] for r in records] == [True, False, True] and second.on_kept("SELECT") != []
    assert server.asked == Counter({TEXTS[0]: 1, TEXTS[1]: 2, TEXTS[2]: 1})


def test_kept_entries_are_written_with_the_answers_every_batch(tmp_path: Path) -> None:
    """A full batch of kept entries is written in the answers' transaction, so their commit makes it durable
    (a crash loses at most the entries not written yet: a re-ask after a raised cap, never a wrong answer)."""
    path = tmp_path / "answers.sqlite"
    cache = AnswerCache(path, warn=lambda _: None)
    for n in range(KEPT_BATCH):
        cache.put(f"k{n}", {"choices": []})
        cache.keep(f"free{n}", f"k{n}")
    cache.commit()
    with contextlib.closing(sqlite3.connect(path)) as other:  # another process's view, before this one closes
        assert other.execute("SELECT count(*) FROM kept").fetchone() == (KEPT_BATCH,)
    cache.keep("free-last", "k0")
    assert cache.kept("free-last") is None  # nothing was kept when it opened: no lookup at all
    cache.close()
    again = AnswerCache(path, warn=lambda _: None)
    assert again.has_kept and again.kept("free-last") == "k0"
    assert again.kept(f"free{KEPT_BATCH - 1}") == f"k{KEPT_BATCH - 1}"
    again.close()
