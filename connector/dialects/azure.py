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

from connector.config.model import SourceConfig
from connector.dialects.base import Prepared
from connector.dialects.openai_chat import ChatDialect


class AzureDialect(ChatDialect):
    """Chat completions on Azure OpenAI."""

    name: ClassVar[str] = "azure_openai"

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        azure = config.azure
        self._deployment = azure.deployment if azure else None
        self._version = azure.api_version if azure else "2024-10-21"
        url = config.url.rstrip("/")
        parts = urlsplit(url)
        self._fixed = url if "/openai/deployments/" in parts.path else None
        # The endpoint, a gateway's path prefix kept: https://res.openai.azure.com[/prefix]
        self._endpoint = url.split("/openai", 1)[0] if self._fixed is None else ""

    def _deployment_for(self, body: Mapping[str, Any]) -> str:
        return str(self._deployment or body.get("model") or self.model or "")

    def url_for(self, body: Mapping[str, Any]) -> str:
        if self._fixed is not None:
            return self._fixed if "api-version=" in self._fixed else f"{self._fixed}?api-version={self._version}"
        if self._version == "v1":
            return f"{self._endpoint}/openai/v1/chat/completions"
        deployment = quote(self._deployment_for(body), safe="")
        return f"{self._endpoint}/openai/deployments/{deployment}/chat/completions?api-version={self._version}"

    @property
    def endpoint_url(self) -> str:
        return self.url_for({})

    @property
    def models_url(self) -> str | None:
        if self._fixed is not None:
            return None
        if self._version == "v1":
            return f"{self._endpoint}/openai/v1/models"
        return f"{self._endpoint}/openai/models?api-version={self._version}"

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        wire = dict(body)
        if self._version == "v1" and self._fixed is None:
            wire["model"] = self._deployment_for(body)  # the v1 API names the deployment in the body
        return Prepared(self.url_for(body), wire, bool(body.get("stream")))

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key is not None else ""
        return {"api-key": key} if key else {}
