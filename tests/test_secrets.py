"""connector/secrets.py: what is secret in a config, values learned at run time, and the masking."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import orjson
import pytest

from connector.config.load import load_config
from connector.secrets import MASK, Redactor, SecretRegistry, config_secrets, is_secret_field, url_secrets

KEY = "sk-a/b+c=d e%f\"g\\h-0123"  # every character an encoder changes


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        f"Bearer {KEY}",
        quote(f"Bearer {KEY}"),
        quote(f"Bearer {KEY}", safe="").lower(),
        quote_plus(f"Bearer {KEY}"),
        quote(quote(KEY, safe=""), safe=""),  # encoded twice
        json.dumps(KEY),
        json.dumps(json.dumps(KEY)),
        json.dumps({"headers": {"authorization": f"Bearer {KEY}"}}),
        html.escape(KEY),
        repr(KEY),
    ],
)
def test_a_secret_is_masked_in_every_form_it_is_echoed_in(echo: str) -> None:
    masked = Redactor([KEY], SecretRegistry())(f"server said: {echo} (end)")
    assert MASK in masked
    for part in ("a/b", "c=d", "e%f", "0123", "%2F", "%2f"):
        assert part not in masked, (echo, masked)


def test_the_longest_secret_is_masked_whole_and_short_values_are_left_alone() -> None:
    redact = Redactor(["abcdef", "abcdefghij", "xy"], SecretRegistry())
    assert redact("abcdefghij abcdef xy") == f"{MASK} {MASK} xy"


def test_values_learned_at_run_time_are_masked_by_redactors_made_before() -> None:
    registry = SecretRegistry()
    redact = Redactor(["sk-config-key"], registry)
    assert redact("ya29.token-42") == "ya29.token-42"
    registry.add("ya29.token-42")
    assert redact("Bearer ya29.token-42 and sk-config-key") == f"Bearer {MASK} and {MASK}"
    assert bool(Redactor([], registry))


def test_url_credentials() -> None:
    assert url_secrets("https://alice:p%40ss@h.example/v1?key=k-123&x=1") == [
        "k-123", "p@ss", "alice:p@ss", "YWxpY2U6cEBzcw=="]
    assert url_secrets("https://tok-only-9@h.example/v1") == ["tok-only-9"]  # a lone user name is the token
    assert url_secrets("http://h.example/v1?api-version=1") == []


RAW = {
    "url": "https://user:url-password-7@gw.example.com/v1?key=url-query-key-7",
    "api_key": "sk-raw-key-7",
    "headers": {"X-Tenant": "header-value-7"},
    "bedrock": {"region": "us-east-1", "access_key_id": "AKIA-7", "secret_access_key": "aws-secret-7",
                "session_token": "aws-session-7"},
    "vertex": {"credentials_json": json.dumps({"type": "service_account", "private_key": "pk-7",
                                               "private_key_id": "pkid-7", "client_email": "a@b.c"})},
}


def test_the_secrets_of_a_raw_config_even_an_invalid_one() -> None:
    found = set(config_secrets({**RAW, "timeout": "soon"}))
    assert {"url-password-7", "url-query-key-7", "sk-raw-key-7", "header-value-7", "AKIA-7", "aws-secret-7",
            "aws-session-7", "pk-7", "pkid-7"} <= found
    assert "a@b.c" not in found and "us-east-1" not in found
    assert "hv-list-7" in config_secrets({"headers": [{"name": "X", "value": "hv-list-7"}]})
    assert "wrong-type-7" in config_secrets({"api_key": ["wrong-type-7"]})
    assert config_secrets("not a dict") == []


def test_a_key_read_with_its_trailing_newline_is_masked_with_and_without_it() -> None:
    """Validation strips the newline; a message made from the raw config must still mask the key."""
    raw = {"api_key": "sk-newline-key-7\n"}
    assert {"sk-newline-key-7\n", "sk-newline-key-7"} <= set(config_secrets(raw))
    assert "sk-newline-key-7" not in Redactor(config_secrets(raw))("401 for key sk-newline-key-7 at /v1")


def test_the_validated_config_has_the_same_secrets_as_its_raw_form() -> None:
    raw = {"url": "https://gw.example.com/v1?key=url-query-key-7", "api_key": "sk-raw-key-7",
           "headers": {"X-Tenant": "header-value-7"}, "model": "m", "prompt": "{{t}}",
           "input": {"rows": [{"t": "x"}]}}
    assert set(config_secrets(load_config(raw))) == set(config_secrets(raw))


@pytest.mark.parametrize(("path", "secret"), [("api_key", True), ("headers.X-Tenant", True), ("headers.0.value", True),
                                              ("vertex.credentials_json", True), ("vertex.project", False),
                                              ("api_keys", False), ("url", False)])
def test_which_config_paths_are_secret(path: str, secret: bool) -> None:
    assert is_secret_field(path) == secret


def test_remote_input_credentials_are_secrets() -> None:
    from connector.secrets import config_secrets

    raw = {"input": {"path": "https://files.example/x.csv?X-Amz-Signature=abcdef0123&sig=feedbeef99",
                     "s3": {"access_key_id": "AKIAEXAMPLEKEY01", "secret_access_key": "s3-secret-value",
                            "session_token": "s3-session-token"},
                     "https": {"headers": {"Authorization": "Bearer https-token-1"}, "password": "https-pass"},
                     "sftp": {"password": "sftp-pass", "private_key": "-----BEGIN KEY-----x",
                              "private_key_passphrase": "phrase-1"}}}
    found = set(config_secrets(raw))
    assert {"abcdef0123", "feedbeef99", "AKIAEXAMPLEKEY01", "s3-secret-value", "s3-session-token",
            "Bearer https-token-1", "https-pass", "sftp-pass", "-----BEGIN KEY-----x", "phrase-1"} <= found


def test_an_sftp_user_name_is_not_a_secret_but_its_password_is() -> None:
    from connector.secrets import url_secrets

    assert url_secrets("sftp://loader@files.example/x.csv") == []
    assert "pw-1234" in url_secrets("sftp://loader:pw-1234@files.example/x.csv")
    assert url_secrets("https://TOKEN1234@files.example/x.csv") == ["TOKEN1234"]


# Redactor.masked searches an answer's strings once and walks it only on a hit: it must mask
# exactly what the walk masks, wherever the secret sits in the answer.
_ANSWERS = [
    {"choices": [{"message": {"content": f"the key is {json.dumps(KEY)}"}}]},  # JSON-escaped inside a string
    {"choices": [{"message": {"content": "fine", "tool_calls": [{"arguments": {"h": quote(KEY)}}]}}]},
    {KEY: "a secret as a key", "n": 3, "none": None, "flag": True},
    ["first", ["nested", {"deeper": [html.escape(KEY)]}]],
    {"data": [{"embedding": [0.5, 0.25]}], "model": f"Bearer {KEY}"},
    f"Bearer {KEY}",
]


@pytest.mark.parametrize("answer", _ANSWERS)
def test_an_answer_is_masked_wherever_the_secret_sits_in_it(answer: object) -> None:
    masked = Redactor([KEY], SecretRegistry()).masked(answer)
    assert MASK in json.dumps(masked)
    for part in ("a/b", "c=d", "e%f", "0123"):
        assert part not in json.dumps(masked), (answer, masked)


def test_an_answer_without_a_secret_is_returned_as_it_is() -> None:
    """Nothing rebuilt (the row path's common case), also when a secret's halves sit in two strings."""
    answer = {"choices": [{"message": {"content": "sk-a/b+c="}}], "usage": {"prompt_tokens": 3},
              "parts": ["sk-a/b+c=", "d e%f\"g\\h-0123"], "vector": [0.1, 0.2]}
    assert Redactor([KEY], SecretRegistry()).masked(answer) is answer


# Redactor.masked searches an answer's JSON (its escapes are forms every secret's pattern matches), or its
# strings joined once the redactor met a vector: a secret with characters JSON escapes is found either way.
_ESCAPED_SECRETS = ["sk-quote\"back\\slash", "sk-new\nline\ttab\rret", "sk-ctl\x01\x1f\x7f-end", "sk-é-ü-日本-😀",
                    "sk-</script>&amp;'x'"]


@pytest.mark.parametrize("secret", _ESCAPED_SECRETS)
def test_a_secret_with_characters_json_escapes_is_masked_in_an_answer(secret: str) -> None:
    redact = Redactor([secret], SecretRegistry())
    answer = {"choices": [{"message": {"content": f"echo: {secret}!"}}], secret: 1, "n": [1, 2.5, None]}
    masked = redact.masked(answer)
    assert masked == {"choices": [{"message": {"content": f"echo: {MASK}!"}}], MASK: 1, "n": [1, 2.5, None]}


def test_a_redactor_that_met_a_vector_still_masks_every_answer_after_it() -> None:
    redact = Redactor([KEY], SecretRegistry())
    vector = {"data": [{"embedding": [0.125] * 3072}], "model": f"m {KEY}"}
    assert redact.masked(vector) == {"data": [{"embedding": [0.125] * 3072}], "model": f"m {MASK}"}
    answer = {"choices": [{"message": {"content": f"the key is {json.dumps(KEY)}"}}]}
    assert MASK in json.dumps(redact.masked(answer)) and "0123" not in json.dumps(redact.masked(answer))
    plain = {"choices": [{"message": {"content": "nothing secret"}}], "vector": [0.5] * 3072}
    assert redact.masked(plain) is plain
    odd = {1: f"a key that is not text beside {KEY}"}  # no JSON for it: its strings are searched
    assert Redactor([KEY], SecretRegistry()).masked(odd) == {1: f"a key that is not text beside {MASK}"}


@pytest.mark.parametrize("answer", [*_ANSWERS, {"choices": [{"message": {"content": "nothing secret"}}], "n": [1.5]},
                                    {"data": [{"embedding": [0.125] * 3072}]}, {1: "a key that is not text"}])
def test_the_json_the_cache_is_handed_is_that_of_the_masked_answer(answer: object) -> None:
    """masked_json's bytes (the answer cache stores them as they are) hold no secret: the JSON of what it returns."""
    shown, raw = Redactor([KEY], SecretRegistry()).masked_json(answer)
    assert shown == Redactor([KEY], SecretRegistry()).masked(answer)
    if raw is not None:
        assert raw == orjson.dumps(shown) and b"0123" not in raw
