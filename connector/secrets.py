"""Keep secrets out of every message: the key, header values, keys put in URLs."""

from __future__ import annotations

import json
from collections.abc import Iterable

MASK = "****"

# Query parameters that carry credentials (Gemini's ?key=, Azure SAS tokens, ...).
_URL_SECRET_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "token", "access_token", "sig", "code"})


def url_secrets(url: str) -> list[str]:
    """Credential values that a provider put in the URL's query string."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    return [v for k, v in parse_qsl(query) if k.lower() in _URL_SECRET_PARAMS and v]


class Redactor:
    """Replaces every known secret in a text with ``****``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Each secret also in its JSON-escaped form, as it appears in a serialised
        # message; longest first, so a secret that contains another is masked whole.
        forms = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                forms.add(secret)
                forms.add(json.dumps(secret)[1:-1])
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)
