"""Amazon Bedrock's OpenAI-compatible chat completions.

URL: ``https://bedrock-runtime.{region}.amazonaws.com/openai/v1/chat/completions``
(or ``url``, e.g. the ``bedrock-mantle`` endpoint). Authentication, first that
applies: a Bedrock API key (``api_key``) as a bearer token; else AWS SigV4
signing (service ``bedrock``) with ``bedrock.access_key_id`` /
``secret_access_key`` / ``session_token``, or the AWS default credential chain,
through ``botocore``, an optional extra (``pip install
'airbyte-source-openai-compatible[bedrock]'``), imported only when needed. The signature
covers the body, so it is computed per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from connector.config.parts import RequestPart
from connector.dialects.base import JSON_HEADERS
from connector.dialects.openai_chat import ChatDialect
from connector.errors import ConfigError
from connector.secrets import remember

SERVICE = "bedrock"
EXTRA_HINT = "pip install 'airbyte-source-openai-compatible[bedrock]' (botocore)"


def require_botocore() -> None:
    """ConfigError when the optional extra is not installed."""
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"bedrock: SigV4 signing (no api_key given) needs the optional extra: {EXTRA_HINT}; "
            "or set api_key to an Amazon Bedrock API key"
        ) from None


class SigV4Signer:
    """Signs requests with AWS Signature Version 4."""

    def __init__(self, region: str, access_key: str | None, secret_key: str | None, token: str | None,
                 service: str = SERVICE) -> None:
        self._region, self._service = region, service
        self._static = (access_key, secret_key, token) if access_key and secret_key else None
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    def _resolve(self) -> Any:
        from botocore.credentials import Credentials

        if self._static is not None:
            return Credentials(*self._static)
        import botocore.session

        found = botocore.session.get_session().get_credentials()
        if found is None:
            raise ConfigError("bedrock: no AWS credentials found (environment, profile or instance role); "
                              "set bedrock.access_key_id and bedrock.secret_access_key, or api_key")
        return found

    async def sign(self, method: str, url: str, headers: dict[str, str], payload: bytes | None) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:
            async with self._lock:
                if self._credentials is None:
                    # The default chain may call the instance-metadata service: not on the event loop.
                    self._credentials = await asyncio.to_thread(self._resolve)
        frozen = self._credentials.get_frozen_credentials()
        # Found by the default chain (and refreshed there): secrets the config never named.
        remember(frozen.access_key, frozen.secret_key, frozen.token)
        request = AWSRequest(method=method, url=url, data=payload or b"", headers=dict(headers))
        request.headers["Host"] = urlsplit(url).netloc
        SigV4Auth(frozen, self._service, self._region).add_auth(request)
        return dict(request.headers.items())


class BedrockDialect(ChatDialect):
    """Chat completions on Amazon Bedrock."""

    name: ClassVar[str] = "amazon_bedrock"
    REQUEST_ID_HEADERS: ClassVar[tuple[str, ...]] = ("x-amzn-requestid", "x-request-id")
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {"service_tier": "not in Bedrock's OpenAI-compatible API"}

    def __init__(self, config: RequestPart) -> None:
        super().__init__(config)
        bedrock = config.bedrock
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._signer: SigV4Signer | None = None
        if not key and bedrock is not None:
            require_botocore()
            def value(secret: Any) -> str | None:
                return secret.get_secret_value() if secret is not None else None

            self._signer = SigV4Signer(bedrock.region, value(bedrock.access_key_id),
                                       value(bedrock.secret_access_key), value(bedrock.session_token))

    @property
    def models_url(self) -> str | None:
        # bedrock-runtime serves only chat completions; other hosts (bedrock-mantle) list models.
        host = urlsplit(self.base_url).hostname or ""
        return None if host.startswith("bedrock-runtime.") else self.url("/models")

    def sends_authorization(self) -> bool:
        return self._signer is not None or super().sends_authorization()

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        headers = dict(JSON_HEADERS) if payload is not None else {"Accept": "application/json"}
        headers.update(self.extra_headers)
        if self._signer is None:
            headers.update(self.auth_headers())
            return headers
        return await self._signer.sign(method, url, headers, payload)
