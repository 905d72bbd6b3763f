"""The database ``input.sql`` runs on: ``input.database`` (a URL, or host/port/database/username), the
password a secret (``airbyte_secret``, masked by :mod:`connector.secrets` like every secret)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator

from connector.config.sections import Strict

_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "sqlite": "sqlite"}


class DatabaseConnection(Strict):
    """PostgreSQL or SQLite, reached through ADBC drivers (Arrow-native: the database's types kept)."""

    url: str | None = Field(
        None,
        description="postgresql://user@host:5432/dbname (a password here is masked too; better in password) or "
        "sqlite:///path/to/file.db. Or give the fields below.",
        json_schema_extra={"examples": ["postgresql://loader@db.internal:5432/shop", "sqlite:///data/shop.db"]},
    )
    host: str | None = Field(None, description="PostgreSQL host (without url).")
    port: int = Field(5432, gt=0, lt=65536, description="PostgreSQL port (without url).")
    database: str | None = Field(None, description="PostgreSQL database name (without url).")
    username: str | None = Field(None, description="PostgreSQL user (without url, or to override its user).")
    password: SecretStr | None = Field(None, json_schema_extra={"airbyte_secret": True})

    @model_validator(mode="after")
    def _one_address(self) -> DatabaseConnection:
        if (self.url is None) == (self.host is None):
            raise ValueError("give input.database.url, or host (with database and username), not both")
        if self.url is not None and urlsplit(self.url).scheme.lower() not in _SCHEMES:
            raise ValueError(f"url: {urlsplit(self.url).scheme or '(none)'}:// is not a database this connector "
                             "reads; use postgresql:// or sqlite:///")
        return self

    @property
    def driver(self) -> Literal["postgresql", "sqlite"]:
        if self.url is None:
            return "postgresql"
        return "sqlite" if _SCHEMES[urlsplit(self.url).scheme.lower()] == "sqlite" else "postgresql"

    def sqlite_path(self) -> str:
        assert self.url is not None
        parts = urlsplit(self.url)
        return unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)

    def postgres_uri(self) -> str:
        """The libpq URI, the password put in from the secret field (never shown: see :meth:`shown`)."""
        if self.url is not None:
            parts = urlsplit(self.url)
            user = self.username or unquote(parts.username or "")
            password = self.password.get_secret_value() if self.password else unquote(parts.password or "")
            host = parts.hostname or ""
            auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
            address = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
            netloc = f"{auth}@{address}" if user else address
            return urlunsplit(("postgresql", netloc, parts.path, parts.query, ""))
        password = self.password.get_secret_value() if self.password else ""
        auth = f"{quote(self.username or '', safe='')}" + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth + '@' if auth else ''}{self.host}:{self.port}/{quote(self.database or '')}"

    def shown(self) -> str:
        """Where the database is, for messages: no password."""
        if self.driver == "sqlite":
            return f"sqlite file '{self.sqlite_path()}'"
        if self.url is not None:
            parts = urlsplit(self.url)
            return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
        return f"postgresql://{self.host}:{self.port}/{self.database or ''}"
