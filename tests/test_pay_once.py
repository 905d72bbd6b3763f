"""Pay once, lose nothing: the answer cache, one request per distinct body, error policy, spend guard."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from connector.answers.cache import AnswerCache, SingleFlight, cache_key
from tests.conftest import Server, catalog_for, chat_reply, enricher_for, mock_transport, progress_of, run_cli


def config_for(server: Server, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": {"rows": rows}, **extra}


def read(write_json, config: Any, state: Any = None, sync_mode: str = "full_refresh") -> Any:
    args = ["read", "--config", write_json("c.json", config),
            "--catalog", write_json("cat.json", catalog_for(sync_mode=sync_mode))]
    if state is not None:
        args += ["--state", write_json("s.json", state)]
    return run_cli(args)


def chat_count(server: Server) -> int:
    return server.stats().get("chat", 0)


def test_a_repeated_run_pays_nothing_for_answers_already_received(
    fake_server: Server, write_json, tmp_path: Path
) -> None:
    rows = [{"text": f"unique-{tmp_path.name}-{i}"} for i in range(30)]
    config = config_for(fake_server, rows, cache={"path": str(tmp_path / "answers.sqlite")})
    before = chat_count(fake_server)
    first = read(write_json, config)
    assert first.code == 0
    assert chat_count(fake_server) - before == 30
    assert not any(r["_cached"] for r in first.records)

    second = read(write_json, config)
    assert second.code == 0
    assert chat_count(fake_server) - before == 30  # not one more request
    assert all(r["_cached"] and r["_attempts"] == 0 for r in second.records)
    assert [r["answer"] for r in second.records] == [r["answer"] for r in first.records]
    assert "answers from cache: 30" in second.of_type("LOG")[-1]["log"]["message"]


def test_identical_rows_in_one_run_are_sent_once(fake_server: Server, write_json, tmp_path: Path) -> None:
    rows = [{"text": f"same-{tmp_path.name}"}] * 12 + [{"text": f"other-{tmp_path.name}"}]
    before = chat_count(fake_server)
    run = read(write_json, config_for(fake_server, rows, concurrency=16))
    assert run.code == 0
    assert chat_count(fake_server) - before == 2
    assert len({r["answer"] for r in run.records[:12]}) == 1 and len(run.records) == 13


def test_cache_off_sends_every_time(fake_server: Server, write_json, tmp_path: Path) -> None:
    rows = [{"text": f"nocache-{tmp_path.name}"}]
    config = config_for(fake_server, rows, cache={"enabled": False})
    before = chat_count(fake_server)
    assert read(write_json, config).code == 0 and read(write_json, config).code == 0
    assert chat_count(fake_server) - before == 2


def test_a_corrupt_cache_file_degrades_to_no_cache_with_a_warning(
    fake_server: Server, write_json, tmp_path: Path
) -> None:
    bad = tmp_path / "answers.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    run = read(write_json, config_for(fake_server, [{"text": "x"}], cache={"path": str(bad)}))
    assert run.code == 0
    assert run.records[0]["_status"] == "ok"
    warnings = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("running without a cache" in w for w in warnings)


def test_a_locked_cache_degrades_to_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    AnswerCache(path).close()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    warnings: list[str] = []
    cache = AnswerCache(path, warn=warnings.append)
    cache.put("k", {"choices": []})
    assert cache.get("k") is None
    assert not cache.enabled and warnings
    holder.close()


def test_time_to_live_expires_answers(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "a.sqlite", ttl_seconds=60)
    cache.put("k", chat_reply("v"))
    assert cache.get("k") == chat_reply("v")
    cache._db.execute("UPDATE answers SET created = created - 3600")  # type: ignore[union-attr]
    assert cache.get("k") is None


def test_cache_key_is_canonical_and_covers_model_and_parameters() -> None:
    a = cache_key("u", "chat", {"model": "m", "messages": [1], "temperature": 0}, "r")
    assert a == cache_key("u", "chat", {"temperature": 0, "messages": [1], "model": "m"}, "r")
    assert a != cache_key("u", "chat", {"model": "m2", "messages": [1], "temperature": 0}, "r")
    assert a != cache_key("u", "chat", {"model": "m", "messages": [1], "temperature": 1}, "r")
    assert a != cache_key("u2", "chat", {"model": "m", "messages": [1], "temperature": 0}, "r")
    assert a != cache_key("u", "chat", {"model": "m", "messages": [1], "temperature": 0}, "r2")


def test_cache_keys_are_those_caches_written_by_earlier_versions_hold() -> None:
    """The key as a35ee73 computed it (one SHA-256 over the whole canonical array): an older cache file still hits."""
    body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "héllo"}], "temperature": 0}
    assert cache_key("http://llm.local/v1", "openai_chat_completions", body, "r" * 64) == \
        "7cad2a9742172cf8c0cc9f562d5d3fa047814f13d5a6d7c7eedb091387eb2797"


def _read_in_process(config: dict[str, Any], handler: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(config, catalog_for(), None, mock_transport(handler))]

    return asyncio.run(collect())


def _records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


@pytest.mark.parametrize("other", [
    {"headers": {"X-Route": "model-b"}},  # a gateway routes by header to another model
    {"headers": {"X-Route": "model-a", "X-Team": "two"}},  # one more header
    {"api_key": "sk-second-tenant-key-222"},  # another key (another account, another tenant)
    {"url": "http://other-llm.local/v1"},  # another endpoint
])
def test_jobs_that_differ_only_in_who_asks_and_how_do_not_share_answers(tmp_path: Path, other: dict[str, Any]) -> None:
    """Before: a second job routed elsewhere by a header, or with another key, got the first job's
    answers, marked cached and ok. The cache file holds no credential either way."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:  # the answer depends on who asks and how
        sent.append(request)
        route = str(request.headers.get("x-route")).upper() + str(request.headers.get("x-team")).upper()
        who = f"{request.url.host} {route} {str(request.headers.get('authorization'))[-3:]}"
        return httpx.Response(200, json=chat_reply(f"answer for {who}"))

    cache = {"path": str(tmp_path / "answers.sqlite")}
    first = {"url": "http://llm.local/v1", "api_key": "sk-first-tenant-key-111", "headers": {"X-Route": "model-a"},
             "prompt": "{{t}}", "input": {"rows": [{"t": "same question"}]}, "cache": cache}
    assert [r["_cached"] for r in _records(_read_in_process(first, handler))] == [False]
    again = _records(_read_in_process(first, handler))
    assert [r["_cached"] for r in again] == [True] and len(sent) == 1  # the same job: from the cache

    second = _records(_read_in_process({**first, **other}, handler))
    assert [r["_cached"] for r in second] == [False] and len(sent) == 2
    assert second[0]["answer"] != again[0]["answer"]
    stored = (tmp_path / "answers.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("answers.sqlite-*"))
    assert b"tenant-key" not in stored and b"model-a" not in stored


def test_single_flight_shares_one_call_and_its_failure() -> None:
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return 7

    async def run() -> list[tuple[int, bool]]:
        flight = SingleFlight()
        return await asyncio.gather(*(flight.run("k", call) for _ in range(5)))

    results = asyncio.run(run())
    assert calls == 1 and [r for r, _ in results] == [7] * 5
    assert sum(shared for _, shared in results) == 4


def test_a_failed_call_in_single_flight_is_freed_without_the_cyclic_collector() -> None:
    # The future kept the exception, whose traceback kept the frame that held the future: every failed
    # row's exception, traceback and frames (enricher to socket, ~120 objects) waited for the cyclic
    # collector, which the process runs rarely (connector/cli.py), so a read in which every row failed grew.
    class Refused(Exception):
        pass

    async def call() -> int:
        raise Refused("no")

    async def run() -> weakref.ref[Refused]:
        try:
            await SingleFlight().run("k", call)
        except Refused as exc:
            return weakref.ref(exc)
        raise AssertionError("the failure was not raised")

    gc.disable()
    try:
        assert asyncio.run(run())() is None  # freed by reference counting alone
    finally:
        gc.enable()


def test_skip_policy_leaves_failed_rows_out_but_counts_them(fake_server: Server, write_json) -> None:
    rows = [{"text": "a"}, {"text": "[[fake:status-500]]"}, {"text": "b"}]
    run = read(write_json, config_for(fake_server, rows, max_retries=0, on_row_error="skip"))
    assert run.code == 0
    assert [r["_row_number"] for r in run.records] == [1, 3]
    assert "left out by on_row_error skip: 1" in run.of_type("LOG")[-1]["log"]["message"]
    assert run.of_type("STATE")[-1]["state"]["stream"]["stream_state"]["position"] == 3


def test_fail_policy_stops_at_the_first_failed_row_after_committing_the_ones_before(
    fake_server: Server, write_json
) -> None:
    rows = [{"text": "a"}, {"text": "b"}, {"text": "[[fake:status-500]]"}, {"text": "c"}]
    run = read(write_json, config_for(fake_server, rows, max_retries=0, on_row_error="fail", concurrency=1))
    assert run.code == 1
    assert run.trace_errors[0]["failure_type"] == "transient_error"
    assert "row 3 failed and on_row_error is 'fail'" in run.trace_errors[0]["message"]
    assert [r["_row_number"] for r in run.records] == [1, 2]
    assert progress_of(run.of_type("STATE")[-1]["state"]["stream"]["stream_state"]) == {"position": 2}


def test_max_error_rate_stops_the_sync(fake_server: Server, write_json) -> None:
    rows = [{"text": "[[fake:status-500]]" if i % 2 else f"ok {i}"} for i in range(60)]
    run = read(write_json, config_for(fake_server, rows, max_retries=0, max_error_rate=0.3, concurrency=1))
    assert run.code == 1
    assert "above max_error_rate 0.3" in run.trace_errors[0]["message"]
    assert 20 <= len(run.records) < 60


def test_spend_guard_stops_cleanly_and_the_next_run_resumes(fake_server: Server, write_json, tmp_path) -> None:
    rows = [{"text": f"guard-{tmp_path.name}-{i}"} for i in range(10)]
    first = read(write_json, config_for(fake_server, rows, max_requests=4, concurrency=1),
                 sync_mode="incremental")
    assert first.code == 0
    assert [r["_row_number"] for r in first.records] == [1, 2, 3, 4]
    state = first.of_type("STATE")[-1]
    assert progress_of(state["state"]["stream"]["stream_state"]) == {"position": 4}
    warnings = [m["log"]["message"] for m in first.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("max_requests (4) reached" in w for w in warnings)

    second = read(write_json, config_for(fake_server, rows, concurrency=1), [state["state"]], "incremental")
    assert second.code == 0
    assert [r["_row_number"] for r in second.records] == [5, 6, 7, 8, 9, 10]


def test_redirects_are_not_followed_so_the_key_never_travels(write_json) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"location": "https://evil.example.com/v1/chat/completions"})

    config = {"url": "http://llm.internal/v1", "api_key": "sk-never-leaves-1234", "prompt": "{{t}}",
              "input": {"rows": [{"t": 1}]}}

    async def collect() -> list[dict[str, Any]]:
        out = []
        try:
            async for message in commands.read(config, catalog_for(), None, mock_transport(handler)):
                out.append(message)
        except Exception as exc:  # the fatal error the CLI turns into a TRACE
            out.append({"raised": str(exc), "failure_type": exc.failure_type})  # type: ignore[attr-defined]
        return out

    messages = asyncio.run(collect())
    assert all("evil.example.com" not in url for url in seen) and len(seen) == 1
    assert messages[-1]["failure_type"] == "config_error"
    assert "redirected (307)" in messages[-1]["raised"]


def test_a_key_in_the_url_is_masked_everywhere() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # a server that echoes the URL it got
        return httpx.Response(400, json={"error": {"message": f"bad request for {request.url}"}})

    config = {"url": "https://gen.example.com/v1?key=AIzaSecretInUrl123", "prompt": "{{t}}",
              "input": {"rows": [{"t": 1}, {"t": 2}]}}

    async def collect() -> list[dict[str, Any]]:
        out = []
        try:
            async for message in commands.read(config, catalog_for(), None, mock_transport(handler)):
                out.append(message)
        except Exception as exc:
            out.append({"raised": str(exc)})
        return out

    text = json.dumps(asyncio.run(collect()))
    assert "AIzaSecretInUrl123" not in text
    assert "key=****" in text


def test_answers_are_stored_before_records_are_emitted() -> None:
    stored: list[str] = []
    order: list[str] = []

    class Recording(AnswerCache):
        def put(self, key: str, reply: dict[str, Any], masked: bool = False, raw: bytes | None = None) -> None:
            stored.append(key)
            order.append("stored")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=chat_reply(json.loads(request.content)["messages"][0]["content"]))

    from connector.config.load import load_config

    config = load_config({"url": "http://localhost/v1", "prompt": "{{t}}", "input": {"rows": [{"t": 1}]}})
    cache = Recording(Path("/nonexistent-dir/x/answers.sqlite"), warn=lambda _: None)
    cache._db = sqlite3.connect(":memory:")  # enabled, but put() is recorded
    enricher = enricher_for(config, mock_transport(handler)(None), cache)

    async def run() -> dict[str, Any]:
        done = await enricher((0, {"t": "hello"}))
        assert done is not None
        order.append("emitted")
        return done.record()

    data = asyncio.run(run())
    assert data["answer"] == "hello" and order == ["stored", "emitted"] and len(stored) == 1


def _warnings(messages: list[dict[str, Any]]) -> list[str]:
    return [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]


def test_a_damaged_cache_entry_is_a_logged_miss_and_a_cached_reply_is_judged_like_a_fresh_one(tmp_path: Path) -> None:
    """Before: one entry that was not JSON crashed every later sync, and a cached reply with no
    choices was served as ok with an empty answer."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["messages"][0]["content"])
        return httpx.Response(200, json=chat_reply(f"answer to {sent[-1]}"))

    path = tmp_path / "answers.sqlite"
    rows = [{"t": f"q{i}"} for i in range(5)]
    config = {"url": "http://llm.local/v1", "prompt": "{{t}}", "input": {"rows": rows}, "cache": {"path": str(path)}}
    assert len(_records(_read_in_process(config, handler))) == 5 and len(sent) == 5
    db = sqlite3.connect(str(path), isolation_level=None)
    keys = [k for (k,) in db.execute("SELECT key FROM answers ORDER BY rowid")]
    damage: list[Any] = [b"\x00\xffnot json", b'{"choices": []}', b"[1, 2]", 42]
    for key, value in zip(keys[:4], damage, strict=True):
        db.execute("UPDATE answers SET reply = ? WHERE key = ?", (value, key))
    db.close()

    messages = _read_in_process(config, handler)
    records = _records(messages)
    assert [r["_status"] for r in records] == ["ok"] * 5
    assert [r["_cached"] for r in records] == [False] * 4 + [True]  # the damaged four were asked again
    assert [r["answer"] for r in records] == [f"answer to q{i}" for i in range(5)]
    assert len(sent) == 9
    assert sum("holds a damaged entry" in w for w in _warnings(messages)) == 4
    assert "damaged cache entries asked again: 4" in [m for m in messages if m["type"] == "LOG"][-1]["log"]["message"]
    again = _records(_read_in_process(config, handler))  # repaired: the new answers were stored
    assert [r["_cached"] for r in again] == [True] * 5 and len(sent) == 9


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 192 KiB filesystem (tmpfs) that fills up while a read stores its answers."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_cache_whose_disk_fills_up_mid_read_says_so_at_once_and_in_the_summary(small_disk: Path) -> None:
    """Before: with the cache's disk full in the middle of a read, the read ended normally with no
    warning (it was raised, then dropped) and the next read paid again for most answers."""
    def handler(request: httpx.Request) -> httpx.Response:
        question = json.loads(request.content)["messages"][0]["content"]
        return httpx.Response(200, json=chat_reply(f"{question}: " + "a long answer " * 100))

    rows = [{"t": f"question {i}"} for i in range(400)]
    config = {"url": "http://llm.local/v1", "prompt": "{{t}}", "input": {"rows": rows},
              "cache": {"path": str(small_disk / "answers.sqlite")}}
    messages = _read_in_process(config, handler)
    records = _records(messages)
    assert [r["_status"] for r in records] == ["ok"] * 400  # nothing bought is lost from this run's output
    warned = [i for i, m in enumerate(messages) if m["type"] == "LOG" and m["log"]["level"] == "WARN"
              and "stopped storing answers" in m["log"]["message"]]
    assert len(warned) == 1 and "full" in messages[warned[0]]["log"]["message"]
    last_record = max(i for i, m in enumerate(messages) if m["type"] == "RECORD")
    assert warned[0] < last_record  # said when it happened, not dropped
    summary = [m for m in messages if m["type"] == "LOG"][-1]["log"]["message"]
    unkept = int(summary.split("ANSWER CACHE STOPPED STORING: ")[1].split(" answers")[0])
    kept = sum(r["_cached"] for r in _records(_read_in_process(config, handler)))
    assert unkept > 0 and kept + unkept == 400  # the summary counted exactly the answers a rerun pays again
