"""``check``: prove the config, the input, the template, the URL, the key and the model together.

Each step fails with a message a person can act on, naming what to fix. The steps,
cheapest first: render the template against the first input row; ``GET /models``
(where the server has it) to prove reachability and the key; one completion with
``max_tokens: 1`` to prove URL, key and model in one call.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from connector import errors
from connector.config.model import CHAT_PATH, SourceConfig
from connector.endpoint.client import EndpointClient
from connector.requests.templates import RequestTemplate
from connector.rows.stdin import row_for_check


def _suggest_url(config: SourceConfig) -> str:
    """The likely right chat-completions URL after a 404."""
    parts = urlsplit(config.chat_url)
    path = parts.path
    if "/v1/" not in path + "/":
        prefix = path[: -len(CHAT_PATH)] if path.endswith(CHAT_PATH) else path
        path = prefix.rstrip("/") + "/v1" + CHAT_PATH
    elif not path.endswith(CHAT_PATH):
        path = path.rstrip("/") + CHAT_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


def explain(exc: errors.EndpointError, config: SourceConfig, models: list[str] | None,
            url: str | None = None) -> str:
    """What went wrong, in the terms of the config (``url``: where the request went, if not chat_url)."""
    host = urlsplit(url or config.chat_url).netloc
    if isinstance(exc, errors.HTTPStatusError):
        if exc.status in (401, 403):
            hint = "set api_key" if config.api_key is None else "check api_key"
            return f"API key rejected ({exc.status}) by {host}: {hint}. Server said: {_detail(exc)}"
        if exc.status == 404:
            if "model" in exc.body.lower():
                offered = f" The server offers: {', '.join(models[:20])}." if models else ""
                return (f"Model '{config.model}' not found at {host} (404).{offered} "
                        f"Server said: {_detail(exc)}")
            if url is not None and url != config.chat_url:  # another API shape: its own URL
                return (f"Wrong path: POST {url} returned 404 ({config.api_compatibility}). "
                        "Set url to the API base (e.g. https://api.anthropic.com/v1) or check the shape's settings.")
            better = _suggest_url(config)
            fix = f" Did you mean {better}?" if better != config.chat_url else ""
            return (f"Wrong path: POST {config.chat_url} returned 404.{fix} "
                    "Set url to the chat-completions URL or the API base (…/v1).")
        if exc.status == 429:
            return (f"Rate limited (429) by {host} during check; the key works but is throttled now. "
                    f"Server said: {_detail(exc)}")
        return f"The endpoint rejected the check request ({exc.status}): {_detail(exc)}"
    if isinstance(exc, errors.TLSFailed):
        return (f"TLS failure talking to {host}: {exc.message}. "
                "Check the certificate (or use http:// for a local server).")
    if isinstance(exc, (errors.ConnectTimeout, errors.ReadTimeout)):
        return f"Timeout: {exc.message}. Is the server overloaded, or is timeout ({config.timeout:g} s) too short?"
    if isinstance(exc, errors.ConnectFailed):
        return f"Host unreachable: {exc.message}. Is the server running, and are host and port in url right?"
    return f"The endpoint at {host} gave an unusable answer: {exc.message}"


def _detail(exc: errors.HTTPStatusError) -> str:
    return exc.message.split(": ", 1)[-1]


async def run_check(config: SourceConfig, client: EndpointClient) -> str:
    """Return a success message, or raise CheckFailed / ConfigError."""
    template = RequestTemplate.from_config(config)
    first = row_for_check(config.input, template)  # stdin is never read: a stand-in row
    if first is None:
        raise errors.InputError("input: the table has no rows; nothing to enrich")
    dialect = client.dialect
    body = dialect.probe_body(dialect.build(template.render(first)))  # one token, no stream

    models: list[str] | None = None
    try:
        models = await client.list_models()
    except errors.HTTPStatusError as exc:
        if exc.status in (401, 403):
            raise errors.CheckFailed(explain(exc, config, None)) from exc
        # Any other /models failure is not decisive: the completion below is.
    except errors.EndpointError as exc:
        raise errors.CheckFailed(explain(exc, config, None)) from exc

    try:
        completion = await client.complete_once(body)
    except errors.EndpointError as exc:
        raise errors.CheckFailed(explain(exc, config, models, client.url)) from exc
    answered_by = completion.reply.get("model") or config.model or "the default model"
    listed = f"; {len(models)} model(s) listed" if models else ""
    # llama.cpp (and some gateways) also serve /chat/completions at the root, so a
    # url without /v1 works here yet 404s on OpenAI, vLLM, Ollama: say so while it works.
    no_v1 = ""
    if urlsplit(config.chat_url).path == CHAT_PATH:
        no_v1 = (
            f" Note: url has no /v1; this server accepts that, most OpenAI-compatible servers "
            f"do not. Did you mean {_suggest_url(config)}?"
        )
    return (
        f"Connected to {urlsplit(config.chat_url).netloc}: {answered_by} answered in "
        f"{completion.latency_ms:.0f} ms{listed}; the template renders for the first row.{no_v1}"
    )
