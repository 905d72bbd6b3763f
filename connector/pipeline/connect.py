"""The endpoint part of a run's preparation: a client over an open transport (:func:`connect`), and the
config's parts, dialect and request template (:func:`requests_of`).

``check`` and ``discover`` need only this, not the rows' machinery :mod:`connector.pipeline.prepare` builds
on it (cache, enricher, cursor and file syncs): a command a platform starts in a fresh process each time
imports no more than it uses (issue 25, cold start).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connector.callbacks import Notice, no_notice
from connector.config.model import SourceConfig
from connector.config.parts import Limits, Parts, first_task, parts_of
from connector.dialects import Dialect, dialect_for
from connector.endpoint.client import EndpointClient
from connector.endpoint.http11 import Http11Transport
from connector.endpoint.limits import ConcurrencyGate, SpendBudget, WaitCap
from connector.endpoint.pacing import Limiter
from connector.endpoint.resources import connections_that_fit
from connector.endpoint.transport import Transport
from connector.requests.templates import RequestTemplate
from connector.secrets import Redactor

TransportFactory = Callable[[Limits], Transport]


def default_transport(limits: Limits) -> Transport:
    """HTTP/1.1 with keep-alive on the event loop's streams, with the config's TLS settings."""
    return Http11Transport(verify_tls=limits.tls.verification())


def limiter_for(limits: Limits, notice: Notice | None = None, learn: bool = True) -> Limiter:
    """The concurrency gate and rate budgets a run's requests pass through; ``notice`` hears of
    long waits the endpoint asks for and of the limits learnt from its headers (``learn``: the
    budgets left unset are taken from them; not in a scaled-out worker, which would take the whole
    limit for its share)."""
    waits = WaitCap(limits.max_wait_seconds, notice) if notice else WaitCap(limits.max_wait_seconds)
    gate = ConcurrencyGate(limits.concurrency, limits.min_concurrency, adaptive=limits.adaptive_concurrency,
                           waits=waits)
    budgets = {"requests": limits.requests_per_minute, "tokens": limits.tokens_per_minute,
               "input_tokens": limits.input_tokens_per_minute, "output_tokens": limits.output_tokens_per_minute}
    return Limiter(gate, budgets, notice=notice or no_notice, learn=learn)


def budget_for(limits: Limits) -> SpendBudget | None:
    """The spend guards of one run, or None when the config sets none."""
    if limits.max_requests is None and limits.max_total_tokens is None:
        return None
    return SpendBudget(limits.max_requests, limits.max_total_tokens)


@dataclass
class Endpoint:
    """A client over an open transport, the parts it was built from, and the secrets mask."""

    parts: Parts
    redact: Redactor
    client: EndpointClient
    transport: Transport
    limiter: Limiter | None = None  # the client's: other clients of the run (its tasks') share it


@asynccontextmanager
async def connect(parts: Parts, redact: Redactor, dialect: Dialect,
                  transport_factory: TransportFactory = default_transport, *, limited: bool = True,
                  notice: Notice | None = None, learn: bool = True) -> AsyncIterator[Endpoint]:
    """An endpoint client speaking the run's one ``dialect``, through the limiter and spend budget
    unless ``limited`` is off; the transport is closed on the way out.

    ``notice`` hears at once what the person running it should know while rows may not flow:
    a concurrency lowered to fit the open-files limit, a long wait the endpoint asked for.
    ``Endpoint.parts`` are the parts the run really uses (its concurrency so lowered).
    """
    if limited:
        fitted = connections_that_fit(parts.limits.concurrency, notice or no_notice)
        if fitted != parts.limits.concurrency:
            parts = parts.with_concurrency(fitted)
    transport = transport_factory(parts.limits)
    try:
        limiter = limiter_for(parts.limits, notice, learn) if limited else None
        client = EndpointClient(parts.client, transport, dialect, limiter=limiter,
                                budget=budget_for(parts.limits) if limited else None, notice=notice)
        yield Endpoint(parts, redact, client, transport, limiter)
    finally:
        await transport.aclose()


def requests_of(config: SourceConfig) -> tuple[Parts, Dialect, RequestTemplate]:
    """The config's parts, the run's one dialect and its request template, checked before any input is
    read or anything sent: ConfigError when the API shape cannot express the config, TemplateError for
    a template that does not compile."""
    parts = parts_of(config)
    request = parts_of(first_task(config)).request if config.tasks else parts.request  # with tasks: the first's
    dialect = dialect_for(request)
    return parts, dialect, RequestTemplate.from_config(request, dialect.conversation_key)
