"""Object stores through Arrow's own clients: ``s3://`` (``pyarrow.fs.S3FileSystem``), ``gs://``
(``GcsFileSystem``), ``az://`` and ``abfs://`` (``AzureFileSystem``).

Why Arrow's client and not the fsspec family (s3fs): it ships inside pyarrow, which the
connector already needs, so the image gains nothing; it is C++ with its own threads, reads a
Parquet file by ranged GETs (footer first, then column chunks) and streams a CSV in blocks;
measured against moto's server here it read a 200 MB Parquet and CSV as fast as or faster than
s3fs (numbers in the commit that added this module and in docs/INPUT.md).

A path is a file (``s3://b/t.parquet``), a glob (``s3://b/t/*.parquet``, matched against the
keys listed under the part before the first wildcard) or a prefix (``s3://b/t/``: every
.csv/.jsonl/.parquet key under it). Errors name the bucket and key and what the store said.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from connector.config.input import InputConfig
from connector.config.storage import AzureStorage, GcsStorage, S3Storage
from connector.errors import InputError
from connector.rows.source_file import SourceFile, has_pattern, matching, readable_kind

STREAM_READ = 8 << 20
_AWS_ERROR = re.compile(r"AWS Error (\w+)")
_GOOGLE_ERROR = re.compile(r"Status\((\w+)")
_AZURE_ERROR = re.compile(r"Azure Error: \[(\w+)\]")
_AZURE_CODES = {"AuthorizationFailure": "UNAUTHENTICATED", "AuthenticationFailed": "UNAUTHENTICATED",
                "AuthorizationPermissionMismatch": "ACCESS_DENIED", "ContainerNotFound": "NO_SUCH_BUCKET"}
# Google's status codes in the words of S3's (the causes below).
_GOOGLE_CODES = {"NOT_FOUND": "NO_SUCH_BUCKET", "PERMISSION_DENIED": "ACCESS_DENIED",
                 "UNAUTHENTICATED": "UNAUTHENTICATED", "UNAVAILABLE": "NETWORK_CONNECTION"}

# What each error code means for the person who set the config ({section}: input.s3 or input.gcs).
_CAUSES = {
    "NO_SUCH_BUCKET": "bucket '{bucket}' does not exist (at {where}); check the bucket name{region}",
    "NO_SUCH_KEY": "object '{key}' does not exist in bucket '{bucket}'",
    "ACCESS_DENIED": "access denied to '{url}' by {where}: the credentials may not read it; check the bucket "
                     "policy and {section}'s credentials",
    "UNAUTHENTICATED": "authentication failed at {where}: the credentials were refused; check {section}",
    "SIGNATURE_DOES_NOT_MATCH": "authentication failed at {where}: the secret access key does not match the "
                                "access key id; check input.s3.secret_access_key",
    "INVALID_ACCESS_KEY_ID": "authentication failed at {where}: the access key id is unknown there; check "
                             "input.s3.access_key_id (and input.s3.endpoint_url)",
    "NETWORK_CONNECTION": "cannot connect to {where}; check {section}.endpoint_url (or the network)",
    "INVALID_ACCESS_KEY": "authentication failed at {where}: the access key id is unknown there; check "
                          "input.s3.access_key_id",
}


def _code(text: str) -> str:
    aws = _AWS_ERROR.search(text)
    if aws:
        return aws.group(1)
    google = _GOOGLE_ERROR.search(text)
    if google:
        return _GOOGLE_CODES.get(google.group(1), "")
    azure = _AZURE_ERROR.search(text)
    if azure:
        return _AZURE_CODES.get(azure.group(1), "")
    return "NETWORK_CONNECTION" if "Connection refused" in text or "Couldn't connect" in text else ""


def _endpoint(url: str | None) -> dict[str, object]:
    """Arrow's endpoint_override and scheme for another endpoint (an emulator, an S3-compatible store)."""
    if not url:
        return {}
    parts = urlsplit(url)
    return {"endpoint_override": parts.netloc + parts.path.rstrip("/"), "scheme": parts.scheme}


def _gcs_filesystem(settings: GcsStorage) -> pafs.GcsFileSystem:
    kwargs: dict[str, object] = {"retry_time_limit": timedelta(seconds=30)}
    if settings.anonymous:
        kwargs["anonymous"] = True
    elif settings.access_token is not None:
        kwargs["access_token"] = settings.access_token.get_secret_value()
        # Google's access tokens live an hour; Arrow wants to know when this one ends.
        kwargs["credential_token_expiration"] = datetime.now(timezone.utc) + timedelta(hours=1)
    if settings.project_id:
        kwargs["project_id"] = settings.project_id
    kwargs.update(_endpoint(settings.endpoint_url))
    return pafs.GcsFileSystem(**kwargs)


def _azure_filesystem(settings: AzureStorage, account: str) -> pafs.AzureFileSystem:
    kwargs: dict[str, object] = {"account_name": account}
    for name in ("account_key", "sas_token", "client_secret", "tenant_id"):
        secret = getattr(settings, name)
        if secret is not None:
            kwargs[name] = secret.get_secret_value()
    if settings.client_id:
        kwargs["client_id"] = settings.client_id
    if settings.endpoint_url:
        parts = urlsplit(settings.endpoint_url)
        kwargs["blob_storage_authority"] = kwargs["dfs_storage_authority"] = parts.netloc
        kwargs["blob_storage_scheme"] = kwargs["dfs_storage_scheme"] = parts.scheme
    return pafs.AzureFileSystem(**kwargs)


def _filesystem(settings: S3Storage) -> pafs.S3FileSystem:
    kwargs: dict[str, object] = {"connect_timeout": 10, "request_timeout": 60}
    if settings.anonymous:
        kwargs["anonymous"] = True
    elif settings.access_key_id is not None and settings.secret_access_key is not None:
        kwargs["access_key"] = settings.access_key_id.get_secret_value()
        kwargs["secret_key"] = settings.secret_access_key.get_secret_value()
        if settings.session_token is not None:
            kwargs["session_token"] = settings.session_token.get_secret_value()
    if settings.region:
        kwargs["region"] = settings.region
    kwargs.update(_endpoint(settings.endpoint_url))
    return pafs.S3FileSystem(**kwargs)


class _Bucket:
    """One bucket of one store: listing, facts about a key, errors worded for the config."""

    def __init__(self, url: str, fs: pafs.FileSystem, where: str, section: str, field: str = "input.path") -> None:
        parts = urlsplit(url)
        self.url, self.scheme = url, parts.scheme
        self.bucket = parts.netloc
        self.key = parts.path.lstrip("/")
        self.field = field  # what the messages name: input.path, or the media column that holds the URL
        if not self.bucket:
            raise InputError(f"{field}: '{url}' names no bucket; write {self.scheme}://bucket/key")
        self.where, self.section, self.fs = where, section, fs
        self.region = " and input.s3.region" if section == "input.s3" else ""

    def error(self, exc: OSError, key: str | None = None) -> InputError:
        text = str(exc)
        cause = _CAUSES.get(_code(text))
        if cause is None:
            detail = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            cause = f"cannot read '{{url}}' at {{where}}: {detail}"
        return InputError(f"{self.field}: " + cause.format(bucket=self.bucket, key=key or self.key, url=self.url,
                                                        where=self.where, section=self.section, region=self.region))

    def listing(self, prefix: str, recursive: bool = True) -> list[pafs.FileInfo]:
        """Every object under ``prefix``; a missing bucket or refused listing is an InputError."""
        base = f"{self.bucket}/{prefix}".rstrip("/")
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
        except OSError as exc:
            raise self.error(exc, prefix) from None
        return [info for info in infos if info.type == pafs.FileType.File]

    def probe_parent(self) -> None:
        """List the key's folder (one level): raises the store's precise reason when the bucket is missing
        or the credentials are refused, which a HEAD's bodiless 403 or 404 cannot say."""
        if self.listing(self.key.rsplit("/", 1)[0] if "/" in self.key else "", recursive=False):
            return
        self.check_bucket()

    def check_bucket(self) -> None:
        """InputError when the bucket is missing (an empty listing does not say so on every store)."""
        try:
            bucket = self.fs.get_file_info(self.bucket)
        except OSError as exc:
            raise self.error(exc) from None
        if bucket.type == pafs.FileType.NotFound:
            raise InputError(f"{self.field}: " + _CAUSES["NO_SUCH_BUCKET"].format(bucket=self.bucket, where=self.where,
                                                                               region=self.region))

    def explain_missing(self) -> InputError:
        """Why ``key`` was not found: the bucket is missing, or the credentials are refused, or only the key."""
        self.probe_parent()
        return InputError(f"{self.field}: object '{self.key}' does not exist in bucket '{self.bucket}' (at "
                          f"{self.where}); check the key" + (", or end a folder with '/'" if self.field == "input.path"
                                                             else ""))

    def source(self, info: pafs.FileInfo) -> SourceFile:
        path = info.path
        return SourceFile(
            name=f"{self.scheme}://{path}",
            size=info.size,
            mtime_ns=info.mtime_ns,
            # Each read of an S3 stream is one GET: 8 MB reads keep a CSV's requests few.
            stream=lambda: self.fs.open_input_stream(path, buffer_size=STREAM_READ),
            seekable=lambda: self.fs.open_input_file(path),
        )


def bucket_of(url: str, input_: InputConfig, field: str = "input.path", fs: pafs.FileSystem | None = None) -> _Bucket:
    """The store ``url`` (s3://, gs://, az://, abfs://) lives in, reached with the input's settings for that
    scheme (``input.s3``, ``input.gcs``, ``input.azure``; the ambient credentials without them), or through
    ``fs``, a client made for it before."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        s3 = input_.s3 or S3Storage()
        return _Bucket(url, fs or _filesystem(s3), s3.endpoint_url or "AWS S3", "input.s3", field)
    if scheme == "gs":
        gcs = input_.gcs or GcsStorage()
        return _Bucket(url, fs or _gcs_filesystem(gcs), gcs.endpoint_url or "Google Cloud Storage", "input.gcs",
                       field)
    azure = input_.azure or AzureStorage()
    parts = urlsplit(url)
    container, _, host = parts.netloc.partition("@")
    account = azure.account_name or host.split(".", 1)[0]
    if not account:
        raise InputError("input.azure.account_name: give the storage account (or write abfs://container@account"
                         ".dfs.core.windows.net/path)")
    where = azure.endpoint_url or f"Azure account '{account}'"
    return _Bucket(f"az://{container}{parts.path}", fs or _azure_filesystem(azure, account), where, "input.azure",
                   field)


def object_files(config: InputConfig) -> list[SourceFile]:
    """The objects ``input.path`` (s3://, gs://, az://, abfs://) names, in key order."""
    assert config.path is not None
    return _objects(bucket_of(config.path, config))


def _objects(store: _Bucket) -> list[SourceFile]:
    url = store.url
    if has_pattern(store.key):
        static = re.split(r"[*?\[]", store.key, maxsplit=1)[0]
        prefix = static.rsplit("/", 1)[0] if "/" in static else ""
        infos = {i.path: i for i in store.listing(prefix)}
        names = matching(list(infos), f"{store.bucket}/{store.key}")
        if not names:
            store.check_bucket()
            raise InputError(f"input.path: no object matches '{url}' (at {store.where}); check the pattern")
        return [store.source(infos[n]) for n in names]
    if store.key and not store.key.endswith("/"):
        try:
            info = store.fs.get_file_info(f"{store.bucket}/{store.key}")
        except OSError as exc:
            if "ACCESS_DENIED" in str(exc):
                store.probe_parent()  # a HEAD's 403 has no body: a listing says whether the keys are wrong
            raise store.error(exc) from None
        if info.type == pafs.FileType.File:
            return [store.source(info)]
        if info.type == pafs.FileType.NotFound:
            raise store.explain_missing()
    found = sorted((i for i in store.listing(store.key) if readable_kind(i.path)), key=lambda i: i.path)
    if not found:
        raise InputError(f"input.path: '{url}' (at {store.where}) holds no .csv, .jsonl or .parquet object")
    return [store.source(i) for i in found]
