"""Batch mode on a provider's bad day: a 5xx, a 429, a cut connection or a timeout on any call of the batch
APIs, and a provider that does not echo batch metadata. Nothing is bought twice (counted at the fake batch
server, tests/fake_batch.py with its faults, tests/fake_batch_faults.py), a single blip does not end the
sync, and a sync that does end leaves a STATE from which the next sync finishes the job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from connector import errors
from connector.config.load import load_config
from connector.dialects import dialect_for
from connector.endpoint.batch import Submission, batch_api
from connector.endpoint.batch.retry import BatchRetry
from connector.endpoint.http11 import Http11Transport
from connector.endpoint.limits import WaitCap
from tests.batch_runs import Sync, batch_config, delta, read, rows_of, server_fixture
from tests.fake_batch import Control

pytestmark = pytest.mark.timeout(120)

SHAPES = ["openai_chat_completions", "anthropic_messages", "gemini_generate_content"]
BOUGHT = ("batch_created", "batch_custom_ids_twice", "answers", "bodies_answered_twice")


auto = server_fixture(1)  # batches move one step on every poll
manual = server_fixture(0)  # batches move only when the test says


@pytest.fixture(autouse=True)
def calm(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts and ends with no fault planned and metadata echoed."""
    servers = [request.getfixturevalue(name) for name in ("auto", "manual") if name in request.fixturenames]
    yield
    for server in servers:
        server.clear_faults()
        server.quirks(echo_metadata=True)


def until_complete(config: dict[str, Any], tries: int = 3) -> list[Sync]:
    """Syncs, each from the last one's STATE, until one ends without an error (at most ``tries``)."""
    syncs: list[Sync] = []
    state = None
    while len(syncs) < tries:
        syncs.append(read(config, state))
        state = syncs[-1].state or state
        if syncs[-1].error is None:
            break
    return syncs


def committed_rows(syncs: list[Sync]) -> list[int]:
    return [r["_row_number"] for s in syncs for r in s.committed()]


def config_for(server: Control, shape: str, tag: str, rows: int = 4, **raw: Any) -> dict[str, Any]:
    return batch_config(server.origin, rows_of(rows, tag), shape, **{"max_retries": 3, **raw})


# An ambiguous create: the batch may exist ------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 502}, {"cut": True}], ids=["500", "502", "cut"])
def test_a_create_that_failed_after_the_batch_was_made_is_found_not_bought_twice(shape: str, fault: dict[str, Any],
                                                                                auto: Control) -> None:
    config = config_for(auto, shape, f"unclear create {shape} {fault}")
    before = auto.stats()
    auto.fault("create", when="after", **fault)
    syncs = until_complete(config)
    assert [s.error for s in syncs] == [None]  # one blip does not end the sync
    assert committed_rows(syncs) == [1, 2, 3, 4]
    assert all(r["_status"] == "ok" and r["_batch_id"] for r in syncs[0].records)
    assert any("found in the batch list" in line for line in syncs[0].logs)
    assert delta(auto.stats(), before, *BOUGHT, "batch_faults") == {
        "batch_created": 1, "batch_custom_ids_twice": 0, "answers": 4, "bodies_answered_twice": 0, "batch_faults": 1}


def test_a_create_that_timed_out_after_the_batch_was_made_is_found_not_bought_twice(auto: Control) -> None:
    config = config_for(auto, "openai_chat_completions", "create timed out", timeout=1)
    before = auto.stats()
    auto.fault("create", when="after", hang=2.5)
    syncs = until_complete(config)
    assert [s.error for s in syncs] == [None]
    assert committed_rows(syncs) == [1, 2, 3, 4]
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 1, "batch_custom_ids_twice": 0, "answers": 4,
                                                    "bodies_answered_twice": 0}


@pytest.mark.parametrize("shape", SHAPES)
def test_an_unclear_create_never_confirmed_stays_in_the_state_and_is_looked_for_first(shape: str,
                                                                                     auto: Control) -> None:
    """Every create answers 502 without creating anything; with max_retries 1 the sync ends (transient) keeping
    the batch as unconfirmed, and the next sync looks for it, does not find it, and submits the rows once."""
    config = config_for(auto, shape, f"never confirmed {shape}", max_retries=1)
    before = auto.stats()
    auto.fault("create", status=502, times=2)
    first = read(config)
    assert isinstance(first.error, errors.BatchUnconfirmed) and first.error.failure_type == "transient_error"
    assert "no clear answer" in first.error.message and "looks for it again" in first.error.message
    saved = first.stream_state["batches"]
    assert [(b["id"], b["state"]) for b in saved] == [(None, "unconfirmed")]
    second = read(config, first.state)
    assert second.error is None and [r["_row_number"] for r in second.records] == [1, 2, 3, 4]
    assert any("was never created at the provider" in line for line in second.logs)
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 1, "batch_custom_ids_twice": 0, "answers": 4,
                                                    "bodies_answered_twice": 0}


# One blip does not end the sync ------------------------------------------------------------------------------


def test_a_500_on_the_upload_and_a_429_on_the_create_are_retried(auto: Control) -> None:
    config = config_for(auto, "openai_chat_completions", "blips")
    before = auto.stats()
    auto.fault("upload", status=500)
    auto.fault("create", status=429, retry_after="0")
    syncs = until_complete(config)
    assert [s.error for s in syncs] == [None]
    assert committed_rows(syncs) == [1, 2, 3, 4]
    assert delta(auto.stats(), before, *BOUGHT, "batch_faults", "batch_files_uploaded") == {
        "batch_created": 1, "batch_custom_ids_twice": 0, "answers": 4, "bodies_answered_twice": 0,
        "batch_faults": 2, "batch_files_uploaded": 1}


@pytest.mark.parametrize("shape", ["anthropic_messages", "gemini_generate_content"])
def test_a_429_on_create_is_retried_for_every_provider(shape: str, auto: Control) -> None:
    config = config_for(auto, shape, f"429 {shape}")
    before = auto.stats()
    auto.fault("create", status=429, retry_after="0", times=2)
    syncs = until_complete(config)
    assert [s.error for s in syncs] == [None]
    assert delta(auto.stats(), before, "batch_created", "answers", "batch_faults") == {
        "batch_created": 1, "answers": 4, "batch_faults": 2}


def test_blips_beyond_max_retries_end_the_sync_with_a_transient_error_and_nothing_in_the_state(
        auto: Control) -> None:
    config = config_for(auto, "openai_chat_completions", "too many blips", max_retries=1)
    before = auto.stats()
    auto.fault("upload", status=503, times=2)
    first = read(config)
    assert isinstance(first.error, errors.HTTPStatusError) and first.error.failure_type == "transient_error"
    assert first.stream_state.get("batches", []) == []  # nothing was created: nothing to look for
    second = read(config, first.state)
    assert second.error is None and [r["_row_number"] for r in second.records] == [1, 2, 3, 4]
    assert delta(auto.stats(), before, "batch_created", "answers") == {"batch_created": 1, "answers": 4}


async def test_the_wait_before_a_create_is_sent_again_honours_retry_after(manual: Control) -> None:
    config = load_config(batch_config(manual.origin, rows_of(1), max_retries=3))
    dialect = dialect_for(config)
    transport = Http11Transport()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    try:
        api = batch_api(config, transport, dialect)
        requests = [api.request(f"retry-after-{i}", dialect.build({"messages": [{"role": "user", "content": "x"}]}))
                    for i in range(2)]
        retry = BatchRetry(3, WaitCap(600), "fake", sleep)
        before = manual.stats()
        manual.fault("create", status=429, retry_after="7")
        anchor = await retry.call(lambda: api.prepare(requests, Submission("soc-ra", 2, time.time())))
        batch_id, found = await retry.create(api, requests, Submission("soc-ra", 2, time.time(), anchor))
    finally:
        await transport.aclose()
    assert batch_id and not found
    assert len(slept) == 1 and slept[0] >= 7
    assert delta(manual.stats(), before, "batch_created") == {"batch_created": 1}


# A provider that does not echo metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_a_lost_batch_is_found_without_metadata_by_its_input_file_size_and_time(shape: str,
                                                                               manual: Control) -> None:
    """Two batches of the same size; the second one's create answer was lost (the id is not in the STATE, as
    after a kill). The provider echoes no metadata: the batch is found by its input file (OpenAI-format), or
    by its size, model and creation time among the batches not known to hold other rows."""
    config = batch_config(manual.origin, rows_of(8, f"no metadata {shape}"), shape,
                          batch={"wait": False, "max_requests_per_batch": 4})
    manual.quirks(echo_metadata=False)
    before = manual.stats()
    first = read(config)
    assert first.error is None
    lost = first.state
    assert lost is not None
    saved = lost[0]["stream"]["stream_state"]["batches"]
    ids = [b["id"] for b in saved]
    saved[1]["id"], saved[1]["state"] = None, "submitting"  # as if killed before the create's answer
    for batch_id in ids:
        manual.advance(batch_id, steps=4)
    second = read(config, lost)
    assert second.error is None
    assert any(f"re-attached batch {ids[1]}" in line for line in second.logs)
    assert [r["_batch_id"] for r in second.records] == [ids[0]] * 4 + [ids[1]] * 4
    assert delta(manual.stats(), before, *BOUGHT) == {"batch_created": 2, "batch_custom_ids_twice": 0, "answers": 8,
                                                      "bodies_answered_twice": 0}


# Polls and downloads ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_5xx_on_polls_and_downloads_neither_lose_nor_rebuy_a_batch(shape: str, auto: Control) -> None:
    config = config_for(auto, shape, f"poll faults {shape}", max_retries=1)
    before = auto.stats()
    auto.fault("poll", status=503, times=2)  # more than max_retries in a row: the first sync ends
    auto.fault("download", status=502, when="after")
    syncs = until_complete(config)
    assert syncs[-1].error is None
    assert all(isinstance(s.error, errors.EndpointError) for s in syncs[:-1])
    assert committed_rows(syncs) == [1, 2, 3, 4]
    assert delta(auto.stats(), before, *BOUGHT) == {"batch_created": 1, "batch_custom_ids_twice": 0, "answers": 4,
                                                    "bodies_answered_twice": 0}


def test_retry_policy_settles_on_the_provider_call_not_a_second_create(manual: Control) -> None:
    """A create that answered 500 after creating, then a list that answers 500 once: the lookup is retried, not
    the create."""
    config = batch_config(manual.origin, rows_of(2, "list fails once"), max_retries=3, batch={"wait": False})
    before = manual.stats()
    manual.fault("create", status=500, when="after")
    manual.fault("list", status=500)
    sync = read(config)
    assert sync.error is None
    assert delta(manual.stats(), before, "batch_created", "batch_faults") == {"batch_created": 1, "batch_faults": 2}
    assert [b["id"] is not None for b in sync.stream_state["batches"]] == [True]
