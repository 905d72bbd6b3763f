"""The connector's configuration: one pydantic model, the single source of truth.

:class:`SourceConfig` holds what to ask and where (endpoint, templates, input, API shape); it
inherits the run-policy fields (:mod:`connector.config.run_settings`) and ``tasks``
(:mod:`connector.config.task_settings`); its sections live in :mod:`connector.config.sections` and
:mod:`connector.config.input`. Validated, every field holds a parsed value: templates and the output
schema are objects (JSON text is accepted on input). The model never changes its own fields: the
endpoint a provider preset or shape settings imply is :attr:`SourceConfig.endpoint`.

``spec/spec.json`` is generated from :class:`SourceConfig` (``make spec``)
and checked in; a test fails when the two drift. Loading a config is two steps,
in this order: the raw JSON is validated against that JSON schema (what every
Airbyte platform does, so our errors match theirs but read better), then parsed
into the model, which adds the cross-field rules a schema cannot say.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, WithJsonSchema, field_validator, model_validator

from connector import secrets
from connector.config import header_values
from connector.config.address import Address, is_private_host
from connector.config.batch import BatchConfig, check_batch
from connector.config.embedding_settings import EmbeddingsConfig, check_embeddings, default_columns
from connector.config.endpoint import DEFAULT_URL, ApiEndpoint, resolve_endpoint, signs_with_cloud_credentials
from connector.config.input import InputConfig
from connector.config.packing_rules import check_packing
from connector.config.providers import ApiShape, presets
from connector.config.run_settings import RunSettings
from connector.config.sections import Parameters, ResponseTemplate
from connector.config.shape_settings import AzureSettings, BedrockSettings, VertexSettings
from connector.config.task_settings import TaskSettings, check_tasks

MODELS_STREAM = "models"  # the stream of GET /models, offered beside stream_name
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
ResponseTemplateOrJSONText = Annotated[ResponseTemplate, WithJsonSchema({"type": ["object", "string"]})]

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

class SourceConfig(RunSettings, TaskSettings):
    """Configuration of source-openai-compatible."""

    model_config = ConfigDict(
        extra="forbid",
        defer_build=True,
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
    response_template: ResponseTemplateOrJSONText = Field(
        default_factory=ResponseTemplate,
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
        description=(
            "Deadline for each request attempt as a whole: connecting, sending and receiving the entire "
            "answer, streamed or not (a retry gets a new one). A numeric string such as \"30\" is accepted."
        ),
        json_schema_extra={"order": 9},
    )
    headers: HeaderMap = Field(
        default_factory=dict,
        title="Extra headers",
        description=(
            'Sent with every request (tenant, routing): {"X-Tenant": "acme"}, or a list of '
            '{"name": ..., "value": ...}. Values are secrets: never printed; a platform stores the field encrypted.'
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
    stream_name: str = Field(
        "enriched_rows",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        title="Stream name",
        json_schema_extra={"order": 19},
    )
    # API shapes and providers (connector/dialects, connector/providers.json).
    api_compatibility: ApiShape = Field(
        "openai_chat_completions",
        title="API shape",
        description=(
            "Which API the endpoint speaks: openai_chat_completions (openai_compatible is an alias), "
            "openai_responses, anthropic_messages, gemini_generate_content, azure_openai, amazon_bedrock, "
            "google_vertex; openai_embeddings, gemini_embeddings and bedrock_embeddings (InvokeModel, Titan or "
            "Cohere) embed the prompt's text instead (a vector column). Every chat shape gives the same output "
            "columns."
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
    batch: BatchConfig = Field(default_factory=BatchConfig, title="Batch mode", json_schema_extra={"order": 57})
    embeddings: EmbeddingsConfig | None = Field(None, title="Embeddings", json_schema_extra={"order": 58})
    media_columns: dict[str, Literal["image", "document"]] = Field(
        default_factory=dict, title="Media columns",
        description='Input columns holding an image or a PDF, e.g. {"photo": "image", "invoice": "document"}: '
                    "a URL, a file path, base64 text or a binary column. The template places each like any column "
                    "(docs/API_SHAPES.md, Media).",
        json_schema_extra={"order": 59})

    @model_validator(mode="before")
    @classmethod
    def _shape_defaults(cls, data: Any) -> Any:
        return default_columns(data)  # an embeddings config's output column is the vector

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

    @field_validator("stream_name")
    @classmethod
    def _not_the_models_stream(cls, value: str) -> str:
        if value == MODELS_STREAM:
            raise ValueError(f"'{MODELS_STREAM}' is the name of the stream that lists the endpoint's models; "
                             "name the enriched stream something else (default enriched_rows)")
        return value

    @field_validator("request_template", "response_template", "output_schema", mode="before")
    @classmethod
    def _json_text(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "response_template":
            return {}  # the default columns
        if isinstance(value, str):
            if not value.strip():
                return {} if info.field_name == "response_template" else None
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

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if problem := header_values.name_problem(name):
                raise ValueError(f"'{name}' {problem}")
            if problem := header_values.value_problem(text):
                raise ValueError(f"the value of '{name}' {problem}")
        return value

    @field_validator("api_key")
    @classmethod
    def _sendable_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        key, note = header_values.key_without_line_end(value.get_secret_value())
        if note is None:
            return value
        if isinstance(info.context, dict) and callable(info.context.get("note")):
            info.context["note"](note)  # load_config's note: shown as a LOG line
        return SecretStr(key)

    @model_validator(mode="after")
    def _input_tls(self) -> SourceConfig:
        self.input.use_tls(self.tls)  # an https:// input is checked like the endpoint
        return self

    @model_validator(mode="after")
    def _endpoint_resolves(self) -> SourceConfig:
        resolve_endpoint(self)  # a ValueError worded for the config when it cannot; nothing is changed
        return self

    @model_validator(mode="after")
    def _remote_hosts_need_a_key(self) -> SourceConfig:
        endpoint = self.endpoint
        host = urlsplit(endpoint.url).hostname or ""
        has_auth = bool(self.api_key and self.api_key.get_secret_value()) or any(
            secrets.is_auth_header(h) for h in self.headers
        )
        if signs_with_cloud_credentials(endpoint.shape):
            return self  # SigV4 or OAuth, from cloud credentials
        if not has_auth and not is_private_host(host) and not secrets.url_has_credentials(endpoint.url):
            raise ValueError(
                f"api_key: {host} is a remote host and no api_key (or auth header) is set; set api_key "
                "(any placeholder, e.g. \"none\", if that server really needs none)"
            )
        return self

    @model_validator(mode="after")
    def _batch_mode(self) -> SourceConfig:
        check_batch(self.batch, self.api_compatibility, self.input, stream=self.stream)
        check_embeddings(self, self.response_template.json_columns)
        body = {**(self.request_template or {}), **self.parameters.as_body(), **self.extra_body}
        self._packing = check_packing(self.rows_per_request, self.endpoint.shape, tasks=self.tasks is not None,
                                      batch=self.batch.enabled, media=bool(self.media_columns),
                                      request_template=body, columns=self.response_template.columns)
        return self

    @model_validator(mode="after")
    def _output_schema(self) -> SourceConfig:
        if self.output_schema is None:
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
    def _one_request_form(self) -> SourceConfig:
        if self.tasks is not None:  # each task has its prompt (connector.config.task_settings)
            check_tasks(self.tasks, self.prompt, self.request_template, self.batch, self.embeddings, self.cache)
        elif self.request_template is None and self.prompt is None:
            raise ValueError("give a prompt (short form) or a request_template (full request body)")
        if self.request_template is not None and (self.prompt or self.system_prompt):
            raise ValueError("give either prompt/system_prompt or request_template, not both")
        return self

    # Derived values -------------------------------------------------------------

    @property
    def endpoint(self) -> ApiEndpoint:
        """The API shape and URL requests go to, the provider preset and shape settings applied
        (:func:`connector.config.endpoint.resolve_endpoint`)."""
        return resolve_endpoint(self)

    @property
    def chat_url(self) -> str:
        """The chat-completions URL, whichever form the endpoint's URL was given in (its query kept,
        userinfo not)."""
        return Address.parse(self.endpoint.url).url(CHAT_PATH, base=self.base_url)

    @property
    def base_url(self) -> str:
        """The API base (``.../v1``) that ``/models`` hangs off, without query or userinfo."""
        return Address.parse(self.endpoint.url).without_suffix(CHAT_PATH)

    def request_headers(self) -> dict[str, str]:
        """Headers sent with every request, key included."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key is not None and self.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        headers.update(self.headers)
        return headers
