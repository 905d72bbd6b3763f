"""``https://`` inputs: one file per URL, streamed with httpx, Parquet read by Range requests.

A URL names one file (HTTP has no listing: a glob or folder is refused). Authentication is a
header (``input.https.headers``), Basic auth (``username``/``password``) or a signed URL whose
query is kept on every request and masked in every output (:mod:`connector.secrets`); TLS
follows the top-level ``tls`` section. A ``HEAD`` learns the size and the ETag (or
Last-Modified); a sequential read is one streamed ``GET``; a Parquet file is read by ``Range``
requests, which the server must honour (a 200 to a ranged GET is refused rather than read whole).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pyarrow as pa

from connector.config.sections import TLSConfig
from connector.config.storage import HttpsStorage
from connector.errors import InputError
from connector.rows.source_file import STREAM_BUFFER, SourceFile, has_pattern

_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _shown(url: str) -> str:
    """The URL without its query (a signed URL's token) and userinfo, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _client(settings: HttpsStorage, tls: TLSConfig) -> httpx.Client:
    auth = None
    if settings.username is not None or settings.password is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = httpx.BasicAuth(settings.username or "", password)
    return httpx.Client(headers=settings.headers, auth=auth, verify=tls.verification(), timeout=_TIMEOUT,
                        follow_redirects=True)


def _failure(url: str, exc: Exception) -> InputError:
    shown = _shown(url)
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection refused"
        if "CERTIFICATE" in reason.upper():
            return InputError(f"input.path: the certificate of {shown} is not trusted ({reason}); set tls.ca_bundle "
                              "to the CA that signed it")
        return InputError(f"input.path: cannot connect to {shown} ({reason}); check the host and port")
    if isinstance(exc, httpx.TimeoutException):
        return InputError(f"input.path: {shown} did not answer in time ({type(exc).__name__}); check the host")
    return InputError(f"input.path: cannot read {shown}: {exc}")


def _status_error(url: str, status: int) -> InputError:
    shown = _shown(url)
    if status in (401, 403):
        return InputError(f"input.path: {shown} refused the credentials ({status}); check input.https (headers, "
                          "username/password) or the signed URL's expiry")
    if status == 404:
        return InputError(f"input.path: {shown} does not exist (404); check the URL")
    return InputError(f"input.path: {shown} answered {status}; check the URL and the server")


class _Remote:
    """One URL: its facts from a HEAD, a streamed GET, ranged GETs."""

    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url, self.client = url, client

    def head(self) -> httpx.Response:
        try:
            response = self.client.head(self.url)
        except httpx.HTTPError as exc:
            raise _failure(self.url, exc) from None
        if response.status_code >= 400:
            raise _status_error(self.url, response.status_code)
        return response

    def stream(self) -> Any:
        return pa.PythonFile(io.BufferedReader(_Stream(self), STREAM_BUFFER), mode="r")

    def ranged(self, size: int) -> Any:
        return pa.PythonFile(io.BufferedReader(_Ranged(self, size), STREAM_BUFFER), mode="r")

    def chunks(self) -> Iterator[bytes]:
        try:
            with self.client.stream("GET", self.url) as response:
                if response.status_code >= 400:
                    raise OSError(_status_error(self.url, response.status_code).message)
                yield from response.iter_raw(STREAM_BUFFER)
        except httpx.HTTPError as exc:
            raise OSError(_failure(self.url, exc).message) from None

    def range(self, start: int, end: int) -> bytes:
        try:
            response = self.client.get(self.url, headers={"Range": f"bytes={start}-{end - 1}"})
        except httpx.HTTPError as exc:
            raise OSError(_failure(self.url, exc).message) from None
        if response.status_code != 206:
            raise OSError(f"{_shown(self.url)} answered {response.status_code} to a Range request; a Parquet "
                          "file over HTTP needs a server that honours Range")
        return response.content


class _Stream(io.RawIOBase):
    """The body of one GET, read in order."""

    def __init__(self, remote: _Remote) -> None:
        self._chunks = remote.chunks()
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        n = min(len(buffer), len(self._left))
        buffer[:n], self._left = self._left[:n], self._left[n:]
        return n


class _Ranged(io.RawIOBase):
    """A file of known size read by Range requests (a seek costs nothing; each read is one request)."""

    def __init__(self, remote: _Remote, size: int) -> None:
        self._remote, self._size, self._at = remote, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: Any) -> int:
        end = min(self._size, self._at + len(buffer))
        if end <= self._at:
            return 0
        data = self._remote.range(self._at, end)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def https_files(url: str, settings: HttpsStorage | None, tls: TLSConfig) -> list[SourceFile]:
    """The one file an ``https://`` URL names, after a HEAD proves it is there and readable."""
    if has_pattern(urlsplit(url).path) or urlsplit(url).path.endswith("/"):
        raise InputError(f"input.path: {_shown(url)}: a URL names one file (HTTP has no listing); give the "
                         "file's URL, or put the files in a bucket (s3://)")
    remote = _Remote(url, _client(settings or HttpsStorage(), tls))
    head = remote.head()
    length = head.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    etag = head.headers.get("etag")
    modified = head.headers.get("last-modified")
    mtime_ns = int(parsedate_to_datetime(modified).timestamp() * 1e9) if modified else None

    def seekable() -> Any:
        if size is None:
            raise OSError(f"{_shown(url)} did not say its size (no Content-Length); Parquet needs it")
        return remote.ranged(size)

    return [SourceFile(name=_shown(url), size=size, mtime_ns=mtime_ns, etag=etag, stream=remote.stream,
                       seekable=seekable)]
