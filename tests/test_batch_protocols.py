"""The batch protocols (connector/endpoint/batch/) against the fake batch server (tests/fake_batch.py).

One server for the module, driven by hand (``--advance-every 0``: a batch moves only on
``POST /_advance``), so each test sees every lifecycle state it asks for; the counts at the
server say what was submitted and what was bought.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from connector import errors
from connector.config.load import load_config
from connector.config.parts import parts_of
from connector.endpoint.batch import (
    BatchAPI,
    BatchLimits,
    BatchRequest,
    Submission,
    batch_api,
    check_custom_id,
    chunk,
)
from connector.endpoint.batch import fingerprint as fingerprint_of
from connector.endpoint.batch import submit as submit_once
from connector.endpoint.batch.http import BatchHTTP
from connector.endpoint.batch.openai_batches import OpenAIBatches
from connector.endpoint.batch.protocol_base import BatchStatus, ItemResult
from connector.endpoint.classify import classify
from connector.endpoint.http11 import Http11Transport
from connector.endpoint.transport import HttpxTransport
from tests.conftest import dialect_of
from tests.fake_batch import Control
from tests.fake_openai import spawn

pytestmark = pytest.mark.timeout(60)

KEY = "sk-batch-test-key-0123456789"
SHAPES = ["openai_chat_completions", "openai_responses", "azure_dated", "azure_v1", "anthropic_messages",
          "gemini_generate_content"]


class Fake(Control):
    def advance_one(self, batch_id: str, steps: int = 1) -> str:
        return str(self.advance(batch_id, steps)[0]["status"])


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    with spawn("--api-key", KEY, "--advance-every", "0", module="tests.fake_batch") as (base, _pid):
        yield Fake(base.removesuffix("/v1"))


def config_for(shape: str, origin: str, **raw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"api_key": KEY, "model": "m", "prompt": "{{t}}", "input": {"rows": [{"t": "x"}]},
                            "max_retries": 0, "timeout": 10}
    if shape.startswith("azure"):
        version = "v1" if shape == "azure_v1" else "2024-10-21"
        base.update(api_compatibility="azure_openai", azure={"endpoint": origin, "api_version": version})
    else:
        suffix = {"gemini_generate_content": "/v1beta"}.get(shape, "/v1")
        base.update(api_compatibility=shape, url=origin + suffix)
    base.update(raw)
    return base


@pytest.fixture
async def transport() -> AsyncIterator[Http11Transport]:
    t = Http11Transport()
    yield t
    await t.aclose()


def protocol(shape: str, fake: Fake, transport: Any, **raw: Any) -> tuple[BatchAPI, Any]:
    config = load_config(config_for(shape, fake.origin, **raw))
    dialect = dialect_of(config)
    return batch_api(parts_of(config).request, transport, dialect), dialect


def requests_for(api: BatchAPI, dialect: Any, texts: dict[str, str]) -> list[BatchRequest]:
    return [api.request(cid, dialect.build({"messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": text}]}))
            for cid, text in texts.items()]


async def submit(api: BatchAPI, requests: list[BatchRequest]) -> tuple[str, Submission]:
    ids = tuple(r.custom_id for r in requests)
    submission = Submission(fingerprint_of(ids), len(ids), time.time())
    return await submit_once(api, requests, submission), submission


async def walk(api: BatchAPI, fake: Fake, batch_id: str) -> list[BatchStatus]:
    """Poll, advance, poll... until the batch is over; every status seen."""
    seen = [await api.poll(batch_id)]
    while not seen[-1].over:
        assert len(seen) < 10, [s.state for s in seen]
        fake.advance_one(batch_id)
        seen.append(await api.poll(batch_id))
    return seen


def by_id(results: list[ItemResult]) -> dict[str, ItemResult]:
    return {r.custom_id: r for r in results}


def text_of(result: ItemResult) -> str:
    assert result.reply is not None, result.error
    return str(result.reply["choices"][0]["message"]["content"])


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_batch_runs_to_completion_and_maps_every_answer_back(shape: str, fake: Fake, transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    before = fake.stats()
    texts = {"r1": f"one {shape}", "r2": f"two {shape}", "r3": "bad [[fake:item-error-400]]"}
    requests = requests_for(api, dialect, texts)
    batch_id, _ = await submit(api, requests)
    statuses = await walk(api, fake, batch_id)
    results = await api.results(statuses[-1], ["r1", "r2", "r3"])

    assert [r.custom_id for r in results] == ["r1", "r2", "r3"]
    found = by_id(results)
    assert text_of(found["r1"]) == f"echo: one {shape}" and text_of(found["r2"]) == f"echo: two {shape}"
    assert found["r1"].reply is not None and found["r1"].reply["usage"]["completion_tokens"] > 0
    error = found["r3"].error
    assert isinstance(error, errors.HTTPStatusError) and error.status == 400 and classify(error) == "bad_request"
    assert batch_id in error.message and "r3" in error.message
    phases = [s.phase for s in statuses]
    assert phases[-1] == "ended" and "running" in phases
    assert statuses[-1].counts.succeeded == 2 and statuses[-1].counts.errored == 1
    after = fake.stats()
    assert after["batch_created"] - before.get("batch_created", 0) == 1
    assert after["answers"] - before.get("answers", 0) == 2  # the errored request was not bought
    assert after["bodies_answered_twice"] == before.get("bodies_answered_twice", 0) == 0


@pytest.mark.parametrize(("shape", "states"), [
    ("openai_chat_completions", ["validating", "in_progress", "in_progress", "finalizing", "completed"]),
    ("anthropic_messages", ["in_progress", "in_progress", "ended"]),
    ("gemini_generate_content", ["BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_RUNNING",
                                 "BATCH_STATE_SUCCEEDED"]),
])
async def test_each_lifecycle_state_is_read_with_its_progress(shape: str, states: list[str], fake: Fake,
                                                             transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"a": "fast", "b": "late [[fake:slow]]"}))
    statuses = await walk(api, fake, batch_id)
    assert [s.state for s in statuses] == states
    partial = [s for s in statuses if s.counts.succeeded == 1 and not s.over]
    assert partial and partial[0].counts.pending == 1  # progress: one of two answered while running


@pytest.mark.parametrize("shape", ["openai_chat_completions", "anthropic_messages", "gemini_generate_content"])
async def test_an_expired_batch_keeps_what_it_answered_and_leaves_the_rest_unfinished(
        shape: str, fake: Fake, transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"done": "quick", "late": "[[fake:slow]] late"}))
    fake.plan("expire", batch_id)
    statuses = await walk(api, fake, batch_id)
    assert statuses[-1].phase == "ended"
    found = by_id(await api.results(statuses[-1], ["done", "late"]))
    assert isinstance(found["late"].error, errors.BatchItemUnfinished) and found["late"].error.retryable
    if shape == "gemini_generate_content":  # Gemini: an expired batch returns no results at all
        assert isinstance(found["done"].error, errors.BatchItemUnfinished)
        assert "expired batch returns no results" in found["done"].error.message
    else:
        assert text_of(found["done"]) == "echo: quick"
        assert "expired" in found["late"].error.message


@pytest.mark.parametrize("shape", ["openai_chat_completions", "gemini_generate_content"])
async def test_a_batch_that_failed_as_a_whole_gives_the_providers_reason(shape: str, fake: Fake,
                                                                        transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"x": "one"}))
    reason = "Enqueued token limit reached for m. Please try submitting your batch again later."
    fake.plan("fail", batch_id, reason)
    status = (await walk(api, fake, batch_id))[-1]
    assert status.phase == "failed" and status.failure is not None and reason in status.failure
    assert status.failure_retryable


async def test_an_anthropic_batch_cannot_fail_as_a_whole_so_every_request_errors(fake: Fake, transport: Any) -> None:
    api, dialect = protocol("anthropic_messages", fake, transport)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"x": "one", "y": "two"}))
    fake.plan("fail", batch_id, "overloaded")
    status = (await walk(api, fake, batch_id))[-1]
    assert status.phase == "ended" and status.counts.errored == 2
    for result in await api.results(status, ["x", "y"]):
        assert isinstance(result.error, errors.HTTPStatusError) and classify(result.error) == "server"


async def test_openai_validation_failure_names_the_lines_and_is_not_worth_resubmitting(fake: Fake,
                                                                                       transport: Any) -> None:
    api, dialect = protocol("openai_chat_completions", fake, transport)
    good = requests_for(api, dialect, {"a": "one"})[0]
    twin = BatchRequest("a", good.model, good.entry)  # the same custom_id twice: the provider refuses the file
    batch_id, _ = await submit(api, [good, twin])
    status = (await walk(api, fake, batch_id))[-1]
    assert status.phase == "failed" and status.failure is not None
    assert "line 2: duplicate_custom_id" in status.failure and not status.failure_retryable


@pytest.mark.parametrize("shape", ["openai_chat_completions", "anthropic_messages", "gemini_generate_content"])
async def test_a_cancelled_batch_returns_the_answered_requests_and_the_rest_unfinished(
        shape: str, fake: Fake, transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"p": "answered", "q": "[[fake:slow]] never"}))
    fake.advance(batch_id, 1 if shape == "anthropic_messages" else 2)  # running, one of two answered
    await api.cancel(batch_id)
    statuses = await walk(api, fake, batch_id)
    assert statuses[-1].phase == "ended"
    found = by_id(await api.results(statuses[-1], ["p", "q"]))
    assert text_of(found["p"]) == "echo: answered"
    assert isinstance(found["q"].error, errors.BatchItemUnfinished)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "azure_dated", "anthropic_messages",
                                   "gemini_generate_content"])
async def test_a_batch_whose_create_answer_was_lost_is_found_again(shape: str, fake: Fake, transport: Any) -> None:
    api, dialect = protocol(shape, fake, transport)
    requests = requests_for(api, dialect, {f"lost-{shape[:6]}-{i}": f"n{i}" for i in range(5)})
    batch_id, submission = await submit(api, requests)
    assert await api.find(submission) == batch_id
    other = Submission(fingerprint_of(("nobody",)), 1, submission.since)
    assert await api.find(other) is None


async def test_anthropic_finds_a_lost_batch_by_its_anchor_size_and_time_never_a_known_one(fake: Fake,
                                                                                       transport: Any) -> None:
    """Message Batches carry no caller metadata: a lost batch is a batch of its size listed above its anchor
    (the newest batch before its create), not known to hold other rows, created nearest to its create."""
    api, dialect = protocol("anthropic_messages", fake, transport)
    requests = {name: requests_for(api, dialect, {f"twin-{name}-{i}": f"{name}{i}" for i in range(7)})
                for name in ("a", "b")}
    anchored: dict[str, Submission] = {}
    created: dict[str, str] = {}
    for name, chunk_of in requests.items():
        ids = tuple(r.custom_id for r in chunk_of)
        submission = Submission(fingerprint_of(ids), len(ids), time.time())
        anchored[name] = replace(submission, anchor=await api.prepare(chunk_of, submission))
        created[name] = await api.create(chunk_of, anchored[name])
    assert anchored["b"].anchor == created["a"]  # b's anchor: a was the newest batch before b's create
    assert await api.find(anchored["b"]) == created["b"]  # a is below the anchor
    assert await api.find(anchored["a"], exclude={created["b"]}) == created["a"]
    assert await api.find(anchored["a"], exclude={created["a"], created["b"]}) is None
    other_size = Submission(fingerprint_of(("x",)), 3, anchored["a"].since, anchored["a"].anchor)
    assert await api.find(other_size) is None


def test_requests_are_cut_by_count_bytes_and_model_in_order() -> None:
    def req(cid: str, model: str = "m", size: int = 10) -> BatchRequest:
        return BatchRequest(cid, model, b"x" * size)

    by_count = chunk([req(str(i)) for i in range(7)], BatchLimits(max_requests=3, max_bytes=10**6))
    assert [[r.custom_id for r in b] for b in by_count.batches] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    # 10-byte entries cost 11 (a separator each): three fit in 40 bytes less a 5-byte overhead, not four.
    by_bytes = chunk([req(str(i)) for i in range(5)], BatchLimits(max_requests=None, max_bytes=40, overhead=5))
    assert [len(b) for b in by_bytes.batches] == [3, 2]
    mixed = chunk([req("a", "m1"), req("b", "m2"), req("c", "m1")], BatchLimits(None, 10**6, one_model=True))
    assert [[r.custom_id for r in b] for b in mixed.batches] == [["a", "c"], ["b"]]
    anthropic_like = chunk([req("a", "m1"), req("b", "m2")], BatchLimits(None, 10**6, one_model=False))
    assert len(anthropic_like.batches) == 1
    oversize = chunk([req("small"), req("huge", size=100)], BatchLimits(None, 50))
    assert [r.custom_id for r in oversize.too_large] == ["huge"]
    assert [[r.custom_id for r in b] for b in oversize.batches] == [["small"]]


async def test_chunks_within_the_servers_limits_are_accepted_and_past_them_refused(transport: Any) -> None:
    """A server with an OpenAI file limit of 3 requests / 1,500 bytes: chunks cut to it pass, a bigger file fails."""
    with spawn("--api-key", KEY, "--advance-every", "1", "--openai-max-requests", "3", "--openai-max-bytes", "1500",
               module="tests.fake_batch") as (base, _pid):
        fake = Fake(base.removesuffix("/v1"))
        config = load_config(config_for("openai_chat_completions", fake.origin))
        dialect = dialect_of(config)
        tight = OpenAIBatches(dialect, BatchHTTP(transport, dialect, 10), limits=BatchLimits(3, 1500))
        short = requests_for(tight, dialect, {f"s{i}": f"short {i}" for i in range(7)})
        assert [len(b) for b in chunk(short, tight.limits).batches] == [3, 3, 1]  # the count limit cuts
        requests = requests_for(tight, dialect, {f"row{i}": f"text {i} " + "y" * 450 for i in range(8)})
        cut = chunk(requests, tight.limits)
        assert [len(b) for b in cut.batches] == [2, 2, 2, 2]  # ~0.5 kB each: the byte limit cuts
        assert all(sum(len(r.entry) + 1 for r in b) <= 1500 for b in cut.batches)
        answered = {}
        for part in cut.batches:
            batch_id, _ = await submit(tight, part)
            status = (await walk(tight, fake, batch_id))[-1]
            answered.update(by_id(await tight.results(status, [r.custom_id for r in part])))
        assert sorted(answered) == sorted(r.custom_id for r in requests)
        assert all(r.reply is not None for r in answered.values())
        assert fake.stats()["batch_custom_ids_twice"] == 0

        uncut, _ = await submit(tight, requests)  # all eight in one file: past both limits
        status = (await walk(tight, fake, uncut))[-1]
        assert status.phase == "failed" and status.failure is not None
        assert "too_many_requests" in status.failure and "file_too_large" in status.failure


def test_entries_are_the_providers_batch_input_shapes(fake: Fake) -> None:
    raw = {"stream": True, "parameters": {"max_tokens": 50}}
    shapes: dict[str, dict[str, Any]] = {}
    for shape in ("openai_chat_completions", "azure_dated", "anthropic_messages", "gemini_generate_content"):
        api, dialect = protocol(shape, fake, None, **raw)
        shapes[shape] = json.loads(requests_for(api, dialect, {"id-1": "hello"})[0].entry)
    line = shapes["openai_chat_completions"]
    assert line["custom_id"] == "id-1" and line["method"] == "POST" and line["url"] == "/v1/chat/completions"
    assert "stream" not in line["body"] and "stream_options" not in line["body"] and line["body"]["max_tokens"] == 50
    assert shapes["azure_dated"]["url"] == "/chat/completions" and shapes["azure_dated"]["body"]["model"] == "m"
    anthropic = shapes["anthropic_messages"]
    assert set(anthropic) == {"custom_id", "params"} and anthropic["params"]["system"] == "Be brief."
    assert "stream" not in anthropic["params"] and anthropic["params"]["max_tokens"] == 50
    gemini = shapes["gemini_generate_content"]
    assert gemini["metadata"] == {"key": "id-1"} and "model" not in gemini["request"]
    assert gemini["request"]["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
    assert gemini["request"]["generationConfig"]["maxOutputTokens"] == 50


@pytest.mark.parametrize(("shape", "extra", "needs"), [
    ("amazon_bedrock", {"bedrock": {"region": "us-east-1"}}, "S3 buckets"),
    ("google_vertex", {"vertex": {"project": "p", "location": "us-central1"}}, "Cloud Storage buckets or BigQuery"),
])
def test_shapes_whose_batches_need_cloud_buckets_are_refused_clearly(shape: str, extra: dict[str, Any],
                                                                    needs: str) -> None:
    config = load_config({"api_compatibility": shape, "api_key": KEY, "model": "m", "prompt": "{{t}}",
                          "input": {"rows": [{"t": "x"}]}, **extra})
    with pytest.raises(errors.ConfigError) as caught:
        batch_api(parts_of(config).request, HttpxTransport(httpx.AsyncClient()), dialect_of(config))
    assert f"batch: the {shape} API shape has no batch mode here" in caught.value.message
    assert needs in caught.value.message and "anthropic_messages" in caught.value.message


async def test_a_rejected_key_is_an_auth_error_that_does_not_show_the_key(fake: Fake, transport: Any) -> None:
    api, dialect = protocol("anthropic_messages", fake, transport, api_key="sk-wrong-key-000000")
    with pytest.raises(errors.HTTPStatusError) as caught:
        await submit(api, requests_for(api, dialect, {"k": "v"}))
    assert caught.value.is_auth and "invalid x-api-key" in caught.value.message
    assert "sk-wrong-key" not in caught.value.message


async def test_results_on_another_host_are_not_fetched_with_the_key() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"id": "msgbatch_1", "processing_status": "ended",
                                         "request_counts": {"succeeded": 1},
                                         "results_url": "https://elsewhere.example.com/results"})

    config = load_config(config_for("anthropic_messages", "https://api.anthropic.com"))
    api = batch_api(parts_of(config).request, HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(handler))),
                    dialect_of(config))
    status = await api.poll("msgbatch_1")
    with pytest.raises(errors.BadReply, match="on another host"):
        await api.results(status, ["a"])
    assert seen == ["https://api.anthropic.com/v1/messages/batches/msgbatch_1"]


def test_custom_ids_are_checked_against_the_strictest_provider_rule() -> None:
    assert check_custom_id("row-0001_a") == "row-0001_a"
    for bad in ("", "a" * 65, "has space", "dot.ted"):
        with pytest.raises(ValueError, match="1 to 64 characters"):
            check_custom_id(bad)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_responses", "anthropic_messages",
                                   "gemini_generate_content"])
async def test_structured_answers_come_back_as_the_json_text_a_normal_request_gives(
        shape: str, fake: Fake, transport: Any) -> None:
    """With an output schema (Anthropic: a forced tool), the reply's content is the JSON answer."""
    schema = {"type": "object", "required": ["sentiment", "score"],
              "properties": {"sentiment": {"type": "string"}, "score": {"type": "number"}}}
    api, dialect = protocol(shape, fake, transport, output_schema=schema)
    batch_id, _ = await submit(api, requests_for(api, dialect, {"j": f"structured {shape}"}))
    status = (await walk(api, fake, batch_id))[-1]
    (result,) = await api.results(status, ["j"])
    answer = json.loads(text_of(result))
    assert set(answer) == {"sentiment", "score"}
    assert result.reply is not None and result.reply["choices"][0]["finish_reason"] == "stop"
