"""The endpoint address a config's ``url`` names, with what rides along kept apart.

Besides scheme, host and path, a ``url`` may carry:

- ``user:password@``: credentials. They become an ``Authorization: Basic`` header (see
  :meth:`Address.basic_auth`) and are never part of a URL the connector sends or prints.
- a query string (``?api-version=2024-10-21``, ``?key=...``; gateways such as Azure API
  Management need them): kept on every request the connector makes (completions, the model
  list, ``check``'s probes), ahead of the parameters an API shape adds itself (``alt=sse``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from connector.secrets import basic_credentials, url_userinfo


@dataclass(frozen=True, slots=True)
class Address:
    """``base``: scheme://host[:port]/path (no userinfo, query, fragment or trailing slash);
    ``query``: as written, without ``?``; ``userinfo``: (user, password), percent-decoded."""

    base: str
    query: str = ""
    userinfo: tuple[str, str] | None = None

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url.strip())
        netloc = parts.netloc.rpartition("@")[2]  # as written otherwise: the same URL, the same cache keys
        base = f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
        return cls(base, parts.query, url_userinfo(url))

    def url(self, path: str = "", params: Mapping[str, str] | None = None, *, base: str | None = None) -> str:
        """``base`` (default: the address's) + ``path``, with the address's query and then those of
        ``params`` the query does not set already."""
        query = self.query
        if params:
            given = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
            extra = urlencode({k: v for k, v in params.items() if k not in given})
            query = "&".join(q for q in (query, extra) if q)
        target = (self.base if base is None else base) + path
        return f"{target}?{query}" if query else target

    def without_suffix(self, *suffixes: str) -> str:
        """The base with the first of ``suffixes`` it ends with removed (``/chat/completions``)."""
        for suffix in suffixes:
            if self.base.endswith(suffix):
                return self.base[: -len(suffix)]
        return self.base

    def basic_auth(self) -> dict[str, str]:
        """``Authorization: Basic`` from the userinfo; empty without userinfo."""
        if self.userinfo is None:
            return {}
        return {"Authorization": "Basic " + basic_credentials(*self.userinfo)}


_PRIVATE_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa", ".svc", ".cluster.local", ".corp")


def is_private_host(host: str) -> bool:
    """Loopback, private or link-local addresses, single-label names (docker, k8s) and private suffixes."""
    import ipaddress

    host = host.strip("[]").lower()
    if host == "localhost" or ("." not in host and ":" not in host) or host.endswith(_PRIVATE_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local
