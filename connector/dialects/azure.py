"""Azure OpenAI: chat completions at a deployment, with the ``api-key`` header.

Dated API versions: ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={v}``;
``api_version: v1``: ``{endpoint}/openai/v1/chat/completions`` with the deployment as ``model``.
The deployment is ``azure.deployment``, else the request's model (after ``model_mapping``).
A ``url`` that already names a deployment is used as it is (``api-version`` added when missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from connector.config.parts import RequestPart
from connector.dialects.base import Prepared
from connector.dialects.openai_chat import ChatDialect


class AzureDialect(ChatDialect):
    """Chat completions on Azure OpenAI."""

    name: ClassVar[str] = "azure_openai"
    # Azure's own id of the request is apim-request-id; x-request-id is forwarded from the model service.
    REQUEST_ID_HEADERS: ClassVar[tuple[str, ...]] = ("apim-request-id", "x-request-id")

    def __init__(self, config: RequestPart) -> None:
        super().__init__(config)
        azure = config.azure
        self._deployment = azure.deployment if azure else None
        self._version = azure.api_version if azure else "2024-10-21"
        base = self.address.base
        self._fixed = "/openai/deployments/" in urlsplit(base).path  # url names the deployment itself
        # The endpoint, a gateway's path prefix kept: https://res.openai.azure.com[/prefix]
        self._endpoint = base.split("/openai", 1)[0]

    def deployment_for(self, body: Mapping[str, Any]) -> str:
        """The deployment a body goes to: ``azure.deployment``, else its model."""
        return str(self._deployment or body.get("model") or self.model or "")

    def resource_url(self, resource: str) -> str:
        """The URL of a resource beside the deployments (``files``, ``batches/{id}``) in the configured API version."""
        if self._version == "v1":
            return self.address.url(f"/openai/v1/{resource}", base=self._endpoint)
        return self.address.url(f"/openai/{resource}", {"api-version": self._version}, base=self._endpoint)

    def url_for(self, body: Mapping[str, Any]) -> str:
        version = {"api-version": self._version}  # unless url's own query sets it
        if self._fixed:
            return self.address.url(params=version)
        if self._version == "v1":
            return self.address.url("/openai/v1/chat/completions", base=self._endpoint)
        deployment = quote(self.deployment_for(body), safe="")
        return self.address.url(f"/openai/deployments/{deployment}/chat/completions", version, base=self._endpoint)

    @property
    def endpoint_url(self) -> str:
        return self.url_for({})

    @property
    def models_url(self) -> str | None:
        if self._fixed:
            return None
        if self._version == "v1":
            return self.address.url("/openai/v1/models", base=self._endpoint)
        return self.address.url("/openai/models", {"api-version": self._version}, base=self._endpoint)

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        wire = self.wire(body)
        if self._version == "v1" and not self._fixed:
            wire["model"] = self.deployment_for(body)  # the v1 API names the deployment in the body
        return Prepared(self.url_for(body), wire, bool(body.get("stream")))

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key is not None else ""
        return {"api-key": key} if key else {}
