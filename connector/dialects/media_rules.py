"""What each API shape accepts of images and PDFs: URLs or bytes, the limits, and their tokens.

A row's media (:mod:`connector.requests.media`) are checked against the run's shape before anything
is sent (:func:`problem`): a row over a limit is its ``bad_input``, nothing paid. The rule for URLs:
a media cell given as a URL is sent as that URL only where the provider fetches URLs for that kind
(:attr:`MediaRules.urls`); elsewhere its bytes are needed (a path, base64 or bytes), and a URL
there is the row's ``bad_input`` (the connector does not download it). Bytes are always sent inline.

Where each number comes from is in :data:`RULES` and docs/API_SHAPES.md ("Media"); the token
estimates (:func:`tokens`) feed the context-window fit and the dry run, never a bill.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MB = 1024 * 1024


class MediaFacts(Protocol):
    """What the rules read of one media cell (:class:`connector.requests.media.Media` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def column(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def size(self) -> int: ...
    @property
    def encoded_size(self) -> int: ...
    @property
    def pages(self) -> int | None: ...
    @property
    def dimensions(self) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class MediaRules:
    """One shape's media rules (None: no limit known here)."""

    urls: frozenset[str]  # kinds the provider fetches from a URL
    image_bytes: int | None = None  # per image (base64 characters where ``base64_limits``)
    images: int | None = None  # per request
    document_bytes: int | None = None  # per document
    documents: int | None = None  # per request
    pages: int | None = None  # per document
    inline_bytes: int | None = None  # all inline media of a request together
    base64_limits: bool = False  # the byte limits count the base64 form (Anthropic)
    image_tokens: str = "openai"  # the estimate rule: openai, anthropic, gemini
    page_tokens: int = 1500


_OPENAI = MediaRules(urls=frozenset({"image"}), image_bytes=20 * MB, images=500, inline_bytes=50 * MB,
                     pages=100, page_tokens=1500)
RULES: dict[str, MediaRules | None] = {
    # OpenAI's image input requirements: 20 MB per image, 500 images and 50 MB of images per request
    # (verified with the search tool); PDFs: 100 pages (not verified here). Chat takes no file URL.
    "openai_chat_completions": _OPENAI,
    "azure_openai": _OPENAI,
    # Responses takes input_file by file_url as well as input_image by URL.
    "openai_responses": MediaRules(urls=frozenset({"image", "document"}), image_bytes=20 * MB, images=500,
                                   inline_bytes=50 * MB, pages=100, page_tokens=1500),
    # Anthropic: 5 MB of base64 per image (verified), 100 images, PDFs of 100 pages in 32 MB requests.
    "anthropic_messages": MediaRules(urls=frozenset({"image", "document"}), image_bytes=5 * MB, images=100,
                                     pages=100, inline_bytes=32 * MB, base64_limits=True, image_tokens="anthropic",
                                     page_tokens=3000),
    # Gemini: inline data within a 20 MB request; file_data takes Files API / Cloud Storage URIs only.
    "gemini_generate_content": MediaRules(urls=frozenset(), inline_bytes=20 * MB, images=3600, pages=1000,
                                          image_tokens="gemini", page_tokens=258),
    "google_vertex": MediaRules(urls=frozenset(), inline_bytes=20 * MB, images=3600, pages=1000,
                                image_tokens="gemini", page_tokens=258),
    # Bedrock's Converse limits (verified: 20 images of 3.75 MB, 5 documents of 4.5 MB), applied to its
    # OpenAI-compatible route, which is what this shape speaks.
    "amazon_bedrock": MediaRules(urls=frozenset(), image_bytes=int(3.75 * MB), images=20, document_bytes=int(4.5 * MB),
                                 documents=5),
    "openai_embeddings": None,
    "gemini_embeddings": None,
    "bedrock_embeddings": None,
}


def problem(shape: str, media: Sequence[MediaFacts]) -> str | None:
    """Why the row's ``media`` cannot be sent in ``shape`` (the first reason), or None."""
    rules = RULES.get(shape)
    if rules is None:
        return f"the {shape} API shape takes no images or documents"
    images = [m for m in media if m.kind == "image"]
    documents = [m for m in media if m.kind == "document"]
    for m in media:
        if m.url is not None and m.kind not in rules.urls:
            return (f"column {m.column!r} is a URL, and the {shape} API does not fetch a {m.kind} from a URL: give "
                    "its bytes (a path, base64 text or a binary column)")
        size = m.encoded_size if rules.base64_limits else m.size
        cap = rules.image_bytes if m.kind == "image" else rules.document_bytes
        if cap is not None and size > cap:
            return f"column {m.column!r}: {_mb(size)} is over the {shape} limit of {_mb(cap)} per {m.kind}"
        if m.pages is not None and rules.pages is not None and m.pages > rules.pages:
            return f"column {m.column!r}: {m.pages} pages, over the {shape} limit of {rules.pages} per document"
    for found, cap, what in ((images, rules.images, "images"), (documents, rules.documents, "documents")):
        if cap is not None and len(found) > cap:
            return f"{len(found)} {what} in one request, over the {shape} limit of {cap}"
    inline = sum(m.encoded_size if rules.base64_limits else m.size for m in media)
    if rules.inline_bytes is not None and inline > rules.inline_bytes:
        return f"{_mb(inline)} of media in one request, over the {shape} limit of {_mb(rules.inline_bytes)}"
    return None


def byte_limit(shape: str, kind: str, default: int) -> int:
    """The most bytes one media cell of ``kind`` may hold in ``shape`` (a store object is downloaded up to it):
    the per-image or per-document limit, else the per-request one, else ``default``."""
    rules = RULES.get(shape)
    if rules is None:
        return default
    cap = (rules.image_bytes if kind == "image" else rules.document_bytes) or rules.inline_bytes
    if cap is None:
        return default
    return cap * 3 // 4 if rules.base64_limits else cap  # base64 is 4 characters per 3 bytes


def tokens(shape: str, media: Sequence[MediaFacts]) -> int:
    """Estimated prompt tokens of the row's media in ``shape`` (docs/API_SHAPES.md says each rule)."""
    rules = RULES.get(shape) or _OPENAI
    total = 0
    for m in media:
        if m.kind == "document":
            total += (m.pages or 1) * rules.page_tokens
        else:
            total += _image_tokens(rules.image_tokens, m.dimensions)
    return total


def _image_tokens(rule: str, size: tuple[int, int] | None) -> int:
    width, height = size or (2048, 2048)  # unknown (a URL): as large as the providers scale to
    if rule == "anthropic":  # (w * h) / 750 after scaling to at most 1568 px on the long side
        scale = min(1.0, 1568 / max(width, height))
        return math.ceil(width * scale * height * scale / 750)
    if rule == "gemini":  # 258 for an image within 384 px, else 258 per 768 px tile
        if max(width, height) <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    # OpenAI high detail: fit in 2048 x 2048, shortest side to 768, 170 per 512 px tile, plus 85
    fit = min(1.0, 2048 / max(width, height))
    short = min(1.0, 768 / (min(width, height) * fit))
    return 85 + 170 * math.ceil(width * fit * short / 512) * math.ceil(height * fit * short / 512)


# Media payloads in a body's JSON: data URLs (chat, Responses) and long base64 under "data" (Anthropic,
# Gemini's inlineData).
_PAYLOAD = re.compile(rb'data:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]+|"data":"[A-Za-z0-9+/=]{256,}"')


def prompt_chars(conversation: bytes) -> int:
    """The JSON characters of a conversation without its media payloads: their tokens are estimated
    from the media themselves (:func:`tokens`), not from their base64."""
    if b"base64," not in conversation and b'"data":"' not in conversation:
        return len(conversation)  # the usual prompt: text only
    return len(conversation) - sum(len(found) for found in _PAYLOAD.findall(conversation))


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"
