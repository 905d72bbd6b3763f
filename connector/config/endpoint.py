"""Where requests go and in which API shape: a pure function of the config.

The order in which the endpoint is decided, first wins:

1. ``url``, when given (and not just the form's default);
2. the ``provider`` preset's base URL;
3. the shape's own settings (``azure.resource``/``azure.endpoint``, ``bedrock.region``,
   ``vertex.project``/``vertex.location``);
4. the shape's public default (OpenAI, Anthropic, Gemini).

``api_compatibility`` left at its default takes the preset's shape. The config
model validates with :func:`resolve_endpoint` (its ValueErrors are worded for
the config) and never changes its own fields: ``config.endpoint`` gives the
result, and ``config.url`` / ``config.api_compatibility`` stay what the user wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from connector.config import providers
from connector.config.shape_settings import AzureSettings, BedrockSettings, VertexSettings
from connector.secrets import is_auth_header

DEFAULT_URL = "https://api.openai.com/v1/chat/completions"



@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    """The resolved endpoint: the canonical API shape and the URL (a base or a full URL, as given)."""

    shape: str
    url: str


class EndpointSettings(Protocol):
    """The config fields endpoint resolution reads (:class:`~connector.config.model.SourceConfig` has them)."""

    @property
    def url(self) -> str: ...
    @property
    def api_key(self) -> SecretStr | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def model(self) -> str | None: ...
    @property
    def request_template(self) -> Mapping[str, Any] | None: ...
    @property
    def api_compatibility(self) -> str: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def azure(self) -> AzureSettings | None: ...
    @property
    def bedrock(self) -> BedrockSettings | None: ...
    @property
    def vertex(self) -> VertexSettings | None: ...
    @property
    def model_fields_set(self) -> set[str]: ...


def _explicit(config: EndpointSettings, field: str, value: Any, default: Any) -> bool:
    # Form renderers send defaults back, so a field equal to its default counts as unset.
    return field in config.model_fields_set and value != default


def resolve_endpoint(config: EndpointSettings) -> ApiEndpoint:
    """The shape and URL the config means (see the module doc).

    Raises ValueError, worded for the config, when a shape lacks what it needs.
    """
    if config.provider is not None and config.provider not in providers.presets():
        raise ValueError(f"provider: unknown provider '{config.provider}'; known: {', '.join(providers.presets())}")
    preset = providers.preset(config.provider) if config.provider else None
    shape = providers.canonical(config.api_compatibility)
    if preset is not None and not _explicit(config, "api_compatibility", config.api_compatibility,
                                            providers.DEFAULT_SHAPE):
        shape = providers.canonical(preset.dialect)
    url = config.url
    url_given = _explicit(config, "url", url, DEFAULT_URL)
    has_key = bool(config.api_key and config.api_key.get_secret_value())

    if shape == "azure_openai":
        azure = config.azure or AzureSettings()
        if not url_given:
            endpoint = providers.azure_endpoint(azure.resource, azure.endpoint)
            if endpoint is None:
                raise ValueError("azure: api_compatibility azure_openai needs azure.resource or azure.endpoint "
                                 "(or url set to the resource endpoint)")
            url = endpoint
        if not azure.deployment and not config.model and config.request_template is None:
            raise ValueError("azure.deployment: give the deployment name (or model, used as the deployment)")
    elif shape in ("amazon_bedrock", "bedrock_embeddings"):
        url = _bedrock_url(config, shape, url if url_given else None, has_key)
    elif shape == "google_vertex":
        vertex = config.vertex or VertexSettings()
        if vertex.project is None and not has_key:
            raise ValueError("vertex.project: give the Google Cloud project (or an api_key for Vertex express mode)")
        if vertex.credentials_json is not None:
            _check_google_credentials(vertex.credentials_json.get_secret_value())
        if not url_given:
            url = providers.vertex_base(vertex.project, vertex.location)
    elif not url_given:
        base = (preset.base_url if preset else None) or providers.default_base(shape)
        if base is not None and (preset is not None or shape != providers.DEFAULT_SHAPE):
            url = base

    if preset is not None and preset.needs_key and not has_key and not any(map(is_auth_header, config.headers)):
        raise ValueError(f"api_key: provider '{preset.name}' needs an API key")
    return ApiEndpoint(shape, url)


def _bedrock_url(config: EndpointSettings, shape: str, url: str | None, has_key: bool) -> str:
    """The URL of a Bedrock shape (``url`` when given, else the region's); ValueError for what it lacks."""
    bedrock = config.bedrock
    if shape == "bedrock_embeddings":  # InvokeModel with a Bedrock API key
        if not has_key:
            raise ValueError("api_key: api_compatibility bedrock_embeddings authenticates with an Amazon Bedrock API "
                             "key (a bearer token); set api_key (SigV4 signing is not offered for embeddings here)")
        if url is None and bedrock is None:
            raise ValueError("bedrock.region: api_compatibility bedrock_embeddings needs bedrock.region, e.g. "
                             "us-east-1 (or url set to the runtime endpoint)")
        return url or providers.bedrock_runtime(bedrock.region if bedrock else "")
    if bedrock is None:
        raise ValueError("bedrock.region: api_compatibility amazon_bedrock needs bedrock.region, e.g. us-west-2")
    if (bedrock.access_key_id is None) != (bedrock.secret_access_key is None):
        raise ValueError("bedrock: give both access_key_id and secret_access_key, or neither")
    return url or providers.bedrock_base(bedrock.region)


def _check_google_credentials(text: str) -> None:
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("vertex.credentials_json: is not valid JSON; paste the key file's content") from None
    if not isinstance(info, dict) or info.get("type") not in ("service_account", "authorized_user"):
        raise ValueError("vertex.credentials_json: expected a service-account key (type service_account) "
                         "or user credentials (type authorized_user)")


def signs_with_cloud_credentials(shape: str) -> bool:
    """Bedrock with SigV4, or Vertex with OAuth: authenticated without an api_key."""
    return shape in ("amazon_bedrock", "google_vertex")
