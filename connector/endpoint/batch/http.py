"""The HTTP calls of the batch protocols, through the injected :class:`~connector.endpoint.transport.Transport`.

JSON in and out, a multipart file upload and a plain download; the dialect gives the headers
(authentication included) and reads error bodies; a non-2xx answer becomes
:func:`connector.endpoint.retry_policy.http_error`'s :class:`~connector.errors.HTTPStatusError`, a 2xx whose
body is not the JSON object promised a :class:`~connector.errors.BadReply`. No call is retried
here: the run loop decides (a create is never repeated blindly, see ``BatchAPI.find``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from connector import errors
from connector.dialects import Dialect
from connector.dialects.base import load_object
from connector.endpoint.retry_policy import http_error
from connector.endpoint.transport import Transport


def with_query(url: str, params: Mapping[str, str | int]) -> str:
    """``url`` with these query parameters added (after any it has, such as ``api-version``)."""
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(dict(params))}"


def same_origin(url: str, reference: str) -> bool:
    """Both URLs name the same scheme, host and port (so a key sent to one is not sent elsewhere)."""
    a, b = urlsplit(url), urlsplit(reference)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def multipart(fields: Mapping[str, str], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and one file; the body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: application/jsonl\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class BatchHTTP:
    """Sends the batch protocols' requests with the dialect's headers and the configured timeout."""

    def __init__(self, transport: Transport, dialect: Dialect, timeout: float) -> None:
        self._transport = transport
        self._dialect = dialect
        self._timeout = timeout

    async def send(self, method: str, url: str, payload: bytes | None = None,
                   headers: Mapping[str, str] | None = None, resend: bool = True) -> bytes:
        """The body of a 2xx answer; HTTPStatusError otherwise. ``resend=False`` for a create: the transport
        must not send it again on its own when the connection breaks (the first may have made a batch)."""
        sent = await self._dialect.headers(method, url, payload)
        sent.update(headers or {})
        async with self._transport.request(method, url, sent, payload, self._timeout, resend=resend) as resp:
            if resp.status >= 300:
                body = (await resp.read())[:4096]
                raise http_error(url, resp.status, body, resp.headers, self._dialect.error_message)
            return await resp.read()

    async def json(self, method: str, url: str, payload: bytes | None = None, resend: bool = True) -> dict[str, Any]:
        """The JSON object a call answers with."""
        return load_object(await self.send(method, url, payload, resend=resend), f"{method} {url} returned")

    async def upload(self, url: str, fields: Mapping[str, str], filename: str, content: bytes) -> dict[str, Any]:
        """A multipart file upload (``file`` field); the JSON object it answers with."""
        body, content_type = multipart(fields, "file", filename, content)
        raw = await self.send("POST", url, body, {"Content-Type": content_type})
        return load_object(raw, f"POST {url} returned")


def jsonl(raw: bytes, what: str) -> list[dict[str, Any]]:
    """The objects of a JSONL document; BadReply naming the line that is not one."""
    out = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise errors.BadReply(f"{what}: line {number} is not JSON") from None
        if not isinstance(value, dict):
            raise errors.BadReply(f"{what}: line {number} is not a JSON object")
        out.append(value)
    return out
