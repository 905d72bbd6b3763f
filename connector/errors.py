"""One exception tree for the whole connector.

Every error the connector raises on purpose is a ``ConnectorError``. Each class
knows the Airbyte ``failure_type`` it maps to, so the protocol edge never has to
guess::

    ConnectorError                      system_error
    ├── ConfigError                     config_error   (fix the config, then rerun)
    │   ├── TemplateError               config_error   (a template cannot be compiled or rendered)
    │   ├── InputError                  config_error   (the input table is missing or unreadable)
    │   ├── CatalogError                config_error   (unknown stream, unsupported sync mode)
    │   ├── StateError                  config_error   (malformed or foreign state)
    │   ├── OutputError                 config_error   (``run``'s output file cannot be written)
    │   └── RowTooLong                  config_error   (a prompt does not fit; too_long_policy fail)
    ├── CheckFailed                     system_error   (``check``'s finding: said in CONNECTION_STATUS)
    ├── SpendLimitReached               never leaves the run loop (a spend guard refused a request)
    ├── RunStopped                      transient_error (the run loop ended the sync on purpose)
    │   ├── RowFailed                   transient_error (on_row_error fail, or max_error_rate passed)
    │   ├── SyncFailed                  transient_error (every row failed)
    │   ├── FatalEndpointError          as its cause    (a failure every later row would hit too)
    │   └── WaitTooLong                 transient_error (a wait beyond max_wait_seconds: run again later)
    ├── OutputFailed                    system_error   (standard output cannot be written: a full disk)
    └── EndpointError                   transient_error (anything the endpoint did)
        ├── TransportError              transient_error (no HTTP answer at all)
        │   ├── ConnectTimeout / ReadTimeout / ConnectFailed / TLSFailed / StreamBroken
        │   └── LocalResourcesExhausted  transient_error (EMFILE, ENOBUFS: this machine, not the endpoint)
        ├── HTTPStatusError             depends on the status (4xx config_error, else transient)
        ├── BadReply                    transient_error (2xx whose body we cannot use)
        ├── BatchFailed                 transient_error (a provider batch failed as a whole; config_error
        │                                                when the provider blamed lines of the input)
        ├── BatchUnconfirmed            transient_error (a batch create got no clear answer and the batch
        │                                                was not found: the STATE keeps it to look again)
        └── BatchItemUnfinished         transient_error (a batch ended before running this request)

Lower-level exceptions (asyncio streams', httpx's, OSError, json) are translated into this
tree in exactly one place per layer, with ``raise X(...) from exc``.
"""

from __future__ import annotations

from typing import Literal

FailureType = Literal["system_error", "config_error", "transient_error"]

# A failed row's public ``_error_class`` (docs/PROMISES.md): what the endpoint did
# (connector.endpoint.classify), what the answer was (content_filter, validation), a provider
# batch or results file without the row's answer (unanswered), a value of the input row that does
# not fit its column (bad_input). Downstream SQL filters on these names: add, never rename.
ErrorClass = Literal[
    "rate_limit", "quota", "auth", "timeout", "connection", "server", "bad_request",
    "not_found", "context_length", "content_filter", "bad_reply", "validation", "unanswered", "bad_input",
]


class ConnectorError(Exception):
    """Base of every error the connector raises deliberately."""

    failure_type: FailureType = "system_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ConnectorError):
    """The configuration is invalid; the message names the field and the fix."""

    failure_type: FailureType = "config_error"


class TemplateError(ConfigError):
    """A request or response template cannot be compiled or rendered for a row."""


class InputError(ConfigError):
    """The input table is missing, empty in a way that matters, or unreadable."""


class CatalogError(ConfigError):
    """The configured catalog asks for something this source does not offer."""


class StateError(ConfigError):
    """The state passed with ``--state`` is malformed or belongs to another source."""


class OutputError(ConfigError):
    """The output file of ``run`` cannot be written, or a value does not fit its column."""


class RowTooLong(ConfigError):
    """A prompt does not fit the context window and ``too_long_policy`` is ``fail``."""


class CheckFailed(ConnectorError):
    """``check`` found a problem; the message is what CONNECTION_STATUS says."""


class SpendLimitReached(ConnectorError):
    """A spend guard (``max_requests``, ``max_total_tokens``) refused to send a request.

    The run loop stops cleanly before the row that met it: never a row error, never a failed sync.
    """


class RunStopped(ConnectorError):
    """The run loop ended the sync on purpose; the summary and a resumable state come first."""

    failure_type: FailureType = "transient_error"


class RowFailed(RunStopped):
    """A row failed and ``on_row_error`` is ``fail``, or the error rate passed ``max_error_rate``."""


class SyncFailed(RunStopped):
    """The sync ran but cannot be called a success: every row failed."""


class WaitTooLong(RunStopped):
    """The sync would have to wait longer than ``max_wait_seconds``: for a pause the endpoint asked
    for (``Retry-After``, an exhausted ``x-ratelimit-*`` budget) or for local resources to free up.

    No later row can get an answer sooner, but a later run can: like quota exhaustion it ends the
    sync with its state, and the message says when to run again.
    """

    def __init__(self, message: str, *, seconds: float, until: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.until = until  # epoch seconds the wait would end at; None when unknown (local resources)


class OutputFailed(ConnectorError):
    """Standard output cannot be written (a full disk, ``/dev/full``): said on stderr, since no
    message on stdout can be read any more."""


class EndpointError(ConnectorError):
    """The endpoint did not give a usable answer."""

    failure_type: FailureType = "transient_error"
    retryable: bool = True
    attempts: int = 1  # set by the client once retries are over


class TransportError(EndpointError):
    """No HTTP answer at all: connection refused, DNS, TLS, timeout, reset."""


class ConnectFailed(TransportError):
    """The host could not be reached (refused, unknown host, network down)."""


class TLSFailed(TransportError):
    """The TLS handshake failed (certificate not trusted, wrong host name)."""

    retryable = False


class ConnectTimeout(TransportError):
    """Connecting took longer than the configured timeout."""


class ReadTimeout(TransportError):
    """The endpoint accepted the request but did not answer within the timeout."""


class StreamBroken(TransportError):
    """The connection or the SSE stream ended before the answer was complete."""


class LocalResourcesExhausted(TransportError):
    """This machine ran out of open files or socket buffers (EMFILE, ENFILE, ENOBUFS) before
    anything was sent: backpressure, retried without counting as an attempt."""


class BadReply(EndpointError):
    """A 2xx reply whose body is not what the API promises (bad JSON, no choices).

    Retried by default (a proxy's error page in a 200 passes); ``retryable=False`` for a
    well-formed reply of the wrong shape, which the same server would send again.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HTTPStatusError(EndpointError):
    """The endpoint answered with a non-2xx status."""

    # 408 request timeout, 409 conflict (some gateways), 429 rate limit, 5xx server side.
    RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.retryable = status in self.RETRYABLE_STATUSES or status >= 500
        if 300 <= status < 500 and not self.retryable:
            self.failure_type = "config_error"

    @property
    def is_auth(self) -> bool:
        """The key was rejected: no later row can succeed either."""
        return self.status in (401, 403)


class FatalEndpointError(RunStopped):
    """An endpoint failure that every following row would hit too (key, quota, URL, model)."""

    def __init__(self, cause: EndpointError, message: str | None = None) -> None:
        super().__init__(message or cause.message)
        self.failure_type = "transient_error" if cause.retryable else "config_error"
        self.cause = cause


class BatchFailed(EndpointError):
    """A provider batch failed as a whole (none of its requests ran); the message has the provider's reason.

    ``retryable`` is False when the provider blamed the input itself (a line of the file), which
    a resubmission would only repeat.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        if not retryable:
            self.failure_type = "config_error"  # the input is to blame: fix it, then run again


class BatchUnconfirmed(EndpointError):
    """A batch create got no clear answer (a 5xx, a cut connection, a timeout) and the provider's batch list
    has not shown the batch within the retries: it may exist, so it is not created again in this sync."""


class BatchItemUnfinished(EndpointError):
    """A batch ended (expired, cancelled) before this request ran: nothing was bought, it can run again."""
