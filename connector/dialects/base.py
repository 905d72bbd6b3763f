"""What every API shape provides, and the helpers they share.

A dialect knows one API shape and nothing about HTTP or retries: the URL a
request body goes to, the headers (authentication included), how to finish a
templated body, how to read a reply, how to assemble a streamed reply, how to
list models and how to read an error body. Whatever the shape, a reply is
normalised to the non-streamed OpenAI chat-completion shape the rest of the
connector reads::

    {"id", "model", "object": "chat.completion",
     "choices": [{"index": 0, "finish_reason": <FINISH_REASONS>,
                  "message": {"role": "assistant", "content": str,
                              "tool_calls"?: [{"id", "type": "function",
                                               "function": {"name", "arguments": str}}]}}],
     "usage": {"prompt_tokens", "completion_tokens", "total_tokens", <details: connector.dialects.usage>}}

Request bodies are built in the shape's own form, except two keys every dialect keeps while a
body travels through the connector: ``model`` and ``stream`` (shapes that carry them in the
URL, such as Gemini, move them there in :meth:`Dialect.prepare`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import orjson

from connector.config.address import Address
from connector.config.parts import RequestPart

# Reply bodies' JSON and error helpers live in bodies.py; imported from here by every dialect.
from connector.dialects.bodies import generic_error_message as generic_error_message
from connector.dialects.bodies import load_object as load_object
from connector.dialects.bodies import loads as loads
from connector.dialects.bodies import preview as preview
from connector.dialects.media_rules import prompt_chars
from connector.dialects.structured import Mode
from connector.dialects.usage import OPENAI_CACHE, CachePricing, TokenUsage, usage_block
from connector.errors import ConfigError
from connector.jsonbytes import dumps

Reply = dict[str, Any]

# The one finish-reason vocabulary of normalised replies.
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "other")

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class Prepared(NamedTuple):  # a NamedTuple: immutable, and built per row ~3x faster than a frozen dataclass
    """A body ready for the wire: where it goes, what is sent, whether the answer streams."""

    url: str
    body: dict[str, Any]
    stream: bool


class StreamAssembler(Protocol):
    """Builds one normalised reply from the ``data:`` payloads of a stream."""

    got_first_token: bool
    finished: bool  # the end marker ([DONE], response.completed, message_stop) seen: the rest is not the answer

    def feed(self, data: str) -> None:
        """One event's data (ignored once ``finished``); sets ``got_first_token`` at the first generated text."""

    def result(self) -> Reply:
        """The assembled reply; BadReply when the stream ended before the answer was complete."""

    def received(self) -> tuple[TokenUsage, int]:
        """What the stream brought so far, complete or not: the usage it reported (a count a later event
        would still change, such as Anthropic's output tokens at ``message_start``, left None) and the
        characters of generated text (answer, reasoning, tool calls). What an attempt cut now was billed for."""


class Dialect(Protocol):
    """One API shape (see the module docstring)."""

    name: ClassVar[str]
    # Where a body keeps its conversation: "messages", or the shape's own "input" / "contents".
    # A request template may use it instead of "messages".
    conversation_key: ClassVar[str]
    # What the shape's provider publishes for prompt-cache tokens (where ``prices`` gives none).
    CACHE_PRICING: ClassVar[CachePricing]
    # Where a built body keeps its system text when not in the conversation (None: in it).
    system_key: ClassVar[str | None]
    # How output_schema is asked for now (chat shapes step down when the endpoint refuses json_schema).
    structured_mode: Mode

    @property
    def endpoint_url(self) -> str:
        """Where a plain request for the configured model goes (for messages and checks)."""

    @property
    def models_url(self) -> str | None:
        """Where the model list is, or None when the shape has none."""

    def build(self, templated: Mapping[str, Any]) -> dict[str, Any]:
        """Finish a templated body: model, parameters, structured output, streaming, extra fields."""

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The cheapest variant of ``body`` that still proves URL, key and model (check)."""

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        """URL, wire body and streaming flag for a built body."""

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        """Headers of one request, authentication included (a signature may cover the payload)."""

    def parse_reply(self, raw: bytes) -> Reply:
        """A non-streamed reply body, normalised."""

    def reported_usage(self, raw: bytes) -> TokenUsage:
        """A whole reply body's usage, read apart from the rest (a reply refused for its shape was billed)."""

    def normalise(self, reply: Reply) -> Reply:
        """A reply with the types the connector relies on, or BadReply (replies.normalise for text)."""

    def stream_assembler(self) -> StreamAssembler:
        """A new assembler for one streamed reply."""

    def parse_models(self, raw: bytes) -> list[str]:
        """Model ids from the model-list body."""

    def error_message(self, body: bytes | str) -> str:
        """The human part of an error body."""

    def max_output_tokens(self, body: Mapping[str, Any]) -> int | None:
        """The output-token cap a built body asks for, in the shape's own field (budgets leave room for it)."""

    def without_output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` without its output-token cap (an answer that ended on its own answers it under any cap)."""

    def output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The top-level items of ``body`` that :meth:`without_output_limit` drops or changes (its cap's part)."""

    def prompt_chars(self, body: Mapping[str, Any]) -> int:
        """Size of a built body's prompt (conversation and system text) in JSON characters."""

    def with_feedback(self, body: Mapping[str, Any], answer: str, ask: str) -> dict[str, Any] | None:
        """``body`` with the ``answer`` replayed and the ``ask`` after it, in the shape's own turns (or None)."""

    def adapt(self, status: int, message: str) -> str | None:
        """After an error the request itself caused (``status``, the error's ``message``): what the
        dialect changed so that resending it can succeed, in words; None when nothing would."""

    def answered_free_text(self, content: object) -> str | None:
        """After an answer to an output_schema request that is not JSON at all (the endpoint ignored the
        schema): what the dialect changed for the requests to come, in words; None when nothing."""

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """The provider's id of one request, from the reply's headers (lower-case names), for a
        support ticket; None when the server sent none."""


# Shared helpers ----------------------------------------------------------------------


def chat_reply(
    content: str | None,
    finish_reason: str | None,
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    reasoning: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    total_tokens: int | None = None,
    meta: Mapping[str, Any] | None = None,
    cached_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    cache_write_1h_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Reply:
    """A normalised reply, built the same way by every non-chat dialect (token counts as
    :mod:`connector.dialects.usage` defines them)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [dict(c) for c in tool_calls]
    reply: Reply = {**(meta or {}), "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}
    if prompt_tokens is not None or completion_tokens is not None:
        total = total_tokens if total_tokens is not None else (prompt_tokens or 0) + (completion_tokens or 0)
        reply["usage"] = usage_block(prompt_tokens, completion_tokens, total, cached_tokens=cached_tokens,
                                     cache_write_tokens=cache_write_tokens,
                                     cache_write_1h_tokens=cache_write_1h_tokens, reasoning_tokens=reasoning_tokens)
    return reply


def tool_call(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    """One tool call in the chat-completions form; arguments as JSON text."""
    text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": call_id or "", "type": "function", "function": {"name": name, "arguments": text}}


def unsupported(shape: str, names: Sequence[str], hints: Mapping[str, str] | None = None) -> ConfigError:
    """The error for parameters a shape cannot express, naming each and the way out."""
    hints = hints or {}
    parts = [f"'{n}'" + (f" ({hints[n]})" if n in hints else "") for n in names]
    return ConfigError(
        f"parameters: the {shape} API has no equivalent of {', '.join(parts)}; remove "
        f"{'it' if len(names) == 1 else 'them'}, or put a field the endpoint does accept in extra_body"
    )


def text_of(content: Any) -> str:
    """The text of a chat message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def split_system(messages: Sequence[Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """System (and developer) messages joined into one text, and the other messages."""
    system: list[str] = []
    rest: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content")))
        elif isinstance(message, dict):
            rest.append(message)
    return ("\n\n".join(system) if system else None), rest


def chat_tools(tools: Any) -> list[tuple[str, str | None, Any]]:
    """(name, description, parameters) of chat-completions function tools; others are skipped."""
    out = []
    for tool in tools if isinstance(tools, list) else ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            out.append((str(fn["name"]), fn.get("description"), fn.get("parameters")))
    return out


def named_tool_choice(choice: Any) -> str | None:
    """The function name of a chat ``tool_choice`` that names one, else None."""
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and fn.get("name"):
            return str(fn["name"])
        if choice.get("name"):
            return str(choice["name"])
    return None


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_tokens") or body.get("max_completion_tokens")
    return value if isinstance(value, int) else None


# The first-class parameters every dialect maps (the chat-completions names are the reference).
FIRST_CLASS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "frequency_penalty",
               "presence_penalty", "response_format", "tool_choice", "reasoning_effort", "user", "metadata",
               "top_logprobs", "store", "service_tier")


class DialectBase:
    """What the dialects share: the precedence of body parts, the model mapping, the parameter check.

    Precedence, lowest first: the request template, then ``model`` (only where the
    template sets none; ``model_mapping`` renames it), then ``parameters``, then the
    output schema and streaming flags, then ``extra_body``, merged last so it can
    override anything. Each dialect renames what it must in :meth:`translate`.

    Building one checks the config against what the shape can express: a parameter it
    cannot is a ConfigError naming the parameter and the shape.
    """

    name: ClassVar[str] = "openai_chat_completions"
    conversation_key: ClassVar[str] = "messages"
    # Where a built body keeps its system text, when not in the conversation.
    system_key: ClassVar[str | None] = None
    # First-class parameters this shape cannot express: name -> hint for the error message.
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {}
    # The published cache-token prices of the shape's provider (where prices gives none).
    CACHE_PRICING: ClassVar[CachePricing] = OPENAI_CACHE
    # Reply headers that carry the provider's request id, first found wins (OpenAI: x-request-id).
    REQUEST_ID_HEADERS: ClassVar[tuple[str, ...]] = ("x-request-id",)

    def __init__(self, config: RequestPart) -> None:
        self.config = config
        self._model = config.model
        self._mapping = dict(config.model_mapping)
        self._params: dict[str, Any] = config.parameters.as_body()
        self._schema: dict[str, Any] | None = config.output_schema
        self._stream = config.stream
        self._extra = dict(config.extra_body)
        self._template_keys: set[str] = set(config.request_template or ())
        # The url as configured, or resolved from the provider preset and the shape's settings.
        self.address = Address.parse(config.endpoint.url)
        # Sent with every request after the shape's own auth: url's userinfo, then the config's headers.
        self.extra_headers = {**self.address.basic_auth(), **config.headers}
        self._urls: dict[str, str] = {}  # path -> url: the address is fixed, and every request asks
        self._completion_tokens_name = False  # the endpoint asked for max_completion_tokens (adapt)
        # How output_schema is asked for: json_schema until the endpoint refuses it (dialects/structured.py).
        self.structured_mode: Mode = "json_schema"
        self._check()

    def _check(self) -> None:
        asked = set(self._params) | (self._template_keys & set(FIRST_CLASS))
        bad = [name for name in FIRST_CLASS if name in asked and name in self.UNSUPPORTED]
        if bad:
            raise unsupported(self.name, bad, self.UNSUPPORTED)

    @property
    def model(self) -> str | None:
        """The configured model, as the endpoint knows it."""
        return self._mapping.get(self._model, self._model) if self._model else None

    @property
    def base_url(self) -> str:
        return self.address.without_suffix("/chat/completions", "/responses", "/messages")

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """``base_url`` + ``path``, with the query of the configured url (and ``params``)."""
        if params:
            return self.address.url(path, params, base=self.base_url)
        return self._urls.get(path) or self._urls.setdefault(path, self.address.url(path, None, base=self.base_url))

    def sends_authorization(self) -> bool:
        """Whether this shape's own auth takes the ``Authorization`` header (Bearer key, signing, OAuth)."""
        return any(name.lower() == "authorization" for name in self.auth_headers())

    def auth_headers(self) -> dict[str, str]:
        return {}

    def build(self, templated: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(templated)
        if self._model is not None and "model" not in body:
            body["model"] = self._model
        if isinstance(body.get("model"), str) and body["model"] in self._mapping:
            body["model"] = self._mapping[body["model"]]
        body.update(self._params)
        body = self.translate(body)
        if self._stream:
            body["stream"] = True
            body.update(self.stream_fields())
        body.update(self._extra)
        return body

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Rename chat-completions fields to this shape's own; add the output schema."""
        return body

    def stream_fields(self) -> dict[str, Any]:
        return {}

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out.pop("stream", None)
        out.pop("stream_options", None)
        out["max_tokens"] = 1
        out.pop("max_completion_tokens", None)
        return out

    def max_output_tokens(self, body: Mapping[str, Any]) -> int | None:
        return max_tokens_of(body)

    def prompt_chars(self, body: Mapping[str, Any]) -> int:
        if self.conversation_key not in body:
            return len(dumps(body))
        system = body.get(self.system_key) if self.system_key else None
        return prompt_chars(dumps(body[self.conversation_key])) + len(dumps(system or ""))  # media: as 0

    def with_feedback(self, body: Mapping[str, Any], answer: str, ask: str) -> dict[str, Any] | None:
        turns = body.get(self.conversation_key)
        if not isinstance(turns, list):
            return None
        return {**body, self.conversation_key: [*turns, *self.feedback_turns(answer, ask)]}

    def feedback_turns(self, answer: str, ask: str) -> list[dict[str, Any]]:
        """The replayed answer and the ask, as turns of this shape's conversation."""
        return [{"role": "assistant", "content": answer}, {"role": "user", "content": ask}]

    def error_message(self, body: bytes | str) -> str:
        return generic_error_message(body)

    def adapt(self, status: int, message: str) -> str | None:
        return None

    def answered_free_text(self, content: object) -> str | None:
        return None

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in self.REQUEST_ID_HEADERS:
            value = headers.get(name)
            if value:
                return value
        return None

    def parse_models(self, raw: bytes) -> list[str]:
        data = orjson.loads(raw)
        entries = data.get("data", data.get("models")) if isinstance(data, dict) else data
        ids = [e.get("id") or e.get("name") or e.get("model") for e in entries or ()]
        return [str(i) for i in ids if i]
