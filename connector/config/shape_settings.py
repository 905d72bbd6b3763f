"""Settings of the API shapes whose address or credentials are their own (Azure, Bedrock, Vertex).

:mod:`connector.config.endpoint` turns them, with ``provider`` and ``api_compatibility``,
into one URL.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


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
