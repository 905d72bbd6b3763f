"""Settings of the API shapes whose address or credentials are their own (Azure, Bedrock, Vertex),
and the rule that turns ``provider``, ``api_compatibility`` and these settings into one URL.

The order in which the endpoint is decided, first wins:

1. ``url``, when given (and not just the form's default);
2. the ``provider`` preset's base URL;
3. the shape's own settings (``azure.resource``/``azure.endpoint``, ``bedrock.region``,
   ``vertex.project``/``vertex.location``);
4. the shape's public default (OpenAI, Anthropic, Gemini).

``api_compatibility`` left at its default takes the preset's shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connector.config import providers
from connector.secrets import is_auth_header

if TYPE_CHECKING:
    from connector.config.model import SourceConfig


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AzureSettings(_Settings):
    """Azure OpenAI: where the resource is, which deployment, which API version."""

    resource: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="Resource name: the endpoint is https://<resource>.openai.azure.com.",
    )
    endpoint: str | None = Field(
        None, description="The resource endpoint instead, e.g. https://my-res.cognitiveservices.azure.com."
    )
    deployment: str | None = Field(
        None, description="Deployment name. Default: the model name (after model_mapping)."
    )
    api_version: str = Field(
        "2024-10-21",
        description="The api-version query parameter; 'v1' uses the /openai/v1 API, where model is the deployment.",
    )


class BedrockSettings(_Settings):
    """Amazon Bedrock's OpenAI-compatible endpoint: a region, and a Bedrock API key (api_key) or AWS credentials."""

    region: str = Field(..., pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", description="e.g. us-west-2.")
    access_key_id: SecretStr | None = Field(
        None,
        description="For SigV4 (needs the optional extra 'bedrock'). Without it and without api_key, "
        "the AWS default credential chain is used (environment, profile, instance role).",
        json_schema_extra={"airbyte_secret": True},
    )
    secret_access_key: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    session_token: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})


class VertexSettings(_Settings):
    """Google Vertex AI (Gemini's generateContent), with service-account credentials."""

    project: str | None = Field(
        None, description="Google Cloud project id. Leave out only with an api_key (Vertex express mode)."
    )
    location: str = Field("us-central1", description="Region, or 'global'.")
    credentials_json: SecretStr | None = Field(
        None,
        description="Service-account key JSON (needs the optional extra 'vertex'). "
        "Default: Application Default Credentials.",
        json_schema_extra={"airbyte_secret": True},
    )


def _explicit(config: SourceConfig, field: str, default: Any) -> bool:
    # Form renderers send defaults back, so a field equal to its default counts as unset.
    return field in config.model_fields_set and getattr(config, field) != default


def resolve(config: SourceConfig, default_url: str) -> None:
    """Fix ``api_compatibility`` and ``url`` from the preset and the shape's settings (see the module doc).

    Raises ValueError, worded for the config, when a shape lacks what it needs.
    """
    preset = providers.preset(config.provider) if config.provider else None
    if preset is not None and not _explicit(config, "api_compatibility", providers.DEFAULT_SHAPE):
        config.api_compatibility = preset.dialect  # type: ignore[assignment]
    shape = providers.canonical(config.api_compatibility)
    url_given = _explicit(config, "url", default_url)
    has_key = bool(config.api_key and config.api_key.get_secret_value())

    if shape == "azure_openai":
        azure = config.azure or AzureSettings()
        if not url_given:
            endpoint = providers.azure_endpoint(azure.resource, azure.endpoint)
            if endpoint is None:
                raise ValueError("azure: api_compatibility azure_openai needs azure.resource or azure.endpoint "
                                 "(or url set to the resource endpoint)")
            config.url = endpoint
        if not azure.deployment and not config.model and not isinstance(config.request_template, dict):
            raise ValueError("azure.deployment: give the deployment name (or model, used as the deployment)")
    elif shape == "amazon_bedrock":
        if config.bedrock is None:
            raise ValueError("bedrock.region: api_compatibility amazon_bedrock needs bedrock.region, e.g. us-west-2")
        if not url_given:
            config.url = providers.bedrock_base(config.bedrock.region)
        keys = (config.bedrock.access_key_id, config.bedrock.secret_access_key)
        if (keys[0] is None) != (keys[1] is None):
            raise ValueError("bedrock: give both access_key_id and secret_access_key, or neither")
    elif shape == "google_vertex":
        vertex = config.vertex or VertexSettings()
        if vertex.project is None and not has_key:
            raise ValueError("vertex.project: give the Google Cloud project (or an api_key for Vertex express mode)")
        if vertex.credentials_json is not None:
            try:
                info = json.loads(vertex.credentials_json.get_secret_value())
            except json.JSONDecodeError:
                raise ValueError("vertex.credentials_json: is not valid JSON; paste the key file's content") from None
            if not isinstance(info, dict) or info.get("type") not in ("service_account", "authorized_user"):
                raise ValueError("vertex.credentials_json: expected a service-account key (type service_account) "
                                 "or user credentials (type authorized_user)")
        if not url_given:
            config.url = providers.vertex_base(vertex.project, vertex.location)
    elif not url_given:
        base = (preset.base_url if preset else None) or providers.default_base(shape)
        if base is not None and (preset is not None or shape != providers.DEFAULT_SHAPE):
            config.url = base

    if preset is not None and preset.needs_key and not has_key and not any(map(is_auth_header, config.headers)):
        raise ValueError(f"api_key: provider '{preset.name}' needs an API key")


def signs_with_cloud_credentials(config: SourceConfig) -> bool:
    """Bedrock with SigV4, or Vertex with OAuth: authenticated without an api_key."""
    shape = providers.canonical(config.api_compatibility)
    return shape in ("amazon_bedrock", "google_vertex")
