"""Media columns through batch mode and ``run --export-batch``: each batch item holds the image and the PDF
exactly as the provider's batch reference shows, which is the request of its synchronous API (OpenAI: a
line's ``body`` is the endpoint's request body; Anthropic: ``params`` is a Messages request; Gemini: an
inline request is a GenerateContentRequest), with the media inline; rows over a limit are refused before
any batch; batches are cut within the provider's byte limit with media in them.

The fake batch server (tests/fake_batch.py) keeps each item's request as the provider would hold it
(``GET /_bodies``); the parts expected are test_media.py's, taken from each API reference. No provider
was reached: the shapes are verified only against the references (docs/API_SHAPES.md says so).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.endpoint.batch import BatchLimits
from tests.batch_runs import batch_config, fake_batch_server, read, server_fixture
from tests.conftest import run_cli
from tests.fake_batch import Control
from tests.test_media import PHOTO, b64, document_part, image_part, pdf, png, text_part

pytestmark = pytest.mark.timeout(120)

auto = server_fixture(1)  # batches move one step on every poll

SHAPES = ["openai_chat_completions", "openai_responses", "azure_openai", "anthropic_messages",
          "gemini_generate_content"]
SMALL = png(16, 16)


def media_table(tmp_path: Path, shape: str) -> Path:
    """Four rows: two that can be sent, one PDF over the shape's page limit, one cell that is no image."""
    (tmp_path / "one.pdf").write_bytes(pdf(2))
    (tmp_path / "long.pdf").write_bytes(pdf(1001 if shape == "gemini_generate_content" else 101))
    one, long = str(tmp_path / "one.pdf"), str(tmp_path / "long.pdf")
    path = tmp_path / "media.parquet"
    pq.write_table(pa.table({"sku": ["a1", "b2", "c3", "d4"],
                             "photo": pa.array([PHOTO, PHOTO, b"not an image", SMALL], pa.binary()),
                             "invoice": [one, long, one, one]}), path)
    return path


def parts_of(shape: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The last user turn's content parts of a request in the shape's own form."""
    if shape == "gemini_generate_content":
        return list(request["contents"][-1]["parts"])
    if shape == "openai_responses":
        return list(request["input"][-1]["content"])
    return list(request["messages"][-1]["content"])


def expected(shape: str, sku: str, image: bytes) -> list[dict[str, Any]]:
    form = "openai_chat_completions" if shape == "azure_openai" else shape  # Azure speaks chat completions
    return [document_part(form, pdf(2), "one.pdf"), text_part(form, f"What is in {sku}? "), image_part(form, image)]


def media_config(origin: str, shape: str, table: Path, **raw: Any) -> dict[str, Any]:
    config = batch_config(origin, [], shape, prompt="{{invoice}}What is in {{sku}}? {{photo}}",
                          media_columns={"photo": "image", "invoice": "document"}, **raw)
    config["input"] = {"path": str(table)}
    return config


@pytest.mark.parametrize("shape", SHAPES)
def test_each_batch_item_holds_the_media_as_the_providers_batch_reference_shows(shape: str, auto: Control,
                                                                              tmp_path: Path) -> None:
    before = set(auto.bodies())
    sync = read(media_config(auto.origin, shape, media_table(tmp_path, shape)))
    assert sync.error is None, sync.error
    records = sync.records
    assert [r["_status"] for r in records] == ["ok", "error", "error", "ok"]
    assert records[0]["_batch_id"] and records[3]["_batch_id"] == records[0]["_batch_id"]
    assert records[1]["_error_class"] == "bad_input" and "pages, over the" in records[1]["_error"]
    assert records[2]["_error_class"] == "bad_input" and "none of PNG, JPEG" in records[2]["_error"]
    assert records[1]["_batch_id"] is None and records[2]["_batch_id"] is None  # refused before any batch
    sent = {k: v for k, v in auto.bodies().items() if k not in before}
    assert sorted(k.split("-")[0] for k in sent) == ["r1", "r4"]
    by_row = {k.split("-")[0]: v for k, v in sent.items()}
    assert parts_of(shape, by_row["r1"]) == expected(shape, "a1", PHOTO)
    assert parts_of(shape, by_row["r4"]) == expected(shape, "d4", SMALL)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_responses"])
def test_export_batch_writes_the_media_inline_in_each_line(shape: str, tmp_path: Path) -> None:
    config = media_config("http://gpu-cluster.local", shape, media_table(tmp_path, shape))
    config["batch"] = {"enabled": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    requests = tmp_path / "requests.jsonl"
    exported = run_cli(["run", "--config", str(path), "--export-batch", str(requests)])
    assert exported.code == 0, exported.stderr
    assert "wrote 2 requests" in exported.stderr and "2 error" in exported.stderr
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert [line["custom_id"].split("-")[0] for line in lines] == ["r1", "r4"]
    assert {line["url"] for line in lines} == {"/v1/responses" if shape == "openai_responses"
                                               else "/v1/chat/completions"}
    assert parts_of(shape, lines[0]["body"]) == expected(shape, "a1", PHOTO)
    assert parts_of(shape, lines[1]["body"]) == expected(shape, "d4", SMALL)
    assert "more than OpenAI's Batch API takes" not in exported.stderr  # 2 small lines: within 200 MB


def test_an_exported_file_over_the_upload_limits_says_so(tmp_path: Path) -> None:
    from connector.standalone.batch_files import over_upload_limits

    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"x" * (3 << 20))
    assert over_upload_limits(str(path), 3, BatchLimits(3, 3 << 20)) is None
    assert over_upload_limits(str(path), 4, BatchLimits(3, 2 << 20)) == (
        f"{path} holds 4 requests (at most 3) and 3.0 MB (at most 2 MB): more than OpenAI's Batch API takes in one "
        "input file; split it into files within both limits before uploading it there (vllm run-batch reads it whole)")


async def _run_tight(origin: str, config: dict[str, Any], limits: BatchLimits) -> list[dict[str, Any]]:
    from connector.config.load import load_config
    from connector.dialects.openai_chat import ChatDialect
    from connector.endpoint.batch.http import BatchHTTP
    from connector.endpoint.batch.openai_batches import OpenAIBatches
    from connector.pipeline.batch_run import run_batches
    from connector.pipeline.prepare import prepare
    from connector.pipeline.run_loop import RecordOut

    async with prepare(load_config(config)) as ctx:
        dialect = ctx.dialect
        assert isinstance(dialect, ChatDialect)
        api = OpenAIBatches(dialect, BatchHTTP(ctx.transport, dialect, 10), limits=limits)
        return [event.data async for event in run_batches(ctx, api) if isinstance(event, RecordOut)]


def test_batches_with_media_are_cut_within_the_byte_limit(tmp_path: Path) -> None:
    """Each request carries a ~2.6 KB image inline: 6,000 bytes a file hold two, not the five the count allows."""
    photos = [png(40, 40, padding=1800 + i) for i in range(5)]
    table = tmp_path / "photos.parquet"
    pq.write_table(pa.table({"sku": [f"s{i}" for i in range(5)], "photo": pa.array(photos, pa.binary())}), table)
    with fake_batch_server("--advance-every", "1", "--openai-max-bytes", "6000") as tight:
        config = batch_config(tight.origin, [], prompt="Describe {{sku}} {{photo}}", media_columns={"photo": "image"})
        config["input"] = {"path": str(table)}
        records = asyncio.run(_run_tight(tight.origin, config, BatchLimits(5, 6000)))
        batches, sent = tight.batches(), tight.bodies()
    assert [r["_status"] for r in records] == ["ok"] * 5
    assert all(b["status"] == "completed" for b in batches)  # the server took each: within its byte limit
    assert [len(b["items"]) for b in batches] == [2, 2, 1]
    images = [p["image_url"]["url"] for body in sent.values() for p in body["messages"][-1]["content"]
              if p["type"] == "image_url"]
    assert sorted(images) == sorted(f"data:image/png;base64,{b64(p)}" for p in photos)
