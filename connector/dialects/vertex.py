"""Google Vertex AI: Gemini's generateContent shape at a project's regional endpoint, with OAuth.

URL: ``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:generateContent`` (``global``: no region
prefix). Authentication: a bearer token from service-account credentials
(``vertex.credentials_json``) or Application Default Credentials, through the
``google-auth`` library, an optional extra (``pip install
'airbyte-source-openai-compatible[vertex]'``), imported only when needed. With an
``api_key`` and no project, Vertex express mode (``x-goog-api-key``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from connector.config.parts import RequestPart
from connector.dialects.base import JSON_HEADERS
from connector.dialects.gemini import GeminiDialect
from connector.errors import ConfigError
from connector.secrets import remember

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
EXTRA_HINT = "pip install 'airbyte-source-openai-compatible[vertex]' (google-auth)"


def require_google_auth() -> None:
    """ConfigError when the optional extra is not installed."""
    try:
        import google.auth
        import google.auth.transport.requests  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"vertex: google_vertex with service-account or default credentials needs the optional extra: {EXTRA_HINT}"
        ) from None


class GoogleToken:
    """An OAuth access token, refreshed (in a worker thread: google-auth does blocking I/O) when it expires."""

    def __init__(self, credentials_json: str | None, request: Any = None) -> None:
        self._info = json.loads(credentials_json) if credentials_json else None
        self._request = request
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        import google.auth

        if self._info is None:
            credentials, _project = google.auth.default(scopes=list(SCOPES))
            return credentials
        # Only the two types the config accepts (config/endpoint.py): a loader per type, never a generic one.
        # (Typed Any: google-auth is untyped where installed, absent where not.)
        loader: Any
        if self._info.get("type") == "service_account":
            from google.oauth2 import service_account

            loader = service_account.Credentials.from_service_account_info
        else:
            from google.oauth2 import credentials as user_credentials

            loader = user_credentials.Credentials.from_authorized_user_info
        return loader(self._info, scopes=list(SCOPES))

    def _refresh(self) -> str:
        if self._credentials is None:
            self._credentials = self._load()
        if not self._credentials.valid:
            if self._request is None:
                import google.auth.transport.requests

                self._request = google.auth.transport.requests.Request()
            self._credentials.refresh(self._request)
        token = str(self._credentials.token)
        remember(token)  # a server that echoes request headers must not print it
        return token

    async def token(self) -> str:
        async with self._lock:
            credentials = self._credentials
            if credentials is not None and credentials.valid and credentials.token:
                return str(credentials.token)
            try:
                return await asyncio.to_thread(self._refresh)
            except ImportError:
                raise ConfigError(f"vertex: needs the optional extra: {EXTRA_HINT}") from None
            except Exception as exc:  # google-auth's errors vary by credential type
                # Every row would fail the same way: a config error ends check and read at once.
                raise ConfigError(
                    f"vertex: Google credentials could not give an access token: {type(exc).__name__}: {exc}"
                ) from exc


class VertexDialect(GeminiDialect):
    """generateContent on Vertex AI."""

    name: ClassVar[str] = "google_vertex"

    def __init__(self, config: RequestPart, token_request: Any = None) -> None:
        super().__init__(config)
        vertex = config.vertex
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._express = bool(key) and (vertex is None or vertex.credentials_json is None)
        self._token: GoogleToken | None = None
        if not self._express:
            require_google_auth()
            creds = vertex.credentials_json.get_secret_value() if vertex and vertex.credentials_json else None
            self._token = GoogleToken(creds, token_request)

    def sends_authorization(self) -> bool:
        return self._token is not None or super().sends_authorization()

    @property
    def models_url(self) -> str | None:
        return None  # Vertex lists publisher models elsewhere (v1beta1); the completion check is decisive

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        headers = dict(JSON_HEADERS) if payload is not None else {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {await self._token.token()}"
        else:
            headers.update(self.auth_headers())
        headers.update(self.extra_headers)
        return headers
