"""rows_per_request: chat rows packed into one request, answered by id, every row's record its own.

The chat endpoint is tests/fake_openai.py's answering logic, in process behind an httpx MockTransport (and the
fake server itself as a process for one end-to-end read): a packed request is answered under each id as the
row alone would be (``echo: <text>``), and a row's ``[[pack:...]]`` marker breaks the packed answer for it
(dropped, duplicated, swapped, an extra id, a wrong kind).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.config.load import load_config
from connector.config.packing_rules import AUTO_MAX_ROWS, AUTO_OUTPUT_LIMIT
from connector.config.parts import parts_of
from connector.dialects.packed_chat import pack, prompt_weights, unpack
from connector.endpoint.limits import TokenEstimator
from connector.errors import ConfigError
from connector.standalone.command import run as standalone_run
from tests import fake_openai
from tests.conftest import mock_transport, read_through, run_command

TEXTS = ["great", "bad", "fine I guess", "not for me", "love it", "meh", "ok"]
SYSTEM = "Classify the sentiment of the review in one word."


class FakeChat:
    """POST /v1/chat/completions answered by the fake server's logic; each request's body kept."""

    def __init__(self, status: int | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions", request.url
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status is not None and self.packed([body]):
            return httpx.Response(self.status, json={"error": {"message": "response_format is not supported"}})
        return httpx.Response(200, json=fake_openai.chat_completion(body, fake_openai._answer_text(body, set())))

    @staticmethod
    def packed(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [b for b in bodies if (b.get("response_format") or {}).get("json_schema", {}).get("name")
                == "answers_by_id"]

    @property
    def alone(self) -> list[str]:
        """The last user message of each request sent alone (not packed)."""
        return [b["messages"][-1]["content"] for b in self.bodies if not self.packed([b])]


def config(tmp_path: Path, texts: list[str] = TEXTS, rows: int | str = 3, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": "http://chat.test/v1", "api_key": "sk-test-packing-1234", "model": "m",
        "system_prompt": SYSTEM, "prompt": "{{text}}", "rows_per_request": rows,
        "input": {"rows": [{"id": i + 1, "text": t} for i, t in enumerate(texts)]},
        "cache": {"path": str(tmp_path / "cache.sqlite")},
        "prices": {"m": {"input_per_million": 0.15, "output_per_million": 0.6}},
    }
    out.update(extra)
    return out


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def read(cfg: dict[str, Any], server: FakeChat) -> list[dict[str, Any]]:
    messages, error = read_through(cfg, server)
    assert error is None, error
    return records(messages)


def test_rows_share_requests_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    server = FakeChat()
    rows = read(config(tmp_path), server)
    assert len(server.bodies) == 3  # 7 rows, 3 to a request
    first = server.bodies[0]
    assert first["messages"][0] == {"role": "system", "content": SYSTEM}  # the shared part, sent once
    assert json.loads(first["messages"][-1]["content"].split("\n\n", 1)[1]) == {"1": "great", "2": "bad",
                                                                               "3": "fine I guess"}
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in TEXTS]
    assert all(r["_status"] == "ok" and r["_cached"] is False for r in rows)


@pytest.mark.parametrize("marker", ["drop", "dup", "extra", "bad"])
def test_a_row_broken_in_the_packed_answer_is_asked_again_alone(tmp_path: Path, marker: str) -> None:
    texts = ["one", f"two [[pack:{marker}]]", "three"]
    server = FakeChat()
    rows = read(config(tmp_path, texts), server)
    assert len(FakeChat.packed(server.bodies)) == 1
    broken = {"drop": [texts[1]], "dup": [texts[1]], "bad": [texts[1]], "extra": []}[marker]
    assert server.alone == broken  # only the broken row, alone; an id not asked for harms no row
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]
    assert all(r["_status"] == "ok" for r in rows)


def test_answers_follow_the_ids_not_the_positions(tmp_path: Path) -> None:
    """A swapped answer cannot be told from a right one by its content: the ids are the contract, and the
    answers go where the ids say (the fake swapped the JSON values of rows 1 and 2, keeping the key order)."""
    texts = ["alpha [[pack:swap]]", "beta", "gamma"]
    rows = read(config(tmp_path, texts), FakeChat())
    assert [r["answer"] for r in rows] == [f"echo: {texts[1]}", f"echo: {texts[0]}", f"echo: {texts[2]}"]
    reply = fake_openai.chat_completion({}, '{"3": "c", "1": "a", "2": "b"}')  # keys in another order
    parts = unpack(reply, ["1", "2", "3"], [1, 1, 1], schema=False)
    assert [json.loads(json.dumps(p.reply))["choices"][0]["message"]["content"] for p in parts] == ["a", "b", "c"]


def test_tokens_and_cost_are_shared_out_and_add_up_exactly(tmp_path: Path) -> None:
    server = FakeChat()
    rows = read(config(tmp_path, rows=7), server)
    assert len(server.bodies) == 1
    usage = fake_openai.chat_completion(server.bodies[0], "")["usage"]
    answer = fake_openai._answer_text(server.bodies[0], set())
    completion = len(answer) // 4
    assert sum(r["_prompt_tokens"] for r in rows) == usage["prompt_tokens"]
    assert sum(r["_completion_tokens"] for r in rows) == completion
    price = (usage["prompt_tokens"] * 0.15 + completion * 0.6) / 1_000_000
    assert round(sum(r["_cost"] for r in rows), 12) == round(price, 12)
    # the longer row's prompt share is the larger one: shares follow each row's part of the packed prompt
    assert rows[2]["_prompt_tokens"] > rows[5]["_prompt_tokens"]


def test_a_reported_cost_is_shared_to_the_last_decimal() -> None:
    reply = fake_openai.chat_completion({}, '{"1": "a", "2": "bbbb", "3": "cc"}')
    reply["usage"] = {"prompt_tokens": 101, "completion_tokens": 13, "total_tokens": 114, "cost": 0.000731}
    parts = unpack(reply, ["1", "2", "3"], [5, 9, 7], schema=False)
    blocks = [p.usage for p in parts]
    assert all(b is not None for b in blocks)
    assert sum(b["prompt_tokens"] for b in blocks if b) == 101
    assert sum(b["completion_tokens"] for b in blocks if b) == 13
    assert sum(b["cost"] for b in blocks if b) == 0.000731


def test_the_cache_serves_packed_answers_unpacked_and_unpacked_answers_packed(tmp_path: Path) -> None:
    packed_first = FakeChat()
    read(config(tmp_path, TEXTS[:4]), packed_first)
    alone = FakeChat()
    rows = read(config(tmp_path, TEXTS, rows=1), alone)  # the same cache, one row a request
    assert alone.alone == TEXTS[4:]  # the 4 packed answers were served from the cache
    assert [r["_cached"] for r in rows] == [True] * 4 + [False] * 3
    again = FakeChat()
    rows = read(config(tmp_path, [*TEXTS, "new one"], rows=5), again)
    assert len(again.bodies) == 1 and again.alone == ["new one"]  # a pack of one goes as the row's own request
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in [*TEXTS, "new one"]]


def test_an_endpoint_that_refuses_the_packed_request_turns_packing_off(tmp_path: Path) -> None:
    server = FakeChat(status=400)
    messages, error = read_through(config(tmp_path), server)
    assert error is None
    assert len(FakeChat.packed(server.bodies)) == 1  # refused once, then never asked packed again
    assert server.alone == TEXTS
    assert [r["answer"] for r in records(messages)] == [f"echo: {t}" for t in TEXTS]
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert any("rows_per_request" in line and "sent alone" in line for line in logs)


def test_structured_output_is_asked_for_per_id_with_the_rows_schema(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"sentiment": {"type": "string"}, "score": {"type": "number"}},
              "required": ["sentiment", "score"], "additionalProperties": False}
    server = FakeChat()
    rows = read(config(tmp_path, TEXTS[:3], output_schema=schema), server)
    sent = server.bodies[0]["response_format"]["json_schema"]["schema"]
    assert sent["required"] == ["1", "2", "3"] and sent["properties"]["2"] == schema
    assert [r["sentiment"] for r in rows] == [json.loads(fake_openai.answer_for(t, True))["sentiment"]
                                              for t in TEXTS[:3]]


def test_output_token_caps_add_up_in_the_packed_request() -> None:
    bodies = [{"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": t}]} for t in "abc"]
    assert pack(bodies, ["1", "2", "3"])["max_tokens"] == 60
    assert prompt_weights(bodies, ["1", "2", "3"]) == [len('{"1": "a"}')] * 3


@pytest.mark.parametrize(("extra", "named"), [
    ({"tasks": [{"name": "a", "prompt": "{{text}}"}], "prompt": None, "system_prompt": None}, "tasks"),
    ({"batch": {"enabled": True}}, "batch.enabled"),
    ({"api_compatibility": "openai_embeddings", "system_prompt": None}, "inputs_per_request"),
    ({"api_compatibility": "anthropic_messages"}, "anthropic_messages"),
    ({"media_columns": {"text": "image"}}, "media_columns"),
    ({"extra_body": {"n": 2}}, "n"),
    ({"parameters": {"top_logprobs": 2}}, "top_logprobs"),
    ({"response_template": {"columns": {"calls": "choices.0.message.tool_calls"}}}, "tool_calls"),
])
def test_what_cannot_be_keyed_by_row_is_a_config_error(tmp_path: Path, extra: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, **extra))
    assert "rows_per_request" in str(info.value) and named in str(info.value)
    assert info.value.failure_type == "config_error"


@pytest.mark.parametrize("given", ["0", "2000", 0, 1001, 2.5, True, "ten"])
def test_a_rows_per_request_out_of_range_gets_one_message_naming_the_field(tmp_path: Path, given: Any) -> None:
    # "0" as text once gave pydantic's two union errors ("constrained-int: ...; literal['auto']: ...")
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, rows=given))
    message = str(info.value)
    assert message.startswith("Invalid config: rows_per_request: ") and message.count("rows_per_request") == 1
    assert "literal" not in message and "constrained" not in message
    assert info.value.failure_type == "config_error"


@pytest.mark.parametrize(("given", "rows"), [("10", 10), (7, 7), ("auto", "auto")])
def test_a_rows_per_request_given_as_text_or_number_is_read_as_it_says(tmp_path: Path, given: Any, rows: Any) -> None:
    assert load_config(config(tmp_path, rows=given)).rows_per_request == rows


def test_a_read_against_the_fake_server_process(tmp_path: Path, fake_server: Any) -> None:
    cfg = config(tmp_path, url=fake_server.base_url, api_key=fake_server.api_key, rows=4,
                 model="fake-model")
    before = fake_server.stats().get("packed", 0)
    run = run_command(tmp_path, "packed", "read", cfg)
    assert run.code == 0, run.stderr
    assert [r["answer"] for r in run.records] == [f"echo: {t}" for t in TEXTS]
    assert fake_server.stats()["packed"] - before == 2  # 7 rows, 4 to a request


def test_the_dry_run_shows_the_requests_and_tokens_packing_saves(tmp_path: Path) -> None:
    server = FakeChat()
    long_instructions = "Classify the sentiment of the review. " * 20
    cfg = config(tmp_path, TEXTS * 3, rows=10, system_prompt=long_instructions)
    report = asyncio.run(standalone_run(cfg, None, dry_run=True, transport_factory=mock_transport(server))).report
    assert server.bodies == [] and report is not None
    line = next(x for x in report.splitlines() if x.startswith("rows_per_request 10"))
    assert "the 21 rows to ask go in ~3 requests instead of 21" in line
    said = line.split("input tokens ~")[1].split(" instead of ~")
    packed, alone = (int(x.split(" ")[0].replace(",", "")) for x in said)
    alone_report = int(report.split("input tokens: ~")[1].split(" ")[0].replace(",", ""))
    assert alone == alone_report and packed < alone / 3  # the long instructions sent 3 times, not 21


def test_packing_stops_after_three_packed_answers_that_gave_no_row_an_answer(tmp_path: Path) -> None:
    """A model that cannot answer by id (here: every id left out) costs each row a second request: after three
    such packs in a row, the rest go alone at once."""
    texts = [f"row {i} [[pack:drop]]" for i in range(10)]
    server = FakeChat()
    messages, error = read_through(config(tmp_path, texts, rows=2, concurrency=1), server)
    assert error is None
    assert len(FakeChat.packed(server.bodies)) == 3 and server.alone == texts
    assert [r["answer"] for r in records(messages)] == [f"echo: {t}" for t in texts]
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert any("3 packed answers in a row gave no row a usable answer" in line for line in logs)


def test_a_pack_is_cut_to_fit_the_context_window(tmp_path: Path) -> None:
    texts = [f"review number {i}: it works, more or less" for i in range(12)]
    window = 300
    server = FakeChat()
    rows = read(config(tmp_path, texts, rows=50, context_window=window, system_prompt="Label it. " * 40,
                       parameters={"max_tokens": 10}), server)
    packs = FakeChat.packed(server.bodies)
    assert 2 <= len(packs) < len(texts) and server.alone == []  # cut by the window, not by rows_per_request
    for body in packs:
        asked = len(json.loads(body["messages"][-1]["content"].split("\n\n", 1)[1]))
        assert body["max_tokens"] == 10 * asked
        assert len(json.dumps(body["messages"], separators=(",", ":"))) / 4 + body["max_tokens"] <= window
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]


class HeldChat(FakeChat):
    """FakeChat that holds every packed request until ``together`` of them are in flight at once."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.together = together
        self.arrived = 0
        self.all_in: asyncio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        response = self(request)
        if self.packed([json.loads(request.content)]):
            self.all_in = self.all_in or asyncio.Event()
            self.arrived += 1
            if self.arrived == self.together:
                self.all_in.set()
            await asyncio.wait_for(self.all_in.wait(), 30)  # a guard against a hang, not a timed assertion
        return response


@pytest.mark.parametrize("cache", [True, False])
def test_a_row_in_a_pack_in_flight_is_not_bought_again_by_another_pack(tmp_path: Path, cache: bool) -> None:
    """No answer bought twice: "same" is in two packs in flight at once; the second pack leaves it out and its
    row takes the first pack's answer (with the answer cache off too), as identical requests in flight share
    one answer without packing."""
    from connector.airbyte import commands
    from connector.endpoint.transport import HttpxTransport
    from tests.conftest import catalog_for

    texts = ["same", "a", "b", "c", "same", "d"]  # a second "same" after its pack was cut
    server = HeldChat(together=2)
    transport = lambda _limits: HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(server.handle)))  # noqa: E731
    cfg = config(tmp_path, texts, concurrency=4)
    cfg["cache"]["enabled"] = cache

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(cfg, catalog_for(), None, transport)]

    rows = records(asyncio.run(collect()))
    packed = FakeChat.packed(server.bodies)
    assert len(packed) == 2 and server.alone == []  # both packs in flight together
    sent = [json.loads(b["messages"][-1]["content"].split("\n\n", 1)[1]) for b in packed]
    assert sorted(t for ids in sent for t in ids.values()) == ["a", "b", "c", "d", "same"]  # "same" asked once
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]
    assert [r["_cached"] for r in rows] == [False, False, False, False, True, False]
    assert all(r["_status"] == "ok" for r in rows)


def auto_read(tmp_path: Path, texts: list[str], **extra: Any) -> tuple[int, list[dict[str, Any]], FakeChat]:
    """A read with rows_per_request auto: the rows per request its LOG line says, the records, the server."""
    server = FakeChat()
    messages, error = read_through(config(tmp_path, texts, rows="auto", **extra), server)
    assert error is None, error
    said = [m["log"]["message"] for m in messages if m["type"] == "LOG"
            and m["log"]["message"].startswith("rows_per_request auto: ")]
    assert len(said) == 1, said  # said once
    return int(said[0].split(": ")[1].split(" ")[0]), records(messages), server


def sizes(server: FakeChat) -> list[int]:
    return [len(json.loads(b["messages"][-1]["content"].split("\n\n", 1)[1])) for b in FakeChat.packed(server.bodies)]


@pytest.mark.parametrize(("extra", "chosen"), [
    ({"parameters": {"max_tokens": 8}}, AUTO_MAX_ROWS),  # 8,192 assumed: the documented maximum binds
    ({}, AUTO_OUTPUT_LIMIT // TokenEstimator().default_output),  # no max_tokens: 256 a row, 4,096 in all
    ({"parameters": {"max_tokens": 1000}}, AUTO_OUTPUT_LIMIT // 1000),  # the packed max_tokens within 4,096
])
def test_auto_without_a_context_window_assumes_the_documented_one(tmp_path: Path, extra: dict[str, Any],
                                                                  chosen: int) -> None:
    texts = [f"review {i}: fine" for i in range(120)]
    n, rows, server = auto_read(tmp_path, texts, **extra)
    assert n == chosen
    assert sizes(server) == [chosen] * (120 // chosen) + ([120 % chosen] if 120 % chosen else [])
    assert server.alone == [] and [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]
    assert all(r["_status"] == "ok" and r["_cached"] is False for r in rows)


def test_auto_sizes_packs_by_the_context_window_and_max_tokens(tmp_path: Path) -> None:
    """A smaller context window or a larger max_tokens gives fewer rows a request; each packed request's estimate
    fits the window; every row's record is still its own."""
    texts = [f"review number {i}: it works, more or less" for i in range(60)]
    chosen = {}
    for window, cap in [(800, 10), (400, 10), (400, 30)]:
        n, rows, server = auto_read(tmp_path / f"{window}-{cap}", texts, context_window=window,
                                    parameters={"max_tokens": cap})
        chosen[window, cap] = n
        assert max(sizes(server)) == n and sum(sizes(server)) == len(texts) and server.alone == []
        for body in FakeChat.packed(server.bodies):  # the text the model reads, at the estimate's 4 a token
            assert sum(len(m["content"]) for m in body["messages"]) / 4 + body["max_tokens"] <= window
        assert [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]
    assert AUTO_MAX_ROWS > chosen[800, 10] > chosen[400, 10] > chosen[400, 30] > 1


def test_auto_is_one_request_a_row_where_rows_cannot_be_packed(tmp_path: Path) -> None:
    """Where an explicit number is a config error, auto is 1: no error, every row alone."""
    cfg = config(tmp_path, TEXTS[:3], rows="auto", parameters={"top_logprobs": 2})
    assert parts_of(load_config(cfg)).run.rows_per_request == 1
    server = FakeChat()
    rows = read(cfg, server)
    assert server.alone == TEXTS[:3] and [r["answer"] for r in rows] == [f"echo: {t}" for t in TEXTS[:3]]
    assert parts_of(load_config(config(tmp_path, rows="10"))).run.rows_per_request == 10  # a form's text


def test_the_dry_run_says_the_rows_per_request_auto_chose(tmp_path: Path) -> None:
    server = FakeChat()
    cfg = config(tmp_path, [f"review {i}: fine" for i in range(40)], rows="auto", parameters={"max_tokens": 512})
    report = asyncio.run(standalone_run(cfg, None, dry_run=True, transport_factory=mock_transport(server))).report
    assert server.bodies == [] and report is not None
    assert "rows_per_request auto: 8 rows a request, from context_window 8,192 (assumed" in report
    assert "rows_per_request 8: the 40 rows to ask go in ~5 requests instead of 40" in report
