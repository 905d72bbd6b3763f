"""Media columns: images and PDFs from a Parquet binary column, paths, base64 and URLs, sent in each
API shape's own content parts, checked against the shape's limits before anything is sent.

The fake endpoint (httpx MockTransport) holds each request against the shape's published reference:
chat completions ``image_url`` / ``file`` parts (OpenAI API reference), Responses ``input_image`` /
``input_file``, Anthropic ``image`` / ``document`` blocks with a base64 or url source, Gemini
``inlineData`` parts. No vision model runs here: these shapes are verified only against the
references (docs/API_SHAPES.md says so).
"""

from __future__ import annotations

import base64
import csv
import json
import struct
import zlib
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.dialects.media_rules import problem, tokens
from connector.requests.media import MediaError, load, pdf_pages, sniff
from tests.conftest import chat_reply, read_through
from tests.test_dialects import ANTHROPIC_REPLY, GEMINI_REPLY, RESPONSES_REPLY

KEY = "sk-test-media-0123456789"


def png(width: int, height: int, padding: int = 0) -> bytes:
    """A valid PNG of one grey pixel per row (``padding`` bytes of an ancillary chunk make it large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    extra = chunk(b"tEXt", b"x\x00" + b"p" * padding) if padding else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + extra
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def pdf(pages: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
               f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj".encode()]
    objects += [f"{3 + i} 0 obj << /Type /Page /Parent 2 0 R >> endobj".encode() for i in range(pages)]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\n%%EOF\n"


PHOTO = png(32, 16)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Endpoint:
    """One shape's endpoint: records each body, answers in the shape."""

    REPLIES: ClassVar[dict[str, dict[str, Any]]] = {
        "openai_chat_completions": chat_reply("a grey square"), "openai_responses": RESPONSES_REPLY,
        "anthropic_messages": ANTHROPIC_REPLY, "gemini_generate_content": GEMINI_REPLY}

    def __init__(self, shape: str) -> None:
        self.shape, self.bodies = shape, list[dict[str, Any]]()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json=self.REPLIES[self.shape])

    def parts(self) -> list[list[dict[str, Any]]]:
        """The last user turn's content parts of each request, in the shape's own form."""
        out = []
        for body in self.bodies:
            if self.shape == "gemini_generate_content":
                out.append(body["contents"][-1]["parts"])
            elif self.shape == "openai_responses":
                out.append(body["input"][-1]["content"])
            else:
                out.append(body["messages"][-1]["content"])
        return out


def config(shape: str, input_: dict[str, Any], media: dict[str, str], prompt: str) -> dict[str, Any]:
    url = {"gemini_generate_content": "http://media.test/v1beta"}.get(shape, "http://media.test/v1")
    return {"url": url, "api_key": KEY, "model": "m", "api_compatibility": shape, "prompt": prompt,
            "input": input_, "media_columns": media, "cache": {"enabled": False}, "max_retries": 0}


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


# What each shape's reference shows for one image given as bytes, and one PDF.
def image_part(shape: str, data: bytes) -> dict[str, Any]:
    return {
        "openai_chat_completions": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(data)}"}},
        "openai_responses": {"type": "input_image", "image_url": f"data:image/png;base64,{b64(data)}"},
        "anthropic_messages": {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                           "data": b64(data)}},
        "gemini_generate_content": {"inlineData": {"mimeType": "image/png", "data": b64(data)}},
    }[shape]


IMAGE_PART = {shape: image_part(shape, PHOTO) for shape in ("openai_chat_completions", "openai_responses",
                                                            "anthropic_messages", "gemini_generate_content")}


def document_part(shape: str, data: bytes, name: str) -> dict[str, Any]:
    url = f"data:application/pdf;base64,{b64(data)}"
    return {
        "openai_chat_completions": {"type": "file", "file": {"filename": name, "file_data": url}},
        "openai_responses": {"type": "input_file", "filename": name, "file_data": url},
        "anthropic_messages": {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                              "data": b64(data)}},
        "gemini_generate_content": {"inlineData": {"mimeType": "application/pdf", "data": b64(data)}},
    }[shape]


def text_part(shape: str, text: str) -> dict[str, Any]:
    if shape == "gemini_generate_content":
        return {"text": text}
    return {"type": "input_text" if shape == "openai_responses" else "text", "text": text}


SHAPES = list(IMAGE_PART)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A Parquet file whose binary column holds PNG bytes (one row too large for Anthropic's 5 MB)."""
    path = tmp_path / "photos.parquet"
    big = png(8, 8, padding=4 * 1024 * 1024)  # 4 MB: 5.3 MB as base64
    pq.write_table(pa.table({"sku": ["a1", "b2"], "photo": pa.array([PHOTO, big], pa.binary())}), path)
    return path


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    """A CSV of PDF paths: a 2-page invoice and one of 101 pages (over the 100-page limits)."""
    (tmp_path / "one.pdf").write_bytes(pdf(2))
    (tmp_path / "long.pdf").write_bytes(pdf(101))
    path = tmp_path / "invoices.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "invoice"], ["1", str(tmp_path / "one.pdf")],
                                 ["2", str(tmp_path / "long.pdf")]])
    return path


@pytest.mark.parametrize("shape", SHAPES)
def test_an_image_column_of_a_parquet_file_is_sent_as_each_shape_expects(shape: str, photos: Path) -> None:
    endpoint = Endpoint(shape)
    messages, error = read_through(config(shape, {"path": str(photos)}, {"photo": "image"},
                                          "What is in this photo of {{sku}}? {{photo}}"), endpoint)
    assert error is None, error
    [first, second] = records(messages)
    assert first["_status"] == "ok"
    sent = endpoint.parts()[0]
    assert sent == [text_part(shape, "What is in this photo of a1? "), IMAGE_PART[shape]]
    if shape == "anthropic_messages":  # 5.3 MB of base64: over Anthropic's 5 MB, refused before sending
        assert len(endpoint.bodies) == 1
        assert second["_status"] == "error" and second["_error_class"] == "bad_input"
        assert "over the anthropic_messages limit of 5.0 MB per image" in second["_error"]
    else:
        assert len(endpoint.bodies) == 2 and second["_status"] == "ok"


@pytest.mark.parametrize("shape", SHAPES)
def test_a_csv_of_pdf_paths_is_sent_as_documents_and_a_long_one_refused(shape: str, invoices: Path,
                                                                         tmp_path: Path) -> None:
    endpoint = Endpoint(shape)
    messages, error = read_through(config(shape, {"path": str(invoices)}, {"invoice": "document"},
                                          "{{invoice}}Total amount of invoice {{id}}?"), endpoint)
    assert error is None, error
    [first, second] = records(messages)
    assert endpoint.parts()[0] == [document_part(shape, pdf(2), "one.pdf"),
                                   text_part(shape, "Total amount of invoice 1?")]
    assert first["_status"] == "ok"
    if shape == "gemini_generate_content":  # Gemini reads up to 1,000 pages
        assert second["_status"] == "ok" and len(endpoint.bodies) == 2
    else:  # 100 pages at most: refused before any request
        assert len(endpoint.bodies) == 1
        assert second["_error_class"] == "bad_input" and "101 pages, over the" in second["_error"]


def test_a_url_goes_as_a_url_where_the_provider_fetches_it_and_is_refused_where_it_does_not() -> None:
    rows = {"rows": [{"photo": "https://img.example.com/cat.png"}]}
    chat = Endpoint("openai_chat_completions")
    read_through(config("openai_chat_completions", rows, {"photo": "image"}, "Describe {{photo}}"), chat)
    assert chat.parts()[0][1] == {"type": "image_url", "image_url": {"url": "https://img.example.com/cat.png"}}
    anthropic = Endpoint("anthropic_messages")
    read_through(config("anthropic_messages", rows, {"photo": "image"}, "Describe {{photo}}"), anthropic)
    assert anthropic.parts()[0][1] == {"type": "image", "source": {"type": "url",
                                                                   "url": "https://img.example.com/cat.png"}}
    gemini = Endpoint("gemini_generate_content")
    [record] = records(read_through(config("gemini_generate_content", rows, {"photo": "image"},
                                           "Describe {{photo}}"), gemini)[0])
    assert gemini.bodies == [] and record["_error_class"] == "bad_input"
    assert "does not fetch a image from a URL" in record["_error"]


def test_a_template_may_place_the_image_url_itself_and_base64_text_is_decoded() -> None:
    endpoint = Endpoint("openai_chat_completions")
    template = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe it."},
        {"type": "image_url", "image_url": {"url": "{{photo}}", "detail": "low"}}]}]}
    cfg = config("openai_chat_completions", {"rows": [{"photo": b64(PHOTO)}]}, {"photo": "image"}, "")
    cfg.pop("prompt")
    cfg["request_template"] = template
    read_through(cfg, endpoint)
    assert endpoint.parts()[0][1] == {"type": "image_url", "image_url": {
        "url": f"data:image/png;base64,{b64(PHOTO)}", "detail": "low"}}


def test_the_media_type_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    disguised = tmp_path / "photo.jpg"  # a PNG named .jpg
    disguised.write_bytes(PHOTO)
    assert load(str(disguised), "image", "photo").mime == "image/png"
    (tmp_path / "invoice.png").write_bytes(pdf(1))
    with pytest.raises(MediaError, match="declared image but holds application/pdf"):
        load(str(tmp_path / "invoice.png"), "image", "photo")
    with pytest.raises(MediaError, match="none of PNG, JPEG, GIF, WebP or PDF"):
        load(b64(b"just some text, not an image"), "image", "photo")
    with pytest.raises(MediaError, match="not a URL, a file that exists, or base64"):
        load("no/such/file.png", "image", "photo")
    assert [sniff(b) for b in (b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ")] == \
        ["image/jpeg", "image/gif", "image/webp"]
    assert pdf_pages(pdf(7)) == 7


def test_a_bad_media_cell_is_that_rows_bad_input_and_nothing_is_sent() -> None:
    endpoint = Endpoint("openai_chat_completions")
    rows = {"rows": [{"photo": b64(PHOTO)}, {"photo": "not an image"}]}
    got = records(read_through(config("openai_chat_completions", rows, {"photo": "image"}, "{{photo}}"), endpoint)[0])
    assert [r["_status"] for r in got] == ["ok", "error"] and got[1]["_error_class"] == "bad_input"
    assert len(endpoint.bodies) == 1


def test_limits_and_token_estimates_per_shape() -> None:
    image = load(png(1024, 1024), "image", "p")
    assert tokens("openai_chat_completions", [image]) == 765  # OpenAI's worked example for 1024 x 1024
    assert tokens("anthropic_messages", [image]) == 1399  # 1024 * 1024 / 750
    assert tokens("gemini_generate_content", [image]) == 258 * 4  # four 768 px tiles
    assert tokens("gemini_generate_content", [load(PHOTO, "image", "p")]) == 258
    many = [load(PHOTO, "image", f"p{i}") for i in range(21)]
    assert problem("amazon_bedrock", many) == "21 images in one request, over the amazon_bedrock limit of 20"
    assert problem("openai_chat_completions", many) is None
    assert problem("openai_embeddings", many[:1]) == "the openai_embeddings API shape takes no images or documents"


def test_the_answer_cache_keys_media_by_their_content(tmp_path: Path) -> None:
    first, second = Endpoint("openai_chat_completions"), Endpoint("openai_chat_completions")
    cache = {"path": str(tmp_path / "cache.sqlite")}
    same = {"rows": [{"photo": b64(PHOTO)}]}
    other = {"rows": [{"photo": b64(png(16, 16))}]}
    for endpoint, rows in ((first, same), (second, same), (second, other)):
        cfg = {**config("openai_chat_completions", rows, {"photo": "image"}, "{{photo}}"), "cache": cache}
        read_through(cfg, endpoint)
    assert len(first.bodies) == 1 and len(second.bodies) == 1  # the same bytes: from the cache; others: bought


def test_the_context_window_counts_an_image_by_its_estimate_not_its_base64() -> None:
    endpoint = Endpoint("openai_chat_completions")
    big = png(1024, 1024, padding=200_000)  # ~270,000 characters of base64; 765 tokens estimated
    rows = {"rows": [{"photo": b64(big)}]}
    cfg = {**config("openai_chat_completions", rows, {"photo": "image"}, "{{photo}}"), "context_window": 2000}
    [record] = records(read_through(cfg, endpoint)[0])
    assert record["_status"] == "ok" and len(endpoint.bodies) == 1
    cfg["context_window"] = 700
    [record] = records(read_through(cfg, endpoint)[0])
    assert record["_status"] == "skipped_too_long" and "~765 for its media" in record["_error"]


def test_base64_text_longer_than_a_file_name_is_decoded_not_taken_for_a_path() -> None:
    """Base64 of 256 to 4,095 characters is no file name this system can have (NAME_MAX 255): asking whether
    it is a file raised 'File name too long' and ended the sync instead of decoding the cell."""
    text = b64(png(40, 40, padding=1800))
    assert 255 < len(text) < 4096
    assert load(text, "image", "photo").mime == "image/png"
    with pytest.raises(MediaError, match="not a URL, a file that exists, or base64"):
        load("not base64 " * 30, "image", "photo")
