"""The one home of secrets: which config values are secret, which values learned at run time join
them, and the masking every output path goes through.

What is secret in a config (:data:`SECRET_FIELDS` and the ``url``):

- ``api_key``; every value of ``headers``; ``bedrock.access_key_id`` / ``secret_access_key`` /
  ``session_token``; ``vertex.credentials_json`` and its private parts (``private_key``,
  ``private_key_id``, ``client_secret``, ``refresh_token``);
- ``input.s3`` keys, ``input.https`` header values and password, ``input.sftp`` password, key and
  passphrase; ``input.database.password``;
- in ``url``, ``input.path`` and ``input.database.url``: the password of ``user:password@`` (the
  user name too when it stands alone, as tokens do: ``https://TOKEN@host``), the Basic credentials
  made of them, and the values of query parameters that carry keys (``?key=``, ``?api-key=``, ``?sig=``, ...).

:func:`config_secrets` reads them from a validated config and from a raw config dict alike, so
a config that failed validation is masked too. Values derived while running (the Vertex OAuth
access token, AWS credentials found by the default chain) are added with :func:`remember`;
every :class:`Redactor` masks them from then on, whichever thread or command made it.

A :class:`Redactor` masks each secret in every form it may be echoed in: as is, JSON-escaped
(once or more), percent-encoded (either case of hex, ``+`` for a space, encoded twice),
``\\uXXXX``-escaped and HTML-escaped, and any mix of these, so ``Bearer%20sk-a%2Fb`` is caught.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

MASK = "****"
T = TypeVar("T")

# Secrets shorter than this are not masked: "abc" would blank out ordinary words.
MIN_LENGTH = 4

# Config fields whose whole value is secret (dotted paths; ``headers``: each value).
SECRET_FIELDS = ("api_key", "headers", "bedrock.access_key_id", "bedrock.secret_access_key",
                 "bedrock.session_token", "vertex.credentials_json",
                 "input.s3.access_key_id", "input.s3.secret_access_key", "input.s3.session_token",
                 "input.https.headers", "input.https.password",
                 "input.sftp.password", "input.sftp.private_key", "input.sftp.private_key_passphrase",
                 "input.database.password", "input.gcs.access_token",
                 "input.azure.account_key", "input.azure.sas_token", "input.azure.client_secret",
                 "input.azure.tenant_id")

# Config fields holding URLs whose credentials (userinfo, key-carrying query values) are secret.
URL_FIELDS = ("url", "input.path", "input.database.url")

# The headers that carry credentials, whichever API shape sends them: shown as ``<scheme> ****``.
AUTH_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key",
                          "x-amz-security-token"})

# Query parameters that carry credentials (Gemini's ?key=, Azure SAS tokens, ...).
# Signed URLs: S3's X-Amz-Signature (and the temporary token and key id beside it), GCS's X-Goog-*.
_URL_SECRET_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "token", "access_token", "sig", "code",
                                "signature", "x-amz-signature", "x-amz-security-token", "x-amz-credential",
                                "x-goog-signature", "x-goog-credential", "awsaccesskeyid"})

# The parts of Google credentials that are secret (the rest names the account).
_CREDENTIAL_PARTS = ("private_key", "private_key_id", "client_secret", "refresh_token")


def is_secret_field(path: str) -> bool:
    """True for a dotted config path inside a secret field (``headers.X-Tenant``, ``api_key``)."""
    return any(path == field or path.startswith(field + ".") for field in SECRET_FIELDS)


def is_auth_header(name: str) -> bool:
    """True for a header that carries credentials (``Authorization``, ``x-api-key``, ...)."""
    return name.lower() in AUTH_HEADERS


def url_userinfo(url: str) -> tuple[str, str] | None:
    """``(user, password)`` of ``scheme://user:password@host``, percent-decoded; None without userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.username is None and parts.password is None:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


def basic_credentials(user: str, password: str) -> str:
    """The token of ``Authorization: Basic <token>`` for a user and password."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: userinfo (and its Basic form) and key-carrying query values.

    A lone user name is a credential in an HTTP URL (``https://TOKEN@host``); elsewhere
    (``sftp://user@host``, ``postgresql://user@host``) it names the account to log in as."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    found = [v for k, v in parse_qsl(query) if k.lower() in _URL_SECRET_PARAMS and v]
    userinfo = url_userinfo(url)
    if userinfo is not None:
        user, password = userinfo
        # A lone user name is the credential (https://TOKEN@host); beside a password it names an account.
        if password:
            found += [password, f"{user}:{password}", basic_credentials(user, password)]
        elif url.lower().startswith(("http://", "https://")):
            found.append(user)
    return [v for v in found if v]


def url_has_credentials(url: str) -> bool:
    """The URL authenticates by itself (a key in the query, or userinfo)."""
    return bool(url_secrets(url))


def _field(config: object, path: str) -> object:
    node = config
    for step in path.split("."):
        node = node.get(step) if isinstance(node, Mapping) else getattr(node, step, None)
        if node is None:
            return None
    return node


def _revealed(value: object) -> object:
    """A pydantic ``SecretStr``'s value, found by its method: importing pydantic here would put it on
    every command's path, ``spec``'s too (docs/BENCHMARKS.md, cold start)."""
    reveal = getattr(value, "get_secret_value", None)
    return reveal() if callable(reveal) else value


def _leaves(value: object) -> list[str]:
    value = _revealed(value)
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


def _credential_parts(value: object) -> list[str]:
    """The secret parts of Google credentials given as JSON text (or, in a raw config, as an object)."""
    value = _revealed(value)
    info = value
    if isinstance(value, str):
        try:
            info = json.loads(value)
        except ValueError:
            return [value]  # not JSON: the text is all there is to mask
    if not isinstance(info, Mapping):
        return _leaves(value)
    return [str(info[k]) for k in _CREDENTIAL_PARTS if info.get(k)]


def config_secrets(config: object) -> list[str]:
    """Every secret of a config: the validated model or the raw dict (even one that failed validation)."""
    found: list[str] = []
    for path in SECRET_FIELDS:
        value = _field(config, path)
        if path == "headers" and isinstance(value, list):  # the [{"name", "value"}] form
            value = [item.get("value") if isinstance(item, Mapping) else item for item in value]
        found += _credential_parts(value) if path == "vertex.credentials_json" and value else _leaves(value)
    for name in URL_FIELDS:
        url = _field(config, name)
        if isinstance(url, str):
            found += url_secrets(url)
    # A key read with `cat` carries a trailing newline that validation strips: mask both forms,
    # so a message written before or after validation never shows it.
    found += [value.strip() for value in found if value != value.strip()]
    return found


# The key of the requester hash: it makes the hash of a credential useless outside this
# connector's cache keys (no table of precomputed hashes matches it).
_REQUESTER_KEY = b"source-openai-compatible/answer-cache/requester/v1"


def requester_identity(config: object) -> str:
    """Who asks, as the answer cache keys it: a keyed hash (HMAC-SHA256) of every credential of
    the config (:func:`config_secrets`) and every configured header, name and value.

    Another key, another account's credentials or another routing header (``X-Route: model-b``)
    give another identity, so two jobs that differ only there never share answers; the hash,
    never the secret, is what goes into a cache key.
    """
    headers = _field(config, "headers")
    named = sorted((str(k).lower(), str(v)) for k, v in dict(headers).items()) if isinstance(headers, Mapping) else []
    secrets = sorted(set(config_secrets(config)))
    message = json.dumps([named, secrets], ensure_ascii=False).encode()
    return hmac.new(_REQUESTER_KEY, message, hashlib.sha256).hexdigest()


class SecretRegistry:
    """Secrets learned while running, shared by every :class:`Redactor` of the process (thread-safe)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self.version = 0

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            self.version += 1

    def values(self) -> list[str]:
        with self._lock:
            return list(self._values)


RUN_TIME = SecretRegistry()


def remember(*values: str | None) -> None:
    """Mask these values (derived at run time: tokens, resolved credentials) in every output from now on."""
    for value in values:
        RUN_TIME.add(value)


_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_JSON_ESCAPES = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f"}


# An answer whose JSON is longer than this most likely holds an embedding vector (3,072 numbers: ~60,000
# characters), which serialising costs ~100 µs and the walk skips: from the first one on, a redactor walks.
_WALK_ABOVE = 8_192


@lru_cache(maxsize=512)
def _char(ch: str) -> str:
    """A pattern for one character of a secret, in any form it may be echoed in."""
    forms = [re.escape(ch)]
    if ch.isascii() and (ch.isalnum() or ch in "-._~"):
        return forms[0]  # unreserved: no encoding changes it (quote, quote_plus, JSON, HTML)
    # Percent-encoded, in either case of hex digits, possibly encoded again (%25XX).
    forms.append("".join(f"%(?:25)*(?i:{byte:02x})" for byte in ch.encode()))
    if ch == " ":
        forms.append(r"\+")
    if ch in ('"', "/", "\\"):
        forms.append(r"\\+" + re.escape(ch))  # JSON-escaped, at any depth of nesting
    if ch in _JSON_ESCAPES:
        forms.append(r"\\+" + _JSON_ESCAPES[ch])
    if not ch.isascii() or not ch.isprintable():
        forms.append(rf"\\+(?i:u{ord(ch):04x})")
    if ch in _HTML:
        forms += [re.escape(_HTML[ch]), f"&#0*{ord(ch)};", f"&#(?i:x)0*(?i:{ord(ch):x});"]
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _pattern(secret: str) -> str:
    return "".join(_char(ch) for ch in secret)


class Redactor:
    """Replaces every known secret in a text with ``****`` (the config's, and :func:`remember`'s)."""

    def __init__(self, secrets: Iterable[str] = (), registry: SecretRegistry = RUN_TIME) -> None:
        self._own = {s for s in secrets if s and len(s) >= MIN_LENGTH}
        self._registry = registry
        self._version = -1
        self._regex: re.Pattern[str] | None = None
        self._walk = False  # search an answer's strings joined, not its JSON (see _WALK_ABOVE)

    @classmethod
    def for_config(cls, config: object) -> Redactor:
        """The redactor of a config (validated or raw)."""
        return cls(config_secrets(config))

    def _compiled(self) -> re.Pattern[str] | None:
        if self._version != self._registry.version:
            self._version = self._registry.version
            secrets = self._own.union(self._registry.values())
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(secrets, key=len, reverse=True)
            self._regex = re.compile("|".join(_pattern(s) for s in ordered)) if ordered else None
        return self._regex

    def __call__(self, text: str) -> str:
        regex = self._compiled()
        return text if regex is None else regex.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._compiled() is not None

    def masked(self, value: T) -> T:
        """``value`` (JSON-like: dicts, lists, text) with every secret in every string masked, for data
        the endpoint sent (an answer that echoes the key) before it reaches a record, a file or the cache."""
        return self.masked_json(value)[0]

    def masked_json(self, value: T) -> tuple[T, bytes | None]:
        """:meth:`masked`, and the JSON (``orjson.dumps``, no options) of what it returns when the search made it
        (None otherwise): the answer cache stores those bytes rather than serialising the answer again."""
        regex = self._compiled()
        if regex is None:
            return value, None
        raw = self._json(value)
        text = raw.decode() if raw is not None else "\x00".join(_strings(value, []))
        if regex.search(text) is None:
            return value, raw  # nearly every answer: one search over its strings, nothing rebuilt
        walked: T = _masked(regex, value)
        return walked, None

    def _json(self, value: object) -> bytes | None:
        """The JSON of ``value``, searched as one text holding every string (dict keys too), so one search says
        whether to walk (one C call, ~6x faster than collecting the strings): its escapes (quote, backslash,
        control characters) are forms every secret's pattern matches. None for a value JSON cannot hold as is
        (a key that is not text, a number beyond 64 bits, a lone surrogate, ...) and once this redactor met a
        vector: then its strings are joined by NUL. Either finds every secret :func:`_masked` masks; a match
        across two strings only costs a walk that finds nothing."""
        if self._walk:
            return None
        try:
            raw = orjson.dumps(value)
        except TypeError:
            return None
        self._walk = len(raw) > _WALK_ABOVE
        return raw


def _strings(value: Any, found: list[str]) -> list[str]:
    """Every string :func:`_masked` would mask in ``value`` (dict keys too), added to ``found``: a match in
    none of them is no match in their NUL-joined text, so one search there says whether to walk at all."""
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                found.append(key)
            _strings(item, found)
    elif isinstance(value, list) and not (value and type(value[0]) is float):  # an embedding vector: see below
        for item in value:
            _strings(item, found)
    return found


def _masked(regex: re.Pattern[str], value: Any) -> Any:
    if isinstance(value, str):
        return regex.sub(MASK, value)
    if isinstance(value, dict):
        return {_masked(regex, k): _masked(regex, v) for k, v in value.items()}
    if isinstance(value, list):
        if value and type(value[0]) is float:
            return value  # an embedding vector: numbers only, and walking 3,072 of them per row costs
        return [_masked(regex, item) for item in value]
    return value
