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
import pytest

from connector.airbyte import commands
from connector.answers.cache import AnswerCache, connect, limit_of
from connector.config.load import load_config
from connector.endpoint.transport import HttpxTransport
from connector.pipeline.enrich import RowEnricher
from tests.conftest import catalog_for, dialect_of, enricher_for

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

    def on(self, table: str, verb: str) -> list[str]:
        """The statements on ``table`` starting with ``verb`` since the open."""
        return [s for s in self.statements[self.opened:]
                if f" {table} " in f"{s} " and s.lstrip().upper().startswith(verb)]


def _enricher(server: CuttingServer, cache: AnswerCache, max_tokens: int) -> RowEnricher:
    transport = HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(server.handler)))
    return enricher_for(load_config(config(Path("/unused"), max_tokens)), transport, cache)


def _enrich(server: CuttingServer, cache: AnswerCache, max_tokens: int) -> list[dict[str, Any]]:
    """Every row of TEXTS through a RowEnricher on ``cache``."""
    enricher = _enricher(server, cache, max_tokens)

    async def go() -> list[dict[str, Any]]:
        done = [await enricher((n, {"text": t})) for n, t in enumerate(TEXTS)]
        return [d.record() for d in done if d is not None]

    return asyncio.run(go())


def test_a_first_run_makes_one_lookup_a_row_and_notes_its_cap_once(tmp_path: Path) -> None:
    """A first run (no cap in the file at open) looks each request up once and writes its cap once, not an entry
    per answer (before: a second key, a SHA-256 of the body, and a kept row for every answer); the next run, with
    a raised cap, looks each miss up under the old cap and finds the answers that ended on their own."""
    server, path = CuttingServer(), tmp_path / "answers.sqlite"
    first = TracedCache(path)
    assert first.cache.limits == ()
    assert [r["_status"] for r in _enrich(server, first.cache, 5)] == ["ok", "truncated", "ok"]
    first.cache.close()
    assert len(first.on("answers", "SELECT")) == 3 and len(first.on("answers", "INSERT")) == 3
    assert len(first.on("limits", "INSERT")) == 1 and first.on("kept", "INSERT") == []
    second = TracedCache(path)
    assert second.cache.limits == ('{"max_tokens":5}',)
    records = _enrich(server, second.cache, 50)
    second.cache.close()
    assert [r["_cached"] for r in records] == [True, False, True]
    assert len(second.on("answers", "SELECT")) == 6  # each row's own key, then under the cap of 5
    assert server.asked == Counter({TEXTS[0]: 1, TEXTS[1]: 2, TEXTS[2]: 1})


def test_kept_answers_in_a_file_from_before_the_caps_are_still_found(tmp_path: Path) -> None:
    """A cache file written by a35ee73 maps each answer's key without the cap to its key (table kept), and has no
    caps: raising max_tokens still asks again only the row that was cut off."""
    server, path = CuttingServer(), tmp_path / "answers.sqlite"
    cache = AnswerCache(path, warn=lambda _: None)
    capped = _enricher(server, cache, 5)
    assert [r["_status"] for r in _enrich(server, cache, 5)] == ["ok", "truncated", "ok"]
    cache.close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:  # as a35ee73 left it
        db.execute("DROP TABLE limits")
        for text in (TEXTS[0], TEXTS[2]):  # the answers that ended on their own
            body = capped.body_for({"text": text})
            free = {k: v for k, v in body.items() if k != "max_tokens"}
            db.execute("INSERT INTO kept (key, answer) VALUES (?, ?)",
                       (capped.answer_key(free), capped.answer_key(body)))
    again = AnswerCache(path, warn=lambda _: None)
    assert again.has_kept and again.limits == ()
    records = _enrich(server, again, 50)
    again.close()
    assert [r["_cached"] for r in records] == [True, False, True] and [r["_status"] for r in records] == ["ok"] * 3
    assert server.asked == Counter({TEXTS[0]: 1, TEXTS[1]: 2, TEXTS[2]: 1})


@pytest.mark.parametrize("api, capped", [
    ("openai_chat_completions", lambda cap: {"max_tokens": cap}),
    ("openai_responses", lambda cap: {"max_output_tokens": cap}),
    ("gemini_generate_content", lambda cap: {"generationConfig": {"temperature": 0, "maxOutputTokens": cap}}),
])
def test_an_answer_is_found_under_another_cap_only_when_nothing_else_changed(
        tmp_path: Path, api: str, capped: Any) -> None:
    """Each API shape's cap where it keeps it (Gemini's inside generationConfig): a request with a raised cap finds
    the key it had under the old one; a request that changed anything else besides (its temperature) does not."""
    dialect = dialect_of(load_config({"url": "http://fake.local/v1", "prompt": "{{t}}", "api_compatibility": api,
                                      "model": "m", "input": {"rows": [{"t": "x"}]}}))
    body = {"model": "m", "contents": [1], **capped(5)}
    path = tmp_path / "answers.sqlite"
    first = AnswerCache(path)
    first.note_limit(limit_of(dialect, body) or "")
    first.close()
    cache = AnswerCache(path)
    assert len(cache.limits) == 1
    keys = lambda b: json.dumps(b, sort_keys=True)  # noqa: E731
    assert list(cache.under_other_caps(dialect, {**body, **capped(50)}, keys)) == [keys(body)]
    assert list(cache.under_other_caps(dialect, body, keys)) == []  # its own cap: its own key, looked up already
    other = {**body, **capped(50)}
    if "generationConfig" in other:
        other["generationConfig"] = {**other["generationConfig"], "temperature": 1}
    else:
        other["temperature"] = 1
    assert keys(body) not in list(cache.under_other_caps(dialect, other, keys))  # an answer at temperature 0: not it
    cache.close()


_ABSENT = object()


@pytest.mark.parametrize("api", ["openai_chat_completions", "openai_responses", "anthropic_messages",
                                 "gemini_generate_content", "openai_embeddings"])
@pytest.mark.parametrize("body", [
    {"model": "m", "messages": [1]},
    {"model": "m", "messages": [1], "max_tokens": 5, "temperature": 0},
    {"model": "m", "max_tokens": 5, "max_completion_tokens": 6},
    {"model": "m", "input": "x", "max_output_tokens": 7},
    {"model": "m", "generationConfig": {"temperature": 0, "maxOutputTokens": 8}},
    {"model": "m", "generationConfig": {"temperature": 0}},
])
def test_each_shape_names_its_cap_as_the_items_without_output_limit_drops_or_changes(
        api: str, body: dict[str, Any]) -> None:
    """limit_of reads the cap's part with output_limit (no copy of the body): the same items as comparing the
    body with what without_output_limit makes of it, in every API shape."""
    config = {"url": "http://fake.local/v1", "prompt": "{{t}}", "api_compatibility": api, "model": "m",
              "input": {"rows": [{"t": "x"}]}}
    dialect = dialect_of(load_config(config))
    free = dialect.without_output_limit(body)
    assert dialect.output_limit(body) == {k: v for k, v in body.items() if free.get(k, _ABSENT) is not v}
