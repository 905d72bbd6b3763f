"""Provider presets (``providers.json``) and the default endpoint of each API shape.

A preset is data: a name, a default base URL, the API shape it speaks and whether
a key is needed. Adding an OpenAI-compatible provider is a new line in the JSON
file, never code. The shapes whose URL depends on their own settings (Azure,
Bedrock, Vertex) build it here, from plain values, so :mod:`connector.config.model` can
resolve the URL while it validates without importing any dialect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal, get_args

ApiShape = Literal[
    "openai_chat_completions",
    "openai_compatible",
    "openai_responses",
    "anthropic_messages",
    "gemini_generate_content",
    "azure_openai",
    "amazon_bedrock",
    "google_vertex",
    "openai_embeddings",
    "gemini_embeddings",
    "bedrock_embeddings",
]
API_SHAPES: tuple[str, ...] = get_args(ApiShape)
DEFAULT_SHAPE = "openai_chat_completions"
ALIASES = {"openai_compatible": DEFAULT_SHAPE}

# Where each shape lives when neither url nor a provider says otherwise.
_DEFAULT_BASE = {
    "openai_chat_completions": "https://api.openai.com/v1",
    "openai_responses": "https://api.openai.com/v1",
    "openai_embeddings": "https://api.openai.com/v1",
    "gemini_embeddings": "https://generativelanguage.googleapis.com/v1beta",
    "anthropic_messages": "https://api.anthropic.com/v1",
    "gemini_generate_content": "https://generativelanguage.googleapis.com/v1beta",
}


def canonical(shape: str) -> str:
    """The shape an alias stands for (``openai_compatible`` is chat completions)."""
    return ALIASES.get(shape, shape)


@dataclass(frozen=True)
class Preset:
    """One provider preset."""

    name: str
    base_url: str | None
    dialect: str
    needs_key: bool
    docs: str = ""


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    """Every preset, by name, in file order."""
    raw = json.loads(resources.files("connector.config").joinpath("providers.json").read_text(encoding="utf-8"))
    return {name: Preset(name=name, **entry) for name, entry in raw["presets"].items()}


def preset(name: str) -> Preset:
    """The preset called ``name``; a ValueError naming the known ones otherwise."""
    known = presets()
    if name not in known:
        raise ValueError(f"unknown provider '{name}'; known providers: {', '.join(known)}")
    return known[name]


def azure_endpoint(resource: str | None, endpoint: str | None) -> str | None:
    """``https://{resource}.openai.azure.com``, or the endpoint as given."""
    if endpoint:
        return endpoint.rstrip("/")
    if resource:
        return f"https://{resource}.openai.azure.com"
    return None


def bedrock_runtime(region: str) -> str:
    """Bedrock's runtime endpoint in a region (InvokeModel: ``/model/{modelId}/invoke``)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def bedrock_base(region: str) -> str:
    """Bedrock's OpenAI-compatible chat-completions base in a region."""
    return f"https://bedrock-runtime.{region}.amazonaws.com/openai/v1"


def vertex_base(project: str | None, location: str) -> str:
    """The publisher-models base of Vertex AI (express mode, with an API key, has no project)."""
    if project is None:  # express mode is served from the global host
        return "https://aiplatform.googleapis.com/v1/publishers/google"
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return f"https://{host}/v1/projects/{project}/locations/{location}/publishers/google"


def default_base(shape: str) -> str | None:
    """The default base URL of a shape whose URL needs no settings."""
    return _DEFAULT_BASE.get(canonical(shape))
