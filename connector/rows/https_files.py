"""``https://`` inputs: one file per URL, streamed, Parquet read by Range requests.

A URL names one file (HTTP has no listing: a glob or folder is refused). Authentication is a
header (``input.https.headers``), Basic auth (``username``/``password``) or a signed URL whose
query is kept on every request and masked in every output (:mod:`connector.secrets`); TLS
follows the top-level ``tls`` section. Python's own ``urllib`` speaks HTTP (no dependency). A
``HEAD`` learns the size, ETag and Last-Modified; a sequential read is one streamed ``GET``; a
Parquet file is read by ``Range`` requests, which the server must honour (a 200 to a ranged GET
is refused rather than read whole).
"""

from __future__ import annotations

import io
import socket
import ssl
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from http.client import HTTPResponse
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from connector.config.sections import TLSConfig
from connector.config.storage import HttpsStorage
from connector.digits import ascii_int
from connector.errors import InputError
from connector.rows.source_file import STREAM_BUFFER, SourceFile, has_pattern
from connector.secrets import basic_credentials

_TIMEOUT = 60.0


def _shown(url: str) -> str:
    """The URL without its query (a signed URL's token) and userinfo, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _headers(settings: HttpsStorage) -> dict[str, str]:
    headers = dict(settings.headers)
    if settings.username is not None or settings.password is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        headers["Authorization"] = "Basic " + basic_credentials(settings.username or "", password)
    return headers


def _context(tls: TLSConfig) -> ssl.SSLContext:
    verify = tls.verification()
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _failure(url: str, exc: BaseException) -> InputError:
    shown = _shown(url)
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return InputError(f"input.path: the certificate of {shown} is not trusted ({reason}); set tls.ca_bundle to "
                          "the CA that signed it")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return InputError(f"input.path: {shown} did not answer in time; check the host")
    text = getattr(reason, "strerror", None) or str(reason)
    return InputError(f"input.path: cannot connect to {shown} ({text}); check the host and port")


def _status_error(url: str, status: int) -> InputError:
    shown = _shown(url)
    if status in (401, 403):
        return InputError(f"input.path: {shown} refused the credentials ({status}); check input.https (headers, "
                          "username/password) or the signed URL's expiry")
    if status == 404:
        return InputError(f"input.path: {shown} does not exist (404); check the URL")
    return InputError(f"input.path: {shown} answered {status}; check the URL and the server")


class _Remote:
    """One URL: its facts from a HEAD, a streamed GET, ranged GETs (urllib: no dependency)."""

    def __init__(self, url: str, headers: dict[str, str], context: ssl.SSLContext) -> None:
        self.url, self._headers, self._context = url, headers, context

    def open(self, method: str = "GET", headers: dict[str, str] | None = None) -> HTTPResponse:
        """The response; InputError for a refusal or no answer."""
        request = urllib.request.Request(self.url, method=method, headers={**self._headers, **(headers or {})})
        try:
            response: HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT, context=self._context)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _status_error(self.url, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _failure(self.url, exc) from None
        return response

    def stream(self) -> Any:
        try:
            return pa.PythonFile(io.BufferedReader(self.open(), STREAM_BUFFER), mode="r")
        except InputError as exc:
            raise OSError(exc.message) from None

    def ranged(self, size: int) -> Any:
        return pa.PythonFile(io.BufferedReader(_Ranged(self, size), STREAM_BUFFER), mode="r")

    def range(self, start: int, end: int) -> bytes:
        try:
            with self.open(headers={"Range": f"bytes={start}-{end - 1}"}) as response:
                if response.status != 206:
                    raise OSError(f"{_shown(self.url)} answered {response.status} to a Range request; a Parquet "
                                  "file over HTTP needs a server that honours Range")
                return response.read()
        except InputError as exc:
            raise OSError(exc.message) from None


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
    settings = settings or HttpsStorage()
    remote = _Remote(url, _headers(settings), _context(tls))
    with remote.open("HEAD") as head:
        pass
    length = head.headers.get("content-length")
    size = ascii_int(length) if length else None
    etag = head.headers.get("etag")
    modified = head.headers.get("last-modified")
    mtime_ns = int(parsedate_to_datetime(modified).timestamp() * 1e9) if modified else None

    def seekable() -> Any:
        if size is None:
            raise OSError(f"{_shown(url)} did not say its size (no Content-Length); Parquet needs it")
        return remote.ranged(size)

    return [SourceFile(name=_shown(url), size=size, mtime_ns=mtime_ns, etag=etag, stream=remote.stream,
                       seekable=seekable)]
