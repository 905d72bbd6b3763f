"""The openai_embeddings API shape: rows several to a request, vectors as columns, the per-row contract.

A fake /v1/embeddings (httpx MockTransport) checks each request's shape against OpenAI's
reference (``input`` a string or a list of strings, ``dimensions``, ``encoding_format``) and
answers a vector made from the text, so every test can tell which row got which vector.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.config.load import load_config
from connector.dialects.embeddings import shares
from connector.errors import ConfigError
from connector.standalone.command import run as standalone_run
from tests.conftest import mock_transport, read_through

DIM = 4
TEXTS = ["the first review", "second", "a third, longer review of the product", "fourth one", "fifth"]


def vector(text: str) -> list[float]:
    """What the fake server answers for ``text``: exact in float32."""
    return [float(len(text)), float(len(text.split())), 0.5, -1.0]


class FakeEmbeddings:
    """POST /v1/embeddings as OpenAI's reference describes it; records each request's inputs."""

    def __init__(self, refuse: str | None = None, status: int = 400) -> None:
        self.inputs: list[list[str]] = []
        self.bodies: list[dict[str, Any]] = []
        self._refuse, self._status = refuse, status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings", request.url
        body = json.loads(request.content)
        assert set(body) <= {"model", "input", "dimensions", "encoding_format", "user"}, body
        given = body["input"]
        texts = [given] if isinstance(given, str) else given
        assert isinstance(texts, list) and all(isinstance(t, str) and t for t in texts), given
        self.bodies.append(body)
        self.inputs.append(texts)
        if self._refuse is not None and self._refuse in texts:
            return httpx.Response(self._status, json={"error": {"message": "input too long", "type": "invalid"}})
        b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(struct.pack(f"<{DIM}f", *vector(t))).decode() if b64 else vector(t)}
                for i, t in enumerate(texts)]
        data.reverse()  # the reference sorts by nothing but "index": so must we
        tokens = sum(len(t.split()) for t in texts)
        return httpx.Response(200, json={"object": "list", "model": body["model"], "data": data,
                                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def config(tmp_path: Path, texts: list[str | None] = TEXTS, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": "http://embed.test/v1", "api_key": "sk-test-embeddings-1234", "model": "embedder",
        "api_compatibility": "openai_embeddings",
        "prompt": "{{text}}", "input": {"rows": [{"id": i + 1, "text": t} for i, t in enumerate(texts)]},
        "embeddings": {"inputs_per_request": 2}, "cache": {"path": str(tmp_path / "cache.sqlite")},
        "prices": {"embedder": {"input_per_million": 1_000_000, "output_per_million": 0}},
    }
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def test_rows_share_requests_and_each_gets_its_own_vector(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    messages, error = read_through(config(tmp_path), server)
    assert error is None
    assert server.inputs == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:5]]  # 2 per request, in order
    rows = records(messages)
    assert [r["embedding"] for r in rows] == [vector(t) for t in TEXTS]
    assert all(r["_status"] == "ok" and r["_cached"] is False and r["_completion_tokens"] == 0 for r in rows)


def test_tokens_are_shared_out_by_text_length_and_add_up_to_what_the_server_counted(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    rows = records(read_through(config(tmp_path), server)[0])
    first_request = len(TEXTS[0].split()) + len(TEXTS[1].split())  # 4 tokens for 16 + 6 characters
    assert [r["_prompt_tokens"] for r in rows[:2]] == shares(first_request, [len(TEXTS[0]), len(TEXTS[1])]) == [3, 1]
    assert sum(r["_prompt_tokens"] for r in rows) == sum(len(t.split()) for t in TEXTS)
    assert [r["_cost"] for r in rows] == [float(r["_prompt_tokens"]) for r in rows]  # 1 per token


def test_shares_hand_leftover_tokens_to_the_largest_remainders() -> None:
    assert shares(10, [1, 1, 1]) == [4, 3, 3]  # a tie: the earlier row first
    assert shares(7, [10, 0, 20]) == [2, 0, 5]
    assert shares(5, [0, 0]) == [3, 2]  # no characters at all: evenly
    assert sum(shares(1_000_003, [7, 11, 13, 17])) == 1_000_003


def test_dimensions_and_base64_are_sent_and_the_vectors_decoded(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    cfg = config(tmp_path, embeddings={"dimensions": DIM, "encoding_format": "base64", "inputs_per_request": 5})
    rows = records(read_through(cfg, server)[0])
    assert server.bodies == [{"model": "embedder", "input": TEXTS, "dimensions": DIM, "encoding_format": "base64"}]
    assert [r["embedding"] for r in rows] == [vector(t) for t in TEXTS]


def test_a_rerun_is_answered_from_the_cache_whatever_the_group_size(tmp_path: Path) -> None:
    read_through(config(tmp_path), FakeEmbeddings())
    again = FakeEmbeddings()
    rows = records(read_through(config(tmp_path, embeddings={"inputs_per_request": 3}), again)[0])
    assert again.inputs == []
    assert [r["embedding"] for r in rows] == [vector(t) for t in TEXTS]
    assert all(r["_cached"] and r["_attempts"] == 0 and r["_cost"] == 0 for r in rows)


def test_identical_texts_in_a_group_are_sent_once(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    rows = records(read_through(config(tmp_path, ["same", "same", "other"],
                                       embeddings={"inputs_per_request": 3}), server)[0])
    assert server.inputs == [["same", "other"]]
    assert [r["_cached"] for r in rows] == [False, True, False]
    assert rows[1]["embedding"] == vector("same")


def test_null_text_follows_the_null_policy(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    rows = records(read_through(config(tmp_path, ["one", None, "three"], null_policy="skip"), server)[0])
    assert server.inputs == [["one", "three"]]
    assert [r["_status"] for r in rows] == ["ok", "skipped_null", "ok"]
    assert rows[1]["embedding"] is None


def test_text_too_long_for_the_context_window_follows_the_context_policy(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    long = "word " * 100
    cfg = config(tmp_path, ["short", long, "also short"], context_window=20)
    rows = records(read_through(cfg, server)[0])
    assert server.inputs == [["short", "also short"]]
    assert [r["_status"] for r in rows] == ["ok", "skipped_too_long", "ok"]
    truncated = records(read_through(config(tmp_path, ["short", long], context_window=20,
                                            too_long_policy="truncate", truncate_column="text"), server)[0])
    assert truncated[1]["_status"] == "ok"
    assert server.inputs[-1][-1].endswith("…") and len(server.inputs[-1][-1]) < len(long)


def test_a_row_the_server_refuses_fails_alone(tmp_path: Path) -> None:
    server = FakeEmbeddings(refuse=TEXTS[2])
    rows = records(read_through(config(tmp_path), server)[0])
    assert server.inputs == [TEXTS[0:2], TEXTS[2:4], [TEXTS[2]], [TEXTS[3]], TEXTS[4:5]]
    assert [r["_status"] for r in rows] == ["ok", "ok", "error", "ok", "ok"]
    assert rows[2]["_error_class"] == "context_length" and rows[2]["embedding"] is None


def test_a_rejected_key_ends_the_read_at_once(tmp_path: Path) -> None:
    server = FakeEmbeddings(refuse=TEXTS[0], status=401)
    messages, error = read_through(config(tmp_path), server)
    assert error is not None and "API key rejected" in error.message
    assert records(messages) == [] and len(server.inputs) <= 3


def test_the_spend_guard_stops_before_the_group_it_refuses(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    messages, error = read_through(config(tmp_path, max_requests=1, concurrency=1), server)
    assert error is None
    assert server.inputs == [TEXTS[0:2]]
    assert [r["id"] for r in records(messages)] == [1, 2]
    states = [m["state"]["stream"]["stream_state"] for m in messages if m["type"] == "STATE"]
    assert states[-1]["position"] == 2  # the next run starts at row 3


def test_the_vector_column_is_an_array_of_numbers_in_the_airbyte_schema(tmp_path: Path) -> None:
    from connector.airbyte import commands

    async def discover(cfg: dict[str, Any]) -> dict[str, Any]:
        [message] = [m async for m in commands.discover(cfg) if m["type"] == "CATALOG"]
        return message

    message = asyncio.run(discover(config(tmp_path, embeddings={"dimensions": 8})))
    [stream] = message["catalog"]["streams"]
    schema = stream["json_schema"]["properties"]["embedding"]
    assert schema["type"] == ["null", "array"] and schema["items"]["type"] == "number"
    assert schema["minItems"] == schema["maxItems"] == 8


def test_run_writes_a_fixed_size_float_list_that_duckdb_reads_as_an_array(tmp_path: Path) -> None:
    out = tmp_path / "vectors.parquet"
    result = asyncio.run(standalone_run(config(tmp_path), str(out), transport_factory=mock_transport(FakeEmbeddings())))
    assert result.rows_written == len(TEXTS)
    field = pq.read_schema(out).field("embedding")
    assert field.type == pa.list_(pa.float32(), DIM)  # the length learned from the first vector
    vectors = pq.read_table(out)  # noqa: F841 - DuckDB reads the Arrow table by its name
    [(kind, first)] = duckdb.sql("SELECT typeof(embedding), embedding FROM vectors ORDER BY id LIMIT 1").fetchall()
    assert kind == f"FLOAT[{DIM}]"  # through Arrow: DuckDB's fixed-size ARRAY
    assert list(first) == vector(TEXTS[0])
    # DuckDB's own Parquet reader has no fixed-size list to map to (Parquet has none): a list, cast in SQL.
    [(kind, similarity)] = duckdb.sql(
        f"SELECT typeof(embedding), array_cosine_similarity(embedding::FLOAT[{DIM}], embedding::FLOAT[{DIM}]) "
        f"FROM '{out}' LIMIT 1").fetchall()
    assert kind == "FLOAT[]" and similarity == pytest.approx(1.0)


def test_export_batch_writes_embeddings_lines(tmp_path: Path) -> None:
    out = tmp_path / "batch.jsonl"
    asyncio.run(standalone_run(config(tmp_path), None, export_batch=str(out),
                               transport_factory=mock_transport(FakeEmbeddings())))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["url"] for line in lines] == ["/v1/embeddings"] * len(TEXTS)
    assert [line["body"] for line in lines] == [{"model": "embedder", "input": t} for t in TEXTS]


def test_the_dry_run_prices_the_input_and_no_output(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    result = asyncio.run(standalone_run(config(tmp_path), None, dry_run=True,
                                        transport_factory=mock_transport(server)))
    report = result.report or ""
    assert server.inputs == []
    chars = sum(len(t) for t in TEXTS)
    assert "rows: 5; requests: 3 or more (up to 2 rows each)" in report
    assert "output tokens: ~0" in report
    assert "estimated cost: ~" in report and "input tokens: ~" in report
    tokens = int(report.split("input tokens: ~")[1].split(" ")[0].replace(",", ""))
    assert tokens == sum(int(len(t) / 4) + 1 for t in TEXTS) and tokens < chars


@pytest.mark.parametrize(("extra", "field"), [
    ({"system_prompt": "be brief"}, "system_prompt"),
    ({"stream": True}, "stream"),
    ({"parameters": {"max_tokens": 5}}, "max_tokens"),
    ({"response_template": {"json_columns": {"x": "string"}}}, "json_columns"),
])
def test_what_an_embeddings_request_cannot_carry_is_a_config_error(tmp_path: Path, extra: dict[str, Any],
                                                                  field: str) -> None:
    from connector.dialects import dialect_for

    with pytest.raises(ConfigError, match=field):
        dialect_for(load_config(config(tmp_path, **extra), lambda _: None))


def test_embeddings_settings_need_the_embeddings_shape(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["api_compatibility"] = "openai_chat_completions"
    with pytest.raises(ConfigError, match="embeddings: these settings apply to api_compatibility openai_embeddings"):
        load_config(cfg, lambda _: None)


def test_a_reply_with_the_wrong_number_of_vectors_is_not_given_to_the_wrong_rows(tmp_path: Path) -> None:
    def short(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"index": 0, "embedding": vector(texts[0])}]
        return httpx.Response(200, json={"data": data, "model": "embedder", "usage": {"prompt_tokens": 1}})

    rows = records(read_through(config(tmp_path, ["aa", "bbb"]), short)[0])
    # The merged reply is refused; each row is then asked alone and gets its own vector.
    assert [r["embedding"] for r in rows] == [vector("aa"), vector("bbb")]




def test_check_embeds_the_first_row_and_holds_the_vector_path_against_the_reply(tmp_path: Path) -> None:
    from connector.airbyte import commands

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "embedder"}]})
        return FakeEmbeddings()(request)

    async def check(cfg: dict[str, Any]) -> dict[str, Any]:
        [message] = [m async for m in commands.check(cfg, mock_transport(answer))]
        return dict(message["connectionStatus"])

    status = asyncio.run(check(config(tmp_path)))
    assert status["status"] == "SUCCEEDED", status
    typo = asyncio.run(check(config(tmp_path, response_template={"columns": {"embedding": "data.0.embeding"}})))
    assert typo["status"] == "FAILED" and "did you mean 'embedding'" in typo["message"]


def test_a_read_resumed_from_its_state_sends_only_the_rows_after_it(tmp_path: Path) -> None:
    from connector.airbyte import commands
    from tests.conftest import catalog_for

    server = FakeEmbeddings()
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                           "stream_state": {"position": 3}}}]

    async def resumed() -> list[dict[str, Any]]:
        return [m async for m in commands.read(config(tmp_path), catalog_for(sync_mode="incremental"), state,
                                               mock_transport(server))]

    rows = records(asyncio.run(resumed()))
    assert server.inputs == [TEXTS[3:5]]
    assert [r["id"] for r in rows] == [4, 5]


class FakeGeminiEmbeddings:
    """POST /v1beta/models/{model}:batchEmbedContents as the Gemini API reference describes it."""

    def __init__(self, usage: bool = False) -> None:
        self.inputs: list[list[str]] = []
        self.usage = usage

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1beta/models/embedder:batchEmbedContents", request.url
        assert request.headers["x-goog-api-key"] == "sk-test-embeddings-1234"
        assert "authorization" not in request.headers
        body = json.loads(request.content)
        assert set(body) == {"requests"}, body
        texts = []
        for one in body["requests"]:
            text = one["content"]["parts"][0]["text"]
            assert one == {"model": "models/embedder", "content": {"parts": [{"text": text}]},
                           "outputDimensionality": DIM}, one
            texts.append(text)
        self.inputs.append(texts)
        answer: dict[str, Any] = {"embeddings": [{"values": vector(t)} for t in texts]}
        if self.usage:
            answer["usageMetadata"] = {"promptTokenCount": sum(len(t.split()) for t in texts)}
        return httpx.Response(200, json=answer)


def gemini_config(tmp_path: Path, **embeddings: Any) -> dict[str, Any]:
    return config(tmp_path, url="http://embed.test/v1beta", api_compatibility="gemini_embeddings",
                  embeddings={"dimensions": DIM, **embeddings})


def test_gemini_embeddings_share_batch_embed_contents_requests(tmp_path: Path) -> None:
    server = FakeGeminiEmbeddings()
    rows = records(read_through(gemini_config(tmp_path), server)[0])
    assert server.inputs == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:5]]
    assert [r["embedding"] for r in rows] == [vector(t) for t in TEXTS]
    # The reply said nothing of tokens: unknown, not free.
    assert all(r["_status"] == "ok" and r["_prompt_tokens"] is None and r["_cost"] is None for r in rows)


def test_gemini_embeddings_share_the_tokens_its_usage_metadata_counts(tmp_path: Path) -> None:
    rows = records(read_through(gemini_config(tmp_path), FakeGeminiEmbeddings(usage=True))[0])
    assert sum(r["_prompt_tokens"] for r in rows) == sum(len(t.split()) for t in TEXTS)


def test_gemini_embeddings_have_no_encoding_format(tmp_path: Path) -> None:
    from connector.config.parts import parts_of
    from connector.dialects import dialect_for

    cfg = gemini_config(tmp_path, encoding_format="base64")
    with pytest.raises(ConfigError, match=r"embeddings\.encoding_format"):
        dialect_for(parts_of(load_config(cfg, lambda _: None)).request)


class _CutBody(httpx.AsyncByteStream):
    """A 200 body cut mid-way: its first half, then the connection breaks."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    async def __aiter__(self) -> Any:
        yield self._head
        raise httpx.ReadError("connection reset by peer")


class CutOnce(FakeEmbeddings):
    """FakeEmbeddings whose first answer is cut mid-way (generated, so billed, but never received whole)."""

    cut = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        answer = super().__call__(request)
        if self.cut:
            return answer
        self.cut = True
        raw = answer.read()
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=_CutBody(raw[: len(raw) // 2]))


def test_a_shared_request_cut_before_its_answer_counts_in_its_rows_tokens(tmp_path: Path) -> None:
    server = CutOnce()
    rows = records(read_through(config(tmp_path, concurrency=1), server)[0])
    assert server.inputs[:2] == [TEXTS[0:2], TEXTS[0:2]]  # the cut request, then its retry
    assert [r["_status"] for r in rows] == ["ok"] * 5 and rows[0]["_attempts"] == 2
    # The cut attempt was billed: its prompt as the dry run estimates it (the two texts at 4 characters a
    # token), shared out by the rule of the reply's tokens; no output (was 256 estimated: embeddings have none).
    # Was `answered` alone.
    cut = shares(len(TEXTS[0] + TEXTS[1]) // 4 + 1, [len(TEXTS[0]), len(TEXTS[1])])
    answered = shares(len(TEXTS[0].split()) + len(TEXTS[1].split()), [len(TEXTS[0]), len(TEXTS[1])])
    assert [r["_prompt_tokens"] for r in rows[:2]] == [c + a for c, a in zip(cut, answered, strict=True)]
    assert [r["_completion_tokens"] for r in rows[:2]] == [0, 0]
    assert [r["_cost_source"] for r in rows] == ["config+estimated"] * 2 + ["config"] * 3
    assert [r["_cost"] for r in rows[:2]] == [float(r["_prompt_tokens"]) for r in rows[:2]]


def test_the_spend_guard_reserves_no_output_for_an_embeddings_request(tmp_path: Path) -> None:
    server = FakeEmbeddings()
    messages, error = read_through(config(tmp_path, max_total_tokens=100, concurrency=1), server)
    assert error is None
    # Each request's estimate is its prompt alone (~25 tokens): was that plus 256 output tokens, so the
    # guard refused the first request of a run that needs 14 tokens in all.
    assert [r["_status"] for r in records(messages)] == ["ok"] * 5
    assert len(server.inputs) == 3


def test_a_shared_request_the_spend_guard_refused_after_a_cut_attempt_is_in_the_summary(tmp_path: Path) -> None:
    server = CutOnce()
    # The first attempt (about 14 tokens reserved) is cut and counts 6; its retry would pass 16: refused.
    messages, error = read_through(config(tmp_path, concurrency=1, max_total_tokens=16), server)
    assert error is None and records(messages) == []
    summary = next(m["log"]["message"] for m in messages
                   if m["type"] == "LOG" and "rows by status" in m["log"]["message"])
    # The cut attempt's prompt, as estimated (the two texts at 4 characters a token): was in no summary.
    estimate = len(TEXTS[0] + TEXTS[1]) // 4 + 1
    assert "bought for rows not emitted" in summary and f"tokens in {estimate}, out 0" in summary, summary
