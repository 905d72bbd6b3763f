"""Where a remote input lives: the settings of ``input.s3``, ``input.https`` and ``input.sftp``.

``input.path`` names the location (``s3://bucket/key``, ``gs://bucket/key``, ``az://container/path``, ``https://host/file.csv``,
``sftp://host/dir/*.parquet``); these sections say how to reach it. Every credential is a
secret (``airbyte_secret`` in the spec, masked by :mod:`connector.secrets` in every output);
without one, the platform's ambient credentials are used where the store has them (S3: the
AWS default chain: environment, profile, instance role, web identity). TLS for ``https://``
follows the top-level ``tls`` section, like the endpoint.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from connector.config.sections import Strict

REMOTE_SCHEMES = ("s3", "gs", "az", "abfs", "abfss", "https", "http", "sftp")


def scheme_of(path: str) -> str | None:
    """The URL scheme of ``input.path`` (``s3``, ``https``, ...); None for a local path."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", path)
    return match.group(1).lower() if match else None


class S3Storage(Strict):
    """Amazon S3 or any S3-compatible store (MinIO, R2, Ceph) through ``endpoint_url``."""

    endpoint_url: str | None = Field(
        None,
        description="An S3-compatible store's URL, e.g. http://127.0.0.1:9000 (MinIO) or "
        "https://<account>.r2.cloudflarestorage.com. Default: AWS.",
    )
    region: str | None = Field(None, description="The bucket's region, e.g. eu-west-1. Default: the AWS default "
                               "chain's (AWS_REGION, profile), else us-east-1.")
    access_key_id: SecretStr | None = Field(
        None, description="Without it, the AWS default credential chain (environment, profile, instance role, "
        "web identity) is used.", json_schema_extra={"airbyte_secret": True})
    secret_access_key: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    session_token: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    anonymous: bool = Field(False, description="Public buckets: send no credentials at all.")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, url: str | None) -> str | None:
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ValueError(f"{url!r} is not an http(s):// URL; give the store's address, e.g. "
                             "http://127.0.0.1:9000")
        return url

    @model_validator(mode="after")
    def _pair(self) -> S3Storage:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together (or neither, for the AWS "
                             "default credential chain)")
        return self


class GcsStorage(Strict):
    """Google Cloud Storage (``gs://``): an OAuth access token, or Application Default Credentials."""

    endpoint_url: str | None = Field(None, description="Another endpoint (an emulator), e.g. http://127.0.0.1:4443.")
    access_token: SecretStr | None = Field(
        None, description="An OAuth 2 access token (valid for an hour). Without it, Application Default Credentials "
        "(GOOGLE_APPLICATION_CREDENTIALS, workload identity, the metadata server) are used.",
        json_schema_extra={"airbyte_secret": True})
    project_id: str | None = Field(None, description="The project, where the credentials do not say it.")
    anonymous: bool = Field(False, description="Public buckets: send no credentials at all.")


class AzureStorage(Strict):
    """Azure Blob Storage / ADLS Gen2 (``az://container/path``, ``abfs://container@account.dfs.core.windows.net/path``):
    an account key, a SAS token, a service principal, or the default credential chain."""

    account_name: str | None = Field(None, description="The storage account. Default: from an abfs:// URL's host.")
    account_key: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    sas_token: SecretStr | None = Field(None, description="A SAS token (the query string, without '?').",
                                        json_schema_extra={"airbyte_secret": True})
    tenant_id: SecretStr | None = Field(None, description="A service principal's tenant (with client_id and "
                                        "client_secret).", json_schema_extra={"airbyte_secret": True})
    client_id: str | None = Field(None)
    client_secret: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    endpoint_url: str | None = Field(
        None, description="Another blob endpoint (Azurite: http://127.0.0.1:10000). Without credentials here, the "
        "default chain (environment, managed identity, workload identity) is used.")


class HttpsStorage(Strict):
    """A file over HTTP(S): a header, Basic auth, or a signed URL (its query is kept and masked)."""

    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent with every request, e.g. {\"Authorization\": \"Bearer ...\"}; values are secret.",
        json_schema_extra={"additionalProperties": {"type": "string", "airbyte_secret": True}},
    )
    username: str | None = Field(None, description="Basic auth user.")
    password: SecretStr | None = Field(None, description="Basic auth password.",
                                       json_schema_extra={"airbyte_secret": True})


class SftpStorage(Strict):
    """An SFTP server: password or private key, and the server's host key checked, never trusted blindly."""

    username: str | None = Field(None, description="Default: the user of the URL (sftp://user@host/...).")
    password: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    private_key: SecretStr | None = Field(
        None, description="A private key (OpenSSH or PEM text).", json_schema_extra={"airbyte_secret": True})
    private_key_passphrase: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})
    host_key_fingerprint: str | None = Field(
        None,
        pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$",
        description="The server's host key as `ssh-keygen -lf` prints it (SHA256:...). Without it, the host "
        "must be in known_hosts.",
    )
    known_hosts: str | None = Field(
        None, description="A known_hosts file holding the server's key. Default: ~/.ssh/known_hosts.")
    timeout_seconds: float = Field(30, gt=0, le=600, description="Connecting and each request.")
