"""``check``: every failure is CONNECTION_STATUS FAILED with a precise, safe message (exit 0)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from tests.conftest import Server, chat_reply, mock_transport, run_cli
from tests.fake_openai import spawn

KEY = "sk-check-secret-key-42"


def base_config(**extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": KEY, "model": "m",
            "prompt": "Classify: {{text}}", "input": {"rows": [{"text": "great"}]}, **extra}


def check(config: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response]) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(config, mock_transport(handler))]

    (message,) = asyncio.run(collect())
    assert message["type"] == "CONNECTION_STATUS"
    status = message["connectionStatus"]
    assert KEY not in status["message"]
    return dict(status)


def models_then(chat: Callable[[httpx.Request], httpx.Response],
                models: list[str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            if models is None:
                return httpx.Response(404, text="Not Found")
            return httpx.Response(200, json={"data": [{"id": m} for m in models]})
        return chat(request)
    return handler


def test_success_names_the_model_and_proves_the_completion() -> None:
    seen: list[dict[str, Any]] = []

    def chat(request: httpx.Request) -> httpx.Response:
        seen.append(__import__("json").loads(request.content))
        return httpx.Response(200, json=chat_reply("x", "length", model="m-2024"))

    status = check(base_config(stream=True), models_then(chat, ["m"]))
    assert status["status"] == "SUCCEEDED", status
    assert "m-2024" in status["message"]
    # the probe is minimal and plain, whatever the streaming setting
    assert seen[0]["max_tokens"] == 1 and "stream" not in seen[0]
    assert seen[0]["messages"][-1]["content"] == "Classify: great"


def test_rejected_key_is_named_without_echoing_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}",
                                                   "code": "invalid_api_key"}})

    status = check(base_config(), handler)
    assert status["status"] == "FAILED"
    assert "API key rejected (401)" in status["message"]
    assert "****" in status["message"]


def serving_at(*paths: str) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    """A server that answers chat completions at exactly these paths (404 elsewhere); and what it was asked."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.method == "POST" and request.url.path in paths:
            return httpx.Response(200, json=chat_reply("x"))
        return httpx.Response(404, text="Not Found")
    return handler, asked


@pytest.mark.parametrize(
    ("url", "served", "suggested"),
    [
        ("http://llm.internal:8080/api", "/v1/chat/completions", "http://llm.internal:8080/v1/chat/completions"),
        ("http://llm.internal:8080/api", "/api/v1/chat/completions",
         "http://llm.internal:8080/api/v1/chat/completions"),
        ("http://llm.internal:8080/v2/chat/completions", "/v1/chat/completions",
         "http://llm.internal:8080/v1/chat/completions"),
        ("http://llm.internal:8080/v1/chat/completion", "/v1/chat/completions",
         "http://llm.internal:8080/v1/chat/completions"),
        ("http://llm.internal:8000", "/v1/chat/completions", "http://llm.internal:8000/v1/chat/completions"),
        ("http://llm.internal:8000/openai?api-version=7", "/openai/v1/chat/completions",
         "http://llm.internal:8000/openai/v1/chat/completions?api-version=7"),
    ],
)
def test_wrong_path_suggests_only_a_url_that_answered(url: str, served: str, suggested: str) -> None:
    handler, asked = serving_at(served)
    status = check(base_config(url=url), handler)
    assert status["status"] == "FAILED"
    assert "returned 404" in status["message"]
    assert f"Did you mean {suggested}? It answered." in status["message"]
    assert len(asked) <= 6  # /models, the configured URL, at most four candidates


def test_wrong_path_suggests_nothing_when_no_likely_url_answers() -> None:
    handler, asked = serving_at("/somewhere/else")
    status = check(base_config(url="http://llm.internal:8080/api"), handler)
    assert status["status"] == "FAILED" and "returned 404" in status["message"]
    assert "Did you mean" not in status["message"]
    assert "http://llm.internal:8080/v1/chat/completions" in asked  # it was tried, and did not answer


@pytest.mark.parametrize(("served", "noted"), [(("/chat/completions", "/v1/chat/completions"), True),
                                                (("/chat/completions",), False)])
def test_a_url_without_v1_that_works_gets_a_note_only_when_v1_answers_too(served: tuple[str, ...],
                                                                         noted: bool) -> None:
    handler, _ = serving_at(*served)
    status = check(base_config(url="http://llm.internal:8000"), handler)
    assert status["status"] == "SUCCEEDED", status
    assert ("http://llm.internal:8000/v1/chat/completions answers too" in status["message"]) == noted


def test_unknown_model_lists_what_the_server_offers() -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"message": "The model `m` does not exist",
                                                   "code": "model_not_found"}})

    status = check(base_config(), models_then(chat, ["llama-3-8b", "qwen-7b"]))
    assert status["status"] == "FAILED"
    assert "Model 'm' not found" in status["message"]
    assert "llama-3-8b, qwen-7b" in status["message"]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("read timed out"), "Timeout"),
        (httpx.ConnectTimeout("connect timed out"), "Timeout"),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "TLS failure"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "Host unreachable"),
    ],
)
def test_transport_failures_are_named(exc: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    status = check(base_config(), handler)
    assert status["status"] == "FAILED"
    assert status["message"].startswith(expected), status["message"]


def test_template_naming_a_missing_column_fails_at_check() -> None:
    config = base_config(prompt="Summarise {{body}} for {{audience}}")
    status = check(config, lambda r: httpx.Response(200, json=chat_reply("x")))
    assert status["status"] == "FAILED"
    assert "audience, body" in status["message"] and "input columns are: text" in status["message"]


def test_invalid_config_fails_with_the_field_path() -> None:
    status = check(base_config(timeout=0), lambda r: httpx.Response(200, json=chat_reply("x")))
    assert status["status"] == "FAILED"
    assert "timeout: must be > 0" in status["message"]


def test_cli_check_exits_0_on_failure_and_prints_no_traceback(fake_server: Server, write_json) -> None:
    config = {**base_config(), "url": fake_server.base_url, "api_key": "sk-wrong-key-000000"}
    run = run_cli(["check", "--config", write_json("c.json", config)], process=True)
    assert run.code == 0
    (status,) = run.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "API key rejected (401)" in status["connectionStatus"]["message"]
    assert "sk-wrong-key-000000" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_cli_check_unreachable_host(write_json) -> None:
    config = {**base_config(), "url": "http://127.0.0.1:9/v1", "timeout": 5}
    run = run_cli(["check", "--config", write_json("c.json", config)])
    assert run.code == 0
    message = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    assert message.startswith("Host unreachable") and "127.0.0.1:9" in message


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files in ``folder``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)  # valid for 127.0.0.1 once trusted (tests/test_cold_start.py)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_an_http_url_at_an_https_server_is_told_to_use_https(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with spawn("--tls-cert", str(cert), "--tls-key", str(key)) as (base, _pid):
        http = base.replace("https://", "http://")
        config = {**base_config(url=http), "timeout": 10}
        (message,) = asyncio.run(_collect(commands.check(config)))
    status = message["connectionStatus"]
    assert status["status"] == "FAILED"
    https = http.replace("http://", "https://")
    assert f"The server speaks HTTPS: set url to {https} (its certificate is not trusted here" in status["message"]


def test_a_dropped_connection_at_a_plain_server_gets_no_https_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected")

    status = check(base_config(), handler)
    assert status["status"] == "FAILED" and "HTTPS" not in status["message"]


async def _collect(messages: Any) -> list[dict[str, Any]]:
    return [m async for m in messages]


def test_an_https_url_at_a_plain_http_server_that_stalls_the_handshake_says_use_http() -> None:
    """Before: the whole timeout, then "Is the server overloaded, or is timeout too short?"."""
    from tests.hostile_modes import PlainHttpStallingTls

    server = PlainHttpStallingTls()
    try:
        config = {**base_config(url=f"https://127.0.0.1:{server.port}/v1"), "timeout": 2}
        (message,) = asyncio.run(_collect(commands.check(config)))
    finally:
        server.close()
    text = message["connectionStatus"]["message"]
    assert text.startswith("The server does not speak TLS here; if it serves plain HTTP use "
                           f"http://127.0.0.1:{server.port}/v1"), text


def test_an_https_url_at_a_plain_http_server_that_answers_says_use_http_before_the_certificate() -> None:
    """Before: "TLS failure ... Check the certificate (or use http:// for a local server)"."""
    with spawn() as (base, _pid):
        https = base.replace("http://", "https://")
        config = {**base_config(url=https), "timeout": 10}
        (message,) = asyncio.run(_collect(commands.check(config)))
    text = message["connectionStatus"]["message"]
    assert text.startswith(f"The server does not speak TLS here; if it serves plain HTTP use {base}"), text
    assert text.index("plain HTTP use") < text.find("certificate") or "certificate" not in text
