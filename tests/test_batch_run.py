"""Batch mode end to end, in-process ``read`` against the fake batch server (tests/fake_batch.py, its
own process): records in input order with the normal read's columns plus ``_batch_id``, the STATE
carrying the batches across syncs, every row once, nothing bought twice (counted at the server)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from connector.airbyte import commands
from connector.answers.records import META_COLUMNS
from connector.dialects.openai_chat import ChatDialect
from connector.endpoint.batch import BatchLimits
from connector.errors import BatchFailed, StateError
from tests.batch_runs import KEY, batch_config, delta, fake_batch_server, read, rows_of, server_fixture
from tests.conftest import catalog_for, progress_of
from tests.fake_batch import Control

pytestmark = pytest.mark.timeout(120)

SHAPES = ["openai_chat_completions", "openai_responses", "azure_openai", "anthropic_messages",
          "gemini_generate_content"]
BOUGHT = ("batch_created", "batch_requests", "batch_custom_ids_twice", "answers", "bodies_answered_twice")


auto = server_fixture(1)  # batches move one step on every poll
manual = server_fixture(0)  # batches move only when the test says


def cached_answers(path: Path) -> int:
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT count(*) FROM answers").fetchone()[0])
    finally:
        db.close()


def schema_columns(config: dict[str, Any]) -> set[str]:
    async def go() -> dict[str, Any]:
        async for message in commands.discover(config):
            return dict(message["catalog"]["streams"][0]["json_schema"]["properties"])
        raise AssertionError("no catalog")

    return set(asyncio.run(go()))


@pytest.mark.parametrize("shape", SHAPES)
def test_a_batch_read_runs_to_completion_with_every_row_in_order(shape: str, auto: Control) -> None:
    config = batch_config(auto.origin, rows_of(5, shape), shape)
    before = auto.stats()
    sync = read(config)
    assert sync.error is None, sync.error
    records = sync.records
    assert [r["_row_number"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["answer"] for r in records] == [f"echo: Say {shape} row {i}" for i in range(1, 6)]
    assert all(r["_status"] == "ok" and r["_batch_id"] and not r["_cached"] for r in records)
    assert len({r["_batch_id"] for r in records}) == 1
    assert set(records[0]) == schema_columns(config)  # what discover declares, _batch_id included
    assert progress_of(sync.stream_state) == {"position": 5}  # no batch left in the STATE
    assert sync.statuses[-1] == "COMPLETE"
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 1, "batch_requests": 5,
                                                    "batch_custom_ids_twice": 0, "answers": 5,
                                                    "bodies_answered_twice": 0}


def test_batch_records_have_the_columns_and_answers_of_a_normal_read(auto: Control) -> None:
    rows = rows_of(3, "compare")
    normal = read(batch_config(auto.origin, rows, batch={"enabled": False}))
    batched = read(batch_config(auto.origin, rows))
    assert [set(r) for r in batched.records] == [set(r) for r in normal.records]
    volatile = {"_batch_id", "_latency_ms", "_attempts"}
    for a, b in zip(normal.records, batched.records, strict=True):
        assert {k: v for k, v in a.items() if k not in volatile} == {k: v for k, v in b.items() if k not in volatile}
        assert a["_batch_id"] is None and b["_batch_id"] is not None and b["_latency_ms"] is None


def test_the_summary_counts_what_the_batches_cost_at_the_batch_price(auto: Control) -> None:
    prices = {"*": {"input_per_million": 1_000_000, "output_per_million": 2_000_000, "batch_discount": 0.5}}
    sync = read(batch_config(auto.origin, rows_of(2, "priced"), prices=prices))
    for record in sync.records:
        full = record["_prompt_tokens"] * 1 + record["_completion_tokens"] * 2
        assert record["_cost"] == pytest.approx(full / 2)
    (summary,) = [line for line in sync.logs if " rows in " in line]
    assert "answered by batches: 2;" in summary
    assert f"cost {sum(r['_cost'] for r in sync.records):.4f}" in summary


def test_without_wait_each_sync_emits_the_rows_whose_batches_ended_in_order(manual: Control, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"
    config = batch_config(manual.origin, rows_of(7, "hourly"), cache=cache,
                          batch={"wait": False, "max_requests_per_batch": 3})
    before = manual.stats()

    first = read(config)  # submits three batches, nothing has ended
    assert first.error is None and first.records == []
    saved = first.stream_state
    assert saved["position"] == 0 and [b["rows"] for b in saved["batches"]] == [[[1, 3]], [[4, 6]], [[7, 7]]]
    ids = [b["id"] for b in saved["batches"]]
    assert all(ids) and first.statuses[-1] == "INCOMPLETE"
    assert any("7 rows are waiting for provider batches" in line for line in first.logs)

    manual.advance(ids[1], steps=4)  # the middle batch ends first
    second = read(config, first.state)
    assert second.error is None and second.records == []  # row 1 still waits: nothing can be emitted before it
    assert second.stream_state == {**saved, "batches": [{**b, "state": s} for b, s in zip(
        saved["batches"], ["validating", "completed", "validating"], strict=True)]}
    assert cached_answers(cache) == 3  # but the answers that came are kept

    manual.advance(ids[0], steps=4)
    third = read(config, second.state)
    assert [r["_row_number"] for r in third.records] == [1, 2, 3, 4, 5, 6]
    assert [r["_batch_id"] for r in third.records] == [ids[0]] * 3 + [ids[1]] * 3
    assert third.stream_state["position"] == 6 and [b["id"] for b in third.stream_state["batches"]] == [ids[2]]
    assert any("1 rows are waiting" in line for line in third.logs)

    manual.advance(ids[2], steps=4)
    fourth = read(config, third.state)
    assert [r["_row_number"] for r in fourth.records] == [7]
    assert progress_of(fourth.stream_state) == {"position": 7} and fourth.statuses[-1] == "COMPLETE"

    grown = {**config, "input": {"rows": rows_of(9, "hourly")}}  # two rows appended: only they are submitted
    fifth = read(grown, fourth.state)
    assert fifth.records == [] and [b["rows"] for b in fifth.stream_state["batches"]] == [[[8, 9]]]
    manual.advance(steps=4)
    sixth = read(grown, fifth.state)
    assert [r["_row_number"] for r in sixth.records] == [8, 9]

    emitted = [r["_row_number"] for s in (first, second, third, fourth, fifth, sixth) for r in s.records]
    assert emitted == list(range(1, 10))  # every row exactly once, in order
    assert delta(manual.stats(), before, *BOUGHT) == {"batch_created": 4, "batch_requests": 9,
                                                      "batch_custom_ids_twice": 0, "answers": 9,
                                                      "bodies_answered_twice": 0}


@pytest.mark.parametrize("shape", ["openai_chat_completions", "anthropic_messages", "gemini_generate_content"])
def test_a_batch_created_but_not_seen_is_found_again_not_submitted_twice(shape: str, manual: Control) -> None:
    config = batch_config(manual.origin, rows_of(2, f"lost {shape}"), shape, batch={"wait": False})
    before = manual.stats()
    first = read(config)
    lost = first.state
    assert lost is not None
    entry = lost[0]["stream"]["stream_state"]["batches"][0]
    batch_id, entry["id"], entry["state"] = entry["id"], None, "submitting"  # as if killed before the answer
    manual.advance(batch_id, steps=4)
    second = read(config, lost)
    assert [r["_batch_id"] for r in second.records] == [batch_id, batch_id]
    assert any(f"re-attached batch {batch_id}" in line for line in second.logs)
    assert delta(manual.stats(), before, "batch_created", "answers") == {"batch_created": 1, "answers": 2}


def test_a_batch_whose_create_never_arrived_is_submitted_again(manual: Control) -> None:
    config = batch_config(manual.origin, rows_of(2, "never"), batch={"wait": False})
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"}, "stream_state": {
        "position": 0, "batches": [{"id": None, "fingerprint": "soc-never-created", "since": 1.0, "size": 2,
                                    "rows": [[1, 2]], "state": "submitting"}]}}}]
    before = manual.stats()
    sync = read(config, state)
    assert any("was never created at the provider" in line for line in sync.logs)
    assert [b["rows"] for b in sync.stream_state["batches"]] == [[[1, 2]]]
    assert delta(manual.stats(), before, "batch_created") == {"batch_created": 1}


def test_a_batch_for_requests_the_rows_no_longer_ask_is_cancelled_and_replaced(manual: Control) -> None:
    config = batch_config(manual.origin, rows_of(2, "edited"), batch={"wait": False})
    first = read(config)
    old = first.stream_state["batches"][0]["id"]
    edited = {**config, "prompt": "Now say {{text}}"}
    before = manual.stats()
    second = read(edited, first.state)
    assert any(f"batch {old}" in line and "cancelled" in line for line in second.logs)
    assert delta(manual.stats(), before, "batch_cancels", "batch_created") == {"batch_cancels": 1,
                                                                                "batch_created": 1}
    new = second.stream_state["batches"][0]["id"]
    assert new != old
    manual.advance(new, steps=4)
    third = read(edited, second.state)
    assert [r["answer"] for r in third.records] == ["echo: Now say edited row 1", "echo: Now say edited row 2"]


def test_old_states_without_batches_still_resume_at_their_position(auto: Control) -> None:
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                           "stream_state": {"position": 3}}}]
    sync = read(batch_config(auto.origin, rows_of(5, "old state")), state)
    assert [r["_row_number"] for r in sync.records] == [4, 5]


def test_a_state_of_another_input_is_refused_before_any_batch_is_submitted(auto: Control) -> None:
    first = read(batch_config(auto.origin, rows_of(3, "foreign state")))
    assert first.error is None and first.stream_state["position"] == 3
    before = auto.stats()
    other = read(batch_config(auto.origin, rows_of(5, "another input")), first.state)  # rows 1..3 differ
    assert isinstance(other.error, StateError) and "does not belong to this input" in other.error.message
    assert other.records == []
    # Was 1 batch of rows 4..5 created (and paid) before pass two refused the state.
    assert delta(auto.stats(), before, *BOUGHT) == dict.fromkeys(BOUGHT, 0)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "anthropic_messages"])
def test_items_that_did_not_run_are_asked_again_normally_and_item_errors_are_the_rows(shape: str,
                                                                                       auto: Control) -> None:
    rows = rows_of(5, f"items {shape}", r2="late [[fake:slow]]", r3="bad [[fake:item-error-400]]",
                   r4="busy [[fake:item-error-503]]")
    config = batch_config(auto.origin, rows, shape, max_retries=1)
    auto.plan("expire")
    try:
        sync = read(config)
    finally:
        auto.plan("complete")
    assert sync.error is None, sync.error
    by_row = {r["_row_number"]: r for r in sync.records}
    batch_id = by_row[1]["_batch_id"]
    assert by_row[1]["_status"] == "ok" and batch_id
    assert by_row[2]["_status"] == "ok" and by_row[2]["_batch_id"] is None  # expired: a normal request answered
    assert by_row[3]["_status"] == "error" and by_row[3]["_error_class"] == "bad_request"
    assert by_row[3]["_batch_id"] == batch_id and batch_id in by_row[3]["_error"]
    assert by_row[4]["_batch_id"] is None  # 503 in the batch: asked again as a normal request
    assert any("were asked again as normal requests" in line for line in sync.logs)
    summary = next(line for line in sync.logs if "rows by status" in line)
    assert "answered by batches: 2;" in summary  # rows 1 and 5: row 3's batch item is an error, not an answer


def test_a_gemini_batch_that_expired_returns_nothing_so_every_row_is_asked_normally(auto: Control) -> None:
    auto.plan("expire")
    try:
        rows = rows_of(2, "gemini expired", r2="[[fake:slow]] late")
        sync = read(batch_config(auto.origin, rows, "gemini_generate_content"))
    finally:
        auto.plan("complete")
    assert [r["_status"] for r in sync.records] == ["ok", "ok"]
    assert [r["_batch_id"] for r in sync.records] == [None, None]


def test_a_batch_that_failed_as_a_whole_is_an_error_with_the_reason_and_its_rows_go_again(auto: Control) -> None:
    config = batch_config(auto.origin, rows_of(4, "failing"), batch={"max_requests_per_batch": 2})
    reason = "Enqueued token limit reached for m in organization org-1."
    auto.plan("fail", reason=reason)
    try:
        failed = read(config)
    finally:
        auto.plan("complete")
    assert isinstance(failed.error, BatchFailed) and reason in failed.error.message
    assert failed.error.failure_type == "transient_error" and "1 more failed too" in failed.error.message
    assert failed.records == [] and progress_of(failed.stream_state) == {"position": 0}  # both dropped from the STATE
    assert failed.statuses[-1] == "INCOMPLETE"
    before = auto.stats()
    again = read(config, failed.state)
    assert [r["_row_number"] for r in again.records] == [1, 2, 3, 4]
    assert delta(auto.stats(), before, "batch_created", "answers") == {"batch_created": 2, "answers": 4}


def test_identical_requests_are_bought_once(auto: Control, tmp_path: Path) -> None:
    rows = rows_of(4, "twins", r3="twins row 1", r4="twins row 1")
    before = auto.stats()
    sync = read(batch_config(auto.origin, rows, cache=tmp_path / "c.sqlite"))
    assert [r["answer"] for r in sync.records] == ["echo: Say twins row 1", "echo: Say twins row 2",
                                                    "echo: Say twins row 1", "echo: Say twins row 1"]
    assert [r["_cached"] for r in sync.records] == [False, False, True, True]
    assert delta(auto.stats(), before, "batch_requests", "answers") == {"batch_requests": 2, "answers": 2}


def test_answers_already_in_the_cache_are_not_submitted(auto: Control, tmp_path: Path) -> None:
    config = batch_config(auto.origin, rows_of(3, "cached"), cache=tmp_path / "c.sqlite")
    read(config)
    before = auto.stats()
    again = read(config)
    assert [r["_cached"] for r in again.records] == [True, True, True]
    assert delta(auto.stats(), before, "batch_created", "answers") == {"batch_created": 0, "answers": 0}


def test_max_requests_caps_what_is_submitted_and_stops_cleanly_before_the_rest(auto: Control) -> None:
    before = auto.stats()
    sync = read(batch_config(auto.origin, rows_of(5, "guarded"), max_requests=3))
    assert sync.error is None
    assert [r["_row_number"] for r in sync.records] == [1, 2, 3]
    assert progress_of(sync.stream_state) == {"position": 3}
    assert any("2 rows were not submitted" in line for line in sync.logs)
    assert delta(auto.stats(), before, "batch_requests", "answers") == {"batch_requests": 3, "answers": 3}


def test_the_state_keeps_no_batch_a_full_refresh_finished(auto: Control) -> None:
    sync = read(batch_config(auto.origin, rows_of(2, "full")), sync_mode="full_refresh")
    assert progress_of(sync.stream_state) == {"position": 2, "sync_complete": True}


def test_meta_columns_declare_the_batch_id() -> None:
    assert META_COLUMNS["_batch_id"]["type"] == ["null", "string"]


def test_discover_for_a_batch_config_declares_every_record_column(auto: Control) -> None:
    assert "_batch_id" in schema_columns(batch_config(auto.origin, rows_of(1)))


def test_the_catalog_helper_is_shared() -> None:
    assert catalog_for()["streams"][0]["stream"]["name"] == "enriched_rows" and KEY


async def _run_tight(origin: str, rows: list[dict[str, Any]], limits: BatchLimits) -> list[dict[str, Any]]:
    """A batch run whose protocol is cut to ``limits`` (a server with the same limits refuses more)."""
    from connector.config.load import load_config
    from connector.endpoint.batch.http import BatchHTTP
    from connector.endpoint.batch.openai_batches import OpenAIBatches
    from connector.pipeline.batch_run import run_batches
    from connector.pipeline.prepare import prepare
    from connector.pipeline.run_loop import RecordOut

    config = load_config(batch_config(origin, rows))
    async with prepare(config) as ctx:
        dialect = ctx.dialect
        assert isinstance(dialect, ChatDialect)
        api = OpenAIBatches(dialect, BatchHTTP(ctx.transport, dialect, 10), limits=limits)
        return [event.data async for event in run_batches(ctx, api) if isinstance(event, RecordOut)]


def test_rows_are_cut_into_batches_within_the_request_and_byte_limits() -> None:
    # Three requests or 2,500 bytes per file at this server; short rows hit the count, long ones the size.
    with fake_batch_server("--advance-every", "1", "--openai-max-requests", "3",
                           "--openai-max-bytes", "2500") as tight:
        rows = rows_of(7, "short") + [{"id": 100 + i, "text": f"long {i} " + "y" * 900} for i in range(5)]
        records = asyncio.run(_run_tight(tight.origin, rows, BatchLimits(3, 2500)))
        batches = tight.batches()
    assert [r["_row_number"] for r in records] == list(range(1, 13))
    assert all(r["_status"] == "ok" and r["_batch_id"] for r in records)
    sizes = [len(b["items"]) for b in batches]
    assert all(b["status"] == "completed" for b in batches)  # the server took each: within both limits
    assert sum(sizes) == 12 and max(sizes) == 3
    assert len(batches) > 12 // 3  # the count alone would make four: the byte limit cut the long rows
    assert len({r["_batch_id"] for r in records}) == len(batches)


def test_a_live_bar_shows_the_providers_counts_while_the_batches_run(auto: Control) -> None:
    from connector.pipeline.progress_bar import PlainBar

    drawn = io.StringIO()
    config = batch_config(auto.origin, rows_of(3, "bar"))

    async def go() -> list[dict[str, Any]]:
        return [m async for m in commands.read(config, catalog_for(), None, progress=PlainBar(drawn))]

    messages = asyncio.run(go())
    assert sum(m["type"] == "RECORD" for m in messages) == 3
    assert "enriched_rows provider batches: 0 of 3 requests done" in drawn.getvalue()  # while nothing moves
    assert "3/3 rows" in drawn.getvalue()  # then the rows, as in any read


def test_a_state_with_batches_read_without_batch_mode_says_what_happens_to_them(manual: Control) -> None:
    config = batch_config(manual.origin, rows_of(2, "switched off"), batch={"wait": False})
    first = read(config)
    batch_id = first.stream_state["batches"][0]["id"]
    normal = read({**config, "batch": {"enabled": False}}, first.state)
    assert [r["_batch_id"] for r in normal.records] == [None, None]
    assert any(f"lists 1 provider batches ({batch_id})" in line and "batch.enabled is off" in line
               for line in normal.logs)
    assert progress_of(normal.stream_state) == {"position": 2}


def test_embeddings_go_through_the_openai_batch_api_one_row_a_line(auto: Control) -> None:
    from tests.fake_batch_answers import embedding_for

    rows = rows_of(4, "embeddings")
    config = batch_config(auto.origin, rows, "openai_embeddings", prompt="{{text}}",
                          embeddings={"inputs_per_request": 4})
    before = auto.stats()
    sync = read(config)
    assert sync.error is None, sync.error
    records = sync.records
    assert [r["embedding"] for r in records] == [embedding_for(row["text"]) for row in rows]
    assert all(r["_status"] == "ok" and r["_batch_id"] and r["_completion_tokens"] == 0 for r in records)
    assert [r["_prompt_tokens"] for r in records] == [len(row["text"]) // 4 + 1 for row in rows]
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 1, "batch_requests": 4,
                                                    "batch_custom_ids_twice": 0, "answers": 4,
                                                    "bodies_answered_twice": 0}
