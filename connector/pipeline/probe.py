"""``check``: prove the config, the input, the template, the URL, the key and the model together.

Each step fails with a message a person can act on, naming what to fix. The steps,
cheapest first: render the template against the first input row; ``GET /models``
(where the server has it) to prove reachability and the key; one completion with
``max_tokens: 1`` to prove URL, key and model in one call.

A suggestion is never a guess: after a 404 at the chat-completions URL, the few likely
right URLs (:func:`candidate_paths`) are tried with the same one-token request, and only
one that answered is offered. An ``http://`` URL whose server hung up is tried once as
``https://``, and the hint to switch is given only when a TLS server answered there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connector import errors
from connector.answers.extract import dig
from connector.answers.paths import unmatched
from connector.answers.records import META_COLUMNS
from connector.config.address import Address
from connector.config.model import CHAT_PATH, SourceConfig
from connector.config.parts import parts_of
from connector.dialects import Dialect
from connector.dialects.bodies import loads
from connector.dialects.structured import SAID
from connector.endpoint.classify import is_rejected_key, is_unknown_model
from connector.endpoint.client import Completion, EndpointClient
from connector.endpoint.transport import Transport
from connector.jsonbytes import dumps
from connector.requests.templates import RequestTemplate
from connector.rows.opening import row_for_check

_VERSION = re.compile(r"v\d+((alpha|beta)\d*)?", re.IGNORECASE)
_CHAT_TYPO = re.compile(r"(chat|complet)", re.IGNORECASE)  # /chat/completion, /completions, /chat


def candidate_paths(path: str) -> list[str]:
    """Likely chat-completions paths for a configured one that returned 404, most likely first.

    ``/api`` -> ``/api/v1/...``, ``/v1/...``, ...; ``/v2/chat/completions`` -> ``/v1/...``;
    ``/v1/chat/completion`` (a typo) -> ``/v1/chat/completions``. The configured path itself is left out.
    """
    steps = [s for s in path.split("/") if s]
    while steps and _CHAT_TYPO.match(steps[-1]):  # what follows the base is the (mistyped) operation
        steps.pop()
    bases: list[list[str]] = []
    versions = [i for i, step in enumerate(steps) if _VERSION.fullmatch(step)]
    if versions:
        last = versions[-1]
        bases += [steps[: last + 1], [*steps[:last], "v1"]]
    else:
        bases += [[*steps, "v1"], ["v1"]]
    bases += [steps, []]  # as given (a typo fixed), and the host's root (llama.cpp serves both)
    found: list[str] = []
    for base in bases:
        candidate = "/" + "/".join([*base, "chat", "completions"])
        if candidate != path.rstrip("/") and candidate not in found:
            found.append(candidate)
    return found[:4]


class _Prober:
    """Sends ``check``'s one-token request to other URLs, to test a suggestion before making it."""

    def __init__(self, client: EndpointClient, transport: Transport, body: dict[str, object], timeout: float) -> None:
        self._dialect = client.dialect
        self._transport = transport
        self._payload = dumps(self._dialect.prepare(body).body)
        self._timeout = timeout

    async def status(self, url: str) -> int | None:
        """The HTTP status POST ``url`` answered with; None when nothing answered."""
        headers = await self._dialect.headers("POST", url, self._payload)
        try:
            async with self._transport.request("POST", url, headers, self._payload, self._timeout) as resp:
                await resp.read()
                return resp.status
        except errors.EndpointError:
            return None

    async def get_json(self, url: str) -> Any:
        """The JSON ``GET url`` answered with; None when it answered nothing usable."""
        headers = await self._dialect.headers("GET", url, None)
        try:
            async with self._transport.request("GET", url, headers, None, self._timeout) as resp:
                body = await resp.read()
                return loads(body) if 200 <= resp.status < 300 else None
        except (errors.EndpointError, ValueError):
            return None

    async def first_answering(self, urls: list[str]) -> str | None:
        """The first of ``urls`` that answered 2xx."""
        for url in urls:
            status = await self.status(url)
            if status is not None and 200 <= status < 300:
                return url
        return None

    async def plain_http_at(self, url: str) -> bool:
        """A plain HTTP server answers at ``url`` (an ``http://`` URL): any status, but not a TLS port's
        complaint about plain HTTP (nginx's 400), which proves the opposite."""
        headers = await self._dialect.headers("POST", url, self._payload)
        try:
            async with self._transport.request("POST", url, headers, self._payload, self._timeout) as resp:
                said = await resp.head(4096)
        except errors.EndpointError:
            return False
        return not (resp.status == 400 and b"https port" in said.lower())

    async def tls_at(self, url: str) -> str | None:
        """"trusted" or "untrusted" when a TLS server answers at ``url`` (its certificate verified or
        not: either proves one); None when none does."""
        headers = await self._dialect.headers("POST", url, self._payload)
        try:
            async with self._transport.request("POST", url, headers, self._payload, self._timeout) as resp:
                await resp.read()
                return "trusted"
        except errors.TLSFailed as exc:
            return "untrusted" if "certificate" in exc.message.lower() else None
        except errors.EndpointError:
            return None


async def _ollama_context(prober: _Prober, config: SourceConfig, model: str) -> str:
    """What context length Ollama gave the model (GET /api/ps, the models it has loaded): a longer
    prompt is cut to it without an error."""
    parts = urlsplit(config.endpoint.url)
    running = await prober.get_json(f"{parts.scheme}://{parts.netloc}/api/ps")
    models = running.get("models") if isinstance(running, dict) else None
    for entry in models if isinstance(models, list) else ():
        names = {str(entry.get(k, "")).removesuffix(":latest") for k in ("name", "model")} if isinstance(entry, dict) \
            else set()
        if model.removesuffix(":latest") in names and isinstance(entry.get("context_length"), int):
            return (f"Ollama runs {model} with a context of {entry['context_length']:,} tokens (num_ctx): it cuts a "
                    "longer prompt without an error (such rows are marked context_length); raise "
                    "OLLAMA_CONTEXT_LENGTH on the server if rows are longer.")
    return ("Ollama did not say the context length it runs the model with (GET /api/ps); its default num_ctx "
            "(2,048 or 4,096 tokens) cuts a longer prompt without an error: set OLLAMA_CONTEXT_LENGTH on the server.")


# The shapes whose output_schema is a response_format, which an endpoint may refuse (dialects/structured.py).
_CHAT_SHAPES = ("openai_chat_completions", "azure_openai", "amazon_bedrock")


def _chat_shaped(config: SourceConfig) -> bool:
    return config.endpoint.shape == "openai_chat_completions"


async def _better_url(config: SourceConfig, prober: _Prober) -> str | None:
    """A chat-completions URL that answered, for a configured one that returned 404."""
    address = Address.parse(config.endpoint.url)
    parts = urlsplit(address.base)
    origin = f"{parts.scheme}://{parts.netloc}"
    configured = urlsplit(config.chat_url).path
    given = urlsplit(address.base).path  # the url as typed: /v1/chat/completion keeps its typo here
    paths = [p for p in candidate_paths(given) if p != configured]
    return await prober.first_answering([address.url(path, base=origin) for path in paths])


def _https_twin(url: str) -> str | None:
    parts = urlsplit(url)
    return urlunsplit(("https", parts.netloc, parts.path, parts.query, "")) if parts.scheme == "http" else None


def _http_twin(url: str) -> str | None:
    parts = urlsplit(url)
    return urlunsplit(("http", parts.netloc, parts.path, parts.query, "")) if parts.scheme == "https" else None


# What an https:// URL at a plain HTTP server looks like: a TLS error (the server answered the hello
# in plain text: "wrong version number"), or a handshake that never ends (it waits for a request line).
_NO_TLS_SIGNS = (errors.TLSFailed, errors.ConnectTimeout, errors.ReadTimeout)


def _hung_up(exc: errors.EndpointError) -> bool:
    """What plain HTTP to a TLS port looks like: a dropped connection, or nginx's 400 saying so."""
    if isinstance(exc, errors.HTTPStatusError):
        return exc.status == 400 and "https port" in exc.body.lower()
    return isinstance(exc, (errors.StreamBroken, errors.BadReply))


async def _explained(exc: errors.EndpointError, config: SourceConfig, models: list[str] | None,
                     client: EndpointClient, prober: _Prober, url: str) -> str:
    """:func:`explain`, with a suggestion that was tried first where one is likely."""
    message = explain(exc, config, models, url)
    if isinstance(exc, errors.HTTPStatusError) and exc.status == 404 and message.startswith("Wrong path") \
            and _chat_shaped(config):
        better = await _better_url(config, prober)
        fix = f" Did you mean {better}? It answered." if better else ""
        return (f"Wrong path: POST {client.url} returned 404.{fix} "
                "Set url to the chat-completions URL or the API base (…/v1).")
    plain = _http_twin(url) if isinstance(exc, _NO_TLS_SIGNS) else None
    if plain is not None and await prober.plain_http_at(plain):
        address = Address.parse(config.endpoint.url)
        http = address.url(base="http" + address.base.removeprefix("https"))
        return (f"The server does not speak TLS here; if it serves plain HTTP use {http} (it answered plain HTTP "
                f"there). Over https:// it failed: {message}")
    twin = _https_twin(url)
    tls = await prober.tls_at(twin) if twin is not None and _hung_up(exc) else None
    if tls is not None:
        address = Address.parse(config.endpoint.url)
        https = address.url(base="https" + address.base.removeprefix("http"))
        private = " (its certificate is not trusted here: add its CA as tls.ca_bundle)" if tls == "untrusted" else ""
        message = f"{message.rstrip('.')}. The server speaks HTTPS: set url to {https}{private}."
    return message


def explain(exc: errors.EndpointError, config: SourceConfig, models: list[str] | None,
            url: str | None = None) -> str:
    """What went wrong, in the terms of the config (``url``: where the request went, if not chat_url)."""
    host = urlsplit(url or config.chat_url).netloc
    if isinstance(exc, errors.HTTPStatusError):
        if is_rejected_key(exc):
            hint = "set api_key" if config.api_key is None else "check api_key"
            return f"API key rejected ({exc.status}) by {host}: {hint}. Server said: {_detail(exc)}"
        if is_unknown_model(exc) or (exc.status == 404 and "model" in exc.body.lower()):
            offered = f" The server offers: {', '.join(models[:20])}." if models else ""
            return (f"Model '{config.model}' not found at {host} ({exc.status}).{offered} "
                    f"Server said: {_detail(exc)}")
        if exc.status == 404:
            if not _chat_shaped(config):  # another API shape: its own URL
                return (f"Wrong path: POST {url} returned 404 ({config.endpoint.shape}). "
                        "Set url to the API base (e.g. https://api.anthropic.com/v1) or check the shape's settings.")
            return (f"Wrong path: POST {url or config.chat_url} returned 404. "
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


async def run_check(config: SourceConfig, client: EndpointClient, transport: Transport,
                    tasks: Sequence[tuple[str, Dialect]] = ()) -> str:
    """Return a success message, or raise CheckFailed / ConfigError. ``transport`` is the client's,
    for trying a suggested URL before suggesting it. ``config`` is the first task's with tasks; ``tasks``
    are the other tasks of another model, each with its dialect: their model is probed too."""
    template = RequestTemplate.from_config(parts_of(config).request, client.dialect.conversation_key)
    first = row_for_check(config.input, template, META_COLUMNS)  # stdin is never read: a stand-in row
    if first is None:
        raise errors.InputError("input: the table has no rows; nothing to enrich")
    dialect = client.dialect
    body = dialect.probe_body(dialect.build(template.render(first)))  # one token, no stream
    prober = _Prober(client, transport, body, float(config.timeout))

    models: list[str] | None = None
    try:
        models = await client.list_models()
    except errors.HTTPStatusError as exc:
        if is_rejected_key(exc):
            raise errors.CheckFailed(explain(exc, config, None, client.url)) from exc
        # Any other /models failure is not decisive: the completion below is.
    except errors.EndpointError as exc:
        raise errors.CheckFailed(await _explained(exc, config, None, client, prober, client.url)) from exc

    try:
        completion, changes = await _probe(client, body)
    except errors.EndpointError as exc:
        raise errors.CheckFailed(await _explained(exc, config, models, client, prober, client.url)) from exc
    reply = completion.reply
    notes = [*template.warnings, *changes, *_path_notes(config, reply), *_model_notes(body.get("model"), models)]
    notes += await _probe_tasks(tasks, template.render(first), config, client, models)
    if config.output_schema is not None and dialect.name in _CHAT_SHAPES:
        notes.append(f"structured output: output_schema is asked for with {SAID[dialect.structured_mode]}.")
    if config.provider == "ollama":
        notes.append(await _ollama_context(prober, config, str(reply.get("model") or config.model or "")))
    answered_by = reply.get("model") or config.model or "the default model"
    listed = f"; {len(models)} model(s) listed" if models else ""
    # llama.cpp (and some gateways) also serve /chat/completions at the root, so a url
    # without /v1 works here yet 404s on OpenAI, vLLM, Ollama: say so, if /v1 answers too.
    if _chat_shaped(config) and urlsplit(config.chat_url).path == CHAT_PATH:
        address = Address.parse(config.endpoint.url)
        v1 = await prober.first_answering([address.url("/v1" + CHAT_PATH, base=config.base_url)])
        if v1 is not None:
            notes.append(f"url has no /v1; this server accepts that, most OpenAI-compatible servers "
                         f"do not. {v1} answers too: prefer it.")
    return (
        f"Connected to {urlsplit(client.url).netloc}: {answered_by} answered in "
        f"{completion.latency_ms:.0f} ms{listed}; the template renders for the first row."
        + "".join(f" Note: {note}" for note in notes)
    )


async def _probe(client: EndpointClient, body: dict[str, Any]) -> tuple[Completion, list[str]]:
    """The one-token completion, sent again (as a read would) after each refusal the dialect can answer
    by changing the request (json_schema refused, max_completion_tokens asked for); what changed."""
    changes: list[str] = []
    while True:
        try:
            return await client.complete_once(body), changes
        except errors.HTTPStatusError as exc:
            change = client.dialect.adapt(exc.status, f"{exc.message} {exc.body}") if len(changes) < 3 else None
            if change is None:
                raise
            changes.append(change[0].upper() + change[1:] + ".")


def _path_notes(config: SourceConfig, reply: dict[str, Any]) -> list[str]:
    """Warnings for response_template paths that select nothing in the probe's reply; CheckFailed
    for paths that cannot select anything in the shape at all."""
    findings = unmatched(config.response_template.columns, reply)
    impossible = [str(f) for f in findings if f.impossible]
    if impossible:
        raise errors.CheckFailed("The endpoint answered, but " + "; ".join(impossible)
                                 + ". Every row would get a null there: fix the path in response_template.columns.")
    cut = dig(reply, ("choices", 0, "finish_reason")) == "length"
    why = " (the probe was cut short by max_tokens 1; a full answer may have it)" if cut else ""
    return [f"{finding}{why}." for finding in findings]


async def _probe_tasks(tasks: Sequence[tuple[str, Dialect]], rendered: Any, config: SourceConfig,
                       client: EndpointClient, models: list[str] | None) -> list[str]:
    """Each task's own model probed with the first row's prompt (its own may need other tasks' answers);
    CheckFailed naming the task whose model fails; the notes."""
    notes: list[str] = []
    for name, dialect in tasks:
        body = dialect.probe_body(dialect.build(rendered))
        try:
            await _probe(client, body)
        except errors.EndpointError as exc:
            other = config.model_copy(update={"model": body.get("model")})
            raise errors.CheckFailed(f"task '{name}': {explain(exc, other, models, client.url)}") from exc
        notes += _model_notes(body.get("model"), models)
    if tasks:
        notes.append(f"the model of task(s) {', '.join(name for name, _ in tasks)} answered too.")
    return notes


def _model_notes(sent: object, models: list[str] | None) -> list[str]:
    """A note when the model sent is not among the models the endpoint lists."""
    if not models or not isinstance(sent, str) or sent in models:
        return []
    shown = ", ".join(models[:20]) + (", ..." if len(models) > 20 else "")
    return [f"model '{sent}' is not among the {len(models)} model(s) the endpoint lists ({shown}), yet it "
            "answered: a single-model server ignores the name, but a gateway may route it to another model. "
            "Set model to a listed name."]
