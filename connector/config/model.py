"""The connector's configuration: one pydantic model, the single source of truth.

``spec/spec.json`` is generated from :class:`SourceConfig` (``python -m connector.specgen``)
and checked in; a test fails when the two drift. Loading a config is two steps,
in this order: the raw JSON is validated against that JSON schema (what every
Airbyte platform does, so our errors match theirs but read better), then parsed
into the model, which adds the cross-field rules a schema cannot say.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from connector import secrets
from connector.config import shapes as api_settings
from connector.config.address import Address
from connector.config.providers import ApiShape, presets
from connector.config.shapes import AzureSettings, BedrockSettings, VertexSettings

DEFAULT_URL = "https://api.openai.com/v1/chat/completions"
CHAT_PATH = "/chat/completions"

# A few fields accept a second JSON type for compatibility with other tools'
# stored configs (AI Squared stores the timeout as a string, templates as JSON
# text). The schema says so with a type list rather than anyOf, so form
# renderers still show one simple input.
NumberOrNumericString = Annotated[
    float,
    WithJsonSchema(
        {
            "type": ["number", "string"],
            "exclusiveMinimum": 0,
            "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$",
        }
    ),
]
# Validated, the field holds the object: JSON text is parsed on the way in (see _json_text).
ObjectOrJSONText = Annotated[
    dict[str, Any] | None,
    WithJsonSchema({"type": ["object", "string"]}),
]

# Header values are secrets. Airbyte platforms find secrets through "properties" and "items"
# only (never "additionalProperties"), so the list form is what lets a platform store them
# encrypted; the object form stays for configs written by hand. Both become a dict.
HeaderMap = Annotated[
    dict[str, str],
    WithJsonSchema({
        "type": ["object", "array"],
        "additionalProperties": {"type": "string", "airbyte_secret": True},
        "items": {
            "type": "object",
            "required": ["name", "value"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "title": "Name"},
                           "value": {"type": "string", "title": "Value", "airbyte_secret": True}},
        },
    }),
]

ColumnType = Literal["string", "integer", "number", "boolean", "object", "array"]


_PRIVATE_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa", ".svc", ".cluster.local", ".corp")


def _is_private_host(host: str) -> bool:
    """Loopback, private or link-local addresses, single-label names (docker, k8s) and private suffixes."""
    import ipaddress

    host = host.strip("[]").lower()
    if host == "localhost" or ("." not in host and ":" not in host) or host.endswith(_PRIVATE_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    """Where the rows come from."""

    path: str | None = Field(
        None,
        title="Path",
        description=(
            "A CSV, JSONL or Parquet file, a glob (data/*.parquet) or a directory; '-' reads standard input "
            "(JSON lines, or the Airbyte messages of another connector's read)."
        ),
        json_schema_extra={"order": 0, "examples": ["data/reviews.csv", "data/part-*.parquet", "-"]},
    )
    format: Literal["auto", "csv", "jsonl", "parquet", "airbyte"] = Field(
        "auto",
        title="Format",
        description=(
            "File format; 'auto' infers it from the file extension (on stdin: from the first line). "
            "'airbyte': stdin carries Airbyte messages; each RECORD's data is a row, other lines are skipped."
        ),
        json_schema_extra={"order": 1},
    )
    rows: list[dict[str, Any]] | None = Field(
        None,
        title="Inline rows",
        description="Rows given directly in the config, for tiny jobs and tests.",
        json_schema_extra={"order": 2},
    )
    primary_key: str | None = Field(
        None,
        title="Primary key column",
        description="Input column that identifies a row. Default: the row's position (_row_number).",
        json_schema_extra={"order": 3},
    )
    batch_size: int = Field(
        1024,
        gt=0,
        le=1_000_000,
        title="Read batch size",
        description="Rows read from the input per batch; memory stays bounded by this.",
        json_schema_extra={"order": 4},
    )
    columns: dict[str, ColumnType] | None = Field(
        None,
        title="Columns (stdin)",
        description=(
            "For input.path '-': the input columns and their types, e.g. {\"review\": \"string\", \"id\": "
            "\"integer\"}. discover declares them (it cannot read stdin); read keeps only these columns. "
            "Without it, read infers the columns from the first batch and keeps them."
        ),
        json_schema_extra={"order": 5},
    )
    stream: str | None = Field(
        None,
        title="Stream (stdin)",
        description="With Airbyte messages on stdin: take only the RECORDs of this stream. Default: every RECORD.",
        json_schema_extra={"order": 6},
    )

    @property
    def is_stdin(self) -> bool:
        """Rows come from standard input."""
        return self.path == "-"

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        if (self.path is None) == (self.rows is None):
            raise ValueError("give exactly one of input.path (a file, glob or folder) or input.rows")
        if not self.is_stdin and (self.columns is not None or self.stream is not None):
            raise ValueError("input.columns and input.stream apply to standard input only (input.path '-')")
        if self.is_stdin and self.format not in ("auto", "jsonl", "airbyte"):
            raise ValueError("input.format: standard input carries JSON lines or Airbyte messages "
                             "(auto, jsonl or airbyte)")
        return self


class ResponseTemplate(_Strict):
    """Which output columns to take from each reply."""

    columns: dict[str, str] = Field(
        default_factory=lambda: {"answer": "choices.0.message.content"},
        title="Output columns",
        description=(
            "Output column name -> dotted path into the chat-completion reply, e.g. "
            "'choices.0.message.content', 'usage.total_tokens', 'choices.0.finish_reason'. "
            "Streamed replies are assembled into the same shape first."
        ),
    )
    @field_validator("columns")
    @classmethod
    def _paths(cls, columns: dict[str, str]) -> dict[str, str]:
        for name, path in columns.items():
            steps = path.split(".")
            if not path.strip() or any(not step or step != step.strip() for step in steps):
                raise ValueError(
                    f"column '{name}': path '{path}' has an empty or padded step; "
                    "write dotted steps such as choices.0.message.content or usage.total_tokens"
                )
        return columns

    json_columns: dict[str, ColumnType] = Field(
        default_factory=dict,
        title="Typed columns from JSON content",
        description=(
            "Parse the message content as a JSON object and expose these keys as typed columns, "
            'e.g. {"sentiment": "string", "score": "number"}.'
        ),
    )


class Parameters(_Strict):
    """Generation parameters."""

    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int | None = Field(None, gt=0, description="Upper bound on tokens generated per row.")
    stop: Annotated[
        str | list[str] | None,
        WithJsonSchema({"type": ["string", "array"], "items": {"type": "string"}}),
    ] = Field(None, description="Stop sequence(s).")
    seed: int | None = Field(None, description="Seed, for servers that support reproducible sampling.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = Field(
        None, description='e.g. {"type": "json_object"} or a json_schema format.'
    )
    # Mapped to each API shape's own names (connector/dialects); one a shape cannot express
    # is a config error, never a silent drop.
    max_completion_tokens: int | None = Field(None, gt=0, description="Newer name of max_tokens (reasoning models).")
    tool_choice: Annotated[
        str | dict[str, Any] | None, WithJsonSchema({"type": ["string", "object"]})
    ] = Field(None, description='auto, none, required, or {"type": "function", "function": {"name": "..."}}.')
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(None)
    user: str | None = Field(None, description="End-user id, for the provider's abuse monitoring.")
    metadata: dict[str, str] | None = Field(None, description="Key-value tags stored with the request.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Log-probabilities of the top N tokens.")
    store: bool | None = Field(None, description="Let the provider store the answer (openai_responses: false).")

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "none", "required"):
            raise ValueError('must be auto, none, required or {"type": "function", "function": {"name": ...}}')
        return value

    def as_body(self) -> dict[str, Any]:
        """The parameters that are set, as request-body fields."""
        return self.model_dump(exclude_none=True)


class CacheConfig(_Strict):
    """The answer cache: answers already paid for are never bought again."""

    enabled: bool = Field(True, description="Look answers up before sending, store them before emitting.")
    path: str | None = Field(
        None,
        description="sqlite file. Default: $XDG_CACHE_HOME/source-openai-compatible/answers.sqlite.",
    )
    ttl_seconds: float | None = Field(None, gt=0, description="Ignore cached answers older than this.")


class TLSConfig(_Strict):
    """How the endpoint's certificate is checked."""

    verify: bool = Field(True, description="Verify the server certificate. Turn off only for a test server.")
    ca_bundle: str | None = Field(None, description="A PEM file of extra CA certificates (a private CA).")


class Price(_Strict):
    """Price of one model, in currency units per million tokens."""

    input_per_million: float = Field(..., ge=0)
    output_per_million: float = Field(..., ge=0)


ErrorClass = Literal[
    "rate_limit", "quota", "auth", "timeout", "connection", "server", "bad_request",
    "not_found", "context_length", "content_filter", "bad_reply", "validation",
]


_DEFAULT_FALLBACK_ON: tuple[ErrorClass, ...] = ("rate_limit", "server", "timeout", "context_length")


class SourceConfig(_Strict):
    """Configuration of source-openai-compatible."""

    model_config = ConfigDict(
        extra="forbid",
        title="OpenAI-compatible enrichment source",
        json_schema_extra={"additionalProperties": False},
    )

    url: str = Field(
        DEFAULT_URL,
        title="Endpoint URL",
        description=(
            "The chat-completions URL, or the API base URL (http://host:8000/v1); "
            "'/chat/completions' is appended to a base URL."
        ),
        json_schema_extra={"order": 0, "examples": ["http://localhost:8000/v1", DEFAULT_URL]},
    )
    api_key: SecretStr | None = Field(
        None,
        title="API key",
        description="Sent as 'Authorization: Bearer <key>'. Optional for local servers.",
        json_schema_extra={"order": 1, "airbyte_secret": True},
    )
    model: str | None = Field(
        None,
        title="Model",
        description="Model name sent as 'model' (unless the request template sets one).",
        json_schema_extra={"order": 2, "examples": ["gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct"]},
    )
    prompt: str | None = Field(
        None,
        title="Prompt",
        description="Short form: the user message, with {{column}} placeholders.",
        json_schema_extra={"order": 3, "examples": ["Classify the sentiment of: {{review_text}}"]},
    )
    system_prompt: str | None = Field(
        None,
        title="System prompt",
        description="Short form: an optional system message, with {{column}} placeholders.",
        json_schema_extra={"order": 4},
    )
    request_template: ObjectOrJSONText = Field(
        None,
        title="Request format",
        description=(
            "Full request body with {{column}} placeholders, as a JSON object or JSON text. "
            "A string that is exactly one placeholder keeps the value's type. "
            "Use this or the prompt short form."
        ),
        json_schema_extra={"order": 5},
    )
    response_template: ObjectOrJSONText = Field(
        None,
        title="Response format",
        description=(
            'Output columns, e.g. {"columns": {"answer": "choices.0.message.content"}, '
            '"json_columns": {"sentiment": "string"}}; JSON object or JSON text.'
        ),
        json_schema_extra={"order": 6},
    )
    input: InputConfig = Field(
        ..., title="Input table", description="The rows to enrich.", json_schema_extra={"order": 7}
    )
    stream: bool = Field(
        False,
        title="Streaming",
        description="Request SSE streaming and assemble the answer from deltas (records time to first token).",
        json_schema_extra={"order": 8},
    )
    timeout: NumberOrNumericString = Field(
        60.0,
        gt=0,  # the schema's exclusiveMinimum does not apply to the string form ("0")
        title="HTTP timeout (seconds)",
        description="Per request; a numeric string such as \"30\" is accepted.",
        json_schema_extra={"order": 9},
    )
    headers: HeaderMap = Field(
        default_factory=dict,
        title="Extra headers",
        description=(
            'Sent with every request (tenant, routing): {"X-Tenant": "acme"}, or a list of '
            '{"name": ..., "value": ...} (as forms enter it). Values are secrets: never printed, stored encrypted.'
        ),
        json_schema_extra={"order": 10},
    )
    parameters: Parameters = Field(
        default_factory=Parameters,
        title="Generation parameters",
        description="Sent with their OpenAI names when set; they override the same keys of the template.",
        json_schema_extra={"order": 11},
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        title="Extra body fields",
        description="Provider-specific fields merged into every request last (top_k, chat_template_kwargs).",
        json_schema_extra={"order": 12},
    )
    concurrency: int = Field(
        16,
        ge=1,
        le=4096,
        title="Requests in flight",
        description=(
            "Maximum concurrent requests. With adaptive_concurrency the cap halves on 429/503/timeouts "
            "and grows back by one per cap's worth of clean answers."
        ),
        json_schema_extra={"order": 13},
    )
    min_concurrency: int = Field(
        1, ge=1, le=4096, title="Minimum requests in flight", json_schema_extra={"order": 14}
    )
    adaptive_concurrency: bool = Field(
        True,
        title="Adaptive concurrency",
        description="Shrink the cap when the endpoint is overloaded and grow it back while it answers cleanly.",
        json_schema_extra={"order": 15},
    )
    requests_per_minute: int | None = Field(
        None,
        gt=0,
        title="Requests per minute",
        description="Budget for requests started per minute (token bucket); unset means no budget.",
        json_schema_extra={"order": 16},
    )
    tokens_per_minute: int | None = Field(
        None,
        gt=0,
        title="Tokens per minute",
        description=(
            "Budget for prompt + completion tokens per minute. Each request is estimated before sending "
            "(prompt length, plus max_tokens) and corrected from the reply's usage."
        ),
        json_schema_extra={"order": 17},
    )
    max_retries: int = Field(
        5,
        ge=0,
        le=20,
        title="Retries per row",
        description="On 408/409/429/5xx and connection errors, with exponential backoff and Retry-After.",
        json_schema_extra={"order": 18},
    )
    stream_name: str = Field(
        "enriched_rows",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        title="Stream name",
        json_schema_extra={"order": 19},
    )
    on_row_error: Literal["emit", "skip", "fail"] = Field(
        "emit",
        title="When a row fails after retries",
        description=(
            "emit: the record is emitted with _status error and the reason (default); skip: it is left out "
            "(and counted in the summary); fail: the sync stops with an error."
        ),
        json_schema_extra={"order": 20},
    )
    max_error_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        title="Maximum error rate",
        description="Stop the sync once more than this fraction of rows failed (checked after 20 rows).",
        json_schema_extra={"order": 21},
    )
    max_requests: int | None = Field(
        None,
        gt=0,
        title="Spend guard: requests",
        description="At most this many requests (retries included) reach the endpoint in one run; then the "
        "run stops cleanly before the next row, after a checkpoint.",
        json_schema_extra={"order": 22},
    )
    max_total_tokens: int | None = Field(
        None,
        gt=0,
        title="Spend guard: tokens",
        description="Send a request only while the tokens used (in + out) plus the estimates of the requests "
        "in flight stay within this; then stop cleanly before the next row, after a checkpoint.",
        json_schema_extra={"order": 23},
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, title="Answer cache", json_schema_extra={"order": 24})
    null_policy: Literal["empty", "skip", "literal"] = Field(
        "empty",
        title="Null cells",
        description=(
            "For a null (or empty) cell the template uses: empty sends an empty string (never the word None); "
            "skip sends nothing and gives the row _status skipped_null; literal sends null_literal."
        ),
        json_schema_extra={"order": 26},
    )
    null_literal: str = Field("", title="Text for null cells", description="With null_policy literal.",
                              json_schema_extra={"order": 27})
    context_window: int | None = Field(
        None,
        gt=0,
        title="Context window (tokens)",
        description=(
            "The model's context size. When set, each prompt is estimated offline (characters per token, "
            "learned from replies' usage) before sending; too_long_policy says what to do with one that "
            "does not fit with max_tokens."
        ),
        json_schema_extra={"order": 28},
    )
    too_long_policy: Literal["truncate", "skip", "fail"] = Field(
        "skip",
        title="Prompts longer than the context window",
        description="truncate cuts truncate_column to fit; skip gives _status skipped_too_long; fail stops.",
        json_schema_extra={"order": 29},
    )
    truncate_column: str | None = Field(
        None, title="Column to truncate", description="With too_long_policy truncate: the long text column.",
        json_schema_extra={"order": 30},
    )
    validation_retries: int = Field(
        1,
        ge=0,
        le=5,
        title="Retries of an invalid structured answer",
        description=(
            "When json_columns (or an output schema) cannot be read from an answer, ask again this many times "
            "with the problem appended to the conversation."
        ),
        json_schema_extra={"order": 31},
    )
    fallback_models: list[str] = Field(
        default_factory=list,
        title="Fallback models",
        description="Tried in order for a row whose error class is in fallback_on; _model says who answered.",
        json_schema_extra={"order": 32},
    )
    fallback_on: list[ErrorClass] = Field(
        default_factory=lambda: list(_DEFAULT_FALLBACK_ON),
        title="Error classes that trigger a fallback",
        json_schema_extra={"order": 33},
    )
    context_windows: dict[str, int] = Field(
        default_factory=dict,
        title="Context window per model",
        description="For fallbacks: a model whose window is smaller than the prompt is passed over.",
        json_schema_extra={"order": 34},
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        title="Prices",
        description=(
            'Per model (or "*" for any), e.g. {"gpt-4o-mini": {"input_per_million": 0.15, '
            '"output_per_million": 0.6}}; fills _cost and the run summary.'
        ),
        json_schema_extra={"order": 35},
    )
    tls: TLSConfig = Field(default_factory=TLSConfig, title="TLS", json_schema_extra={"order": 25})
    # API shapes and providers (connector/dialects, connector/providers.json).
    api_compatibility: ApiShape = Field(
        "openai_chat_completions",
        title="API shape",
        description=(
            "Which API the endpoint speaks: openai_chat_completions (openai_compatible is an alias), "
            "openai_responses, anthropic_messages, gemini_generate_content, azure_openai, amazon_bedrock, "
            "google_vertex. Every shape gives the same output columns."
        ),
        json_schema_extra={"order": 50},
    )
    provider: str | None = Field(
        None,
        title="Provider preset",
        description="Fills in the base URL and API shape of a known provider (url, when given, wins).",
        json_schema_extra={"order": 51, "enum": list(presets())},
    )
    model_mapping: dict[str, str] = Field(
        default_factory=dict,
        title="Model name mapping",
        description='{"name you write": "name the endpoint expects"}, applied to every request\'s model.',
        json_schema_extra={"order": 52},
    )
    output_schema: ObjectOrJSONText = Field(
        None,
        title="Output JSON schema",
        description=(
            "Structured output: a JSON Schema (type object) sent as each API shape expresses it; the answer is "
            "validated and each property becomes a typed output column. JSON object or JSON text."
        ),
        json_schema_extra={"order": 53},
    )
    azure: AzureSettings | None = Field(None, title="Azure OpenAI", json_schema_extra={"order": 54})
    bedrock: BedrockSettings | None = Field(None, title="Amazon Bedrock", json_schema_extra={"order": 55})
    vertex: VertexSettings | None = Field(None, title="Google Vertex AI", json_schema_extra={"order": 56})

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an absolute http:// or https:// URL, "
                "e.g. http://localhost:8000/v1 or https://api.openai.com/v1"
            )
        return value.strip()

    @field_validator("headers", mode="before")
    @classmethod
    def _header_list(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        headers: dict[str, Any] = {}
        for item in value:  # the schema made each a {"name": str, "value": str}
            if item["name"] in headers:
                raise ValueError(f"header '{item['name']}' is given twice")
            headers[item["name"]] = item["value"]
        return headers

    @field_validator("request_template", "response_template", "output_schema", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    "give a JSON object or JSON text of one"
                ) from None
            if not isinstance(parsed, dict):
                raise ValueError("must be a JSON object")
            return parsed
        return value

    @model_validator(mode="after")
    def _resolve_endpoint(self) -> SourceConfig:
        if self.provider is not None and self.provider not in presets():
            raise ValueError(f"provider: unknown provider '{self.provider}'; known: {', '.join(presets())}")
        api_settings.resolve(self, DEFAULT_URL)
        return self

    @model_validator(mode="after")
    def _remote_hosts_need_a_key(self) -> SourceConfig:
        host = urlsplit(self.url).hostname or ""
        has_auth = bool(self.api_key and self.api_key.get_secret_value()) or any(
            secrets.is_auth_header(h) for h in self.headers
        )
        if api_settings.signs_with_cloud_credentials(self):
            return self  # SigV4 or OAuth, from cloud credentials
        if not has_auth and not _is_private_host(host) and not secrets.url_has_credentials(self.url):
            raise ValueError(
                f"api_key: {host} is a remote host and no api_key (or auth header) is set; set api_key "
                "(any placeholder, e.g. \"none\", if that server really needs none)"
            )
        return self

    @model_validator(mode="after")
    def _truncation_needs_a_column(self) -> SourceConfig:
        if self.context_window and self.too_long_policy == "truncate" and not self.truncate_column:
            raise ValueError("truncate_column: required when too_long_policy is truncate (name the long text column)")
        return self

    @model_validator(mode="after")
    def _output_schema(self) -> SourceConfig:
        if not isinstance(self.output_schema, dict):
            return self
        from connector.config.output_schema import check_schema

        try:
            check_schema(self.output_schema)
        except ValueError as exc:
            raise ValueError(f"output_schema: {exc}") from None
        if self.parameters.response_format is not None:
            raise ValueError("output_schema: give output_schema or parameters.response_format, not both")
        return self

    @model_validator(mode="after")
    def _concurrency_bounds(self) -> SourceConfig:
        if self.min_concurrency > self.concurrency:
            raise ValueError(
                f"min_concurrency ({self.min_concurrency}) is above concurrency ({self.concurrency}); lower it"
            )
        return self

    @model_validator(mode="after")
    def _one_request_form(self) -> SourceConfig:
        if self.request_template is None and self.prompt is None:
            raise ValueError("give a prompt (short form) or a request_template (full request body)")
        if self.request_template is not None and (self.prompt or self.system_prompt):
            raise ValueError("give either prompt/system_prompt or request_template, not both")
        return self

    # Derived values -------------------------------------------------------------

    @property
    def chat_url(self) -> str:
        """The chat-completions URL, whichever form ``url`` was given in (its query kept, userinfo not)."""
        return Address.parse(self.url).url(CHAT_PATH, base=self.base_url)

    @property
    def base_url(self) -> str:
        """The API base (``.../v1``) that ``/models`` hangs off, without query or userinfo."""
        return Address.parse(self.url).without_suffix(CHAT_PATH)

    @property
    def response(self) -> ResponseTemplate:
        """The parsed response template (defaults when none was given)."""
        raw = self.response_template
        return ResponseTemplate.model_validate(raw or {})

    def request_headers(self) -> dict[str, str]:
        """Headers sent with every request, key included."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key is not None and self.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        headers.update(self.headers)
        return headers
