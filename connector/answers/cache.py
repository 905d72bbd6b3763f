"""Answers already paid for: an on-disk cache, and one request per distinct body per run.

The key is a SHA-256 over a canonical JSON of who asks and what: the endpoint URL,
the dialect, the requester's identity (:func:`connector.secrets.requester_identity`:
a keyed hash of the credentials and of every configured header, so another key or a
routing header is another key, and no credential is stored) and the request body,
which includes the model and every parameter. An answer is stored (and committed)
before its record is emitted: a resumed or repeated run pays nothing for it.

The store is sqlite in WAL mode. Anything wrong with the file (corrupt, locked,
read-only, a directory in the way) degrades to "no cache" with a warning, never
a crash: the cache saves money, it must not cost a sync. When it stops storing in
the middle of a run (a full disk), :attr:`AnswerCache.failure` says why and
:attr:`AnswerCache.unkept` counts the answers bought that it could not keep, for the
run's summary. A damaged entry (not JSON, not a reply) is a miss, with a warning, and
a cached reply is normalised like a fresh one before it is used.

Beside the answers, ``limits`` holds each output-token cap (the part of a request that sets it, as
canonical JSON: ``{"max_tokens":16}``) under which some answer ended on its own
(:meth:`AnswerCache.note_limit`, one row per distinct cap, written in the answers' transaction). Raising
``max_tokens`` after some answers were cut off then asks again only those: a request that misses is
looked up once more under each cap the file had at open (:meth:`AnswerCache.under_other_caps`), and
:meth:`connector.pipeline.enrich.RowEnricher.cached_answer` decides whether the answer found fits. Only a
run that found caps when it opened the file makes those lookups (:attr:`AnswerCache.limits`): the caps a
run adds itself are its own, so a first run pays no lookup; per answer, a run only finds its cap's few
bytes among those it noted already. A file notes at most :data:`MAX_LIMITS` caps (a template that sets
the cap per row would otherwise make a later run's misses look up every one of them): the answers of
other caps are found by their own request only.

Files written by a35ee73 and before map, in ``kept``, the key of a request *without* its cap to the
answer that ended on its own under some cap; they are still looked up (:meth:`AnswerCache.kept`, only
when the file had such entries at open: :attr:`AnswerCache.has_kept`), and no longer written: that
cost a second key (a SHA-256 of the body) and an index insert for every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from connector.config.sections import CacheConfig
from connector.dialects.base import Dialect
from connector.dialects.replies import normalise as normalise_text
from connector.errors import BadReply

Normalise = Callable[[dict[str, Any]], dict[str, Any]]


def _as_is(reply: dict[str, Any]) -> dict[str, Any]:
    return reply

T = TypeVar("T")

MAX_LIMITS = 16  # distinct output-token caps a cache file notes (each one a lookup for a later run's miss)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    reply BLOB NOT NULL,
    created REAL NOT NULL
)
"""
# An answer that ended on its own, by the key of its request without the output-token cap (written by a35ee73 and
# before; read only): the request with a larger cap (raised after other rows were cut off) finds it.
_KEPT = """
CREATE TABLE IF NOT EXISTS kept (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL
)
"""
# The output-token caps some answer ended on its own under: a request with another cap is looked up under each.
_LIMITS = """
CREATE TABLE IF NOT EXISTS limits (
    spec TEXT PRIMARY KEY
)
"""


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "source-openai-compatible" / "answers.sqlite"


def cache_path(cache: CacheConfig) -> Path:
    """The cache file the config names, or the default one."""
    return Path(cache.path).expanduser() if cache.path else default_cache_path()


def open_cache(cache: CacheConfig, warn: Callable[[str], None], normalise: Normalise = normalise_text,
               mask: Normalise = _as_is) -> AnswerCache | None:
    """The answer cache the config asks for (None when it is off); ``normalise`` is the run's dialect's,
    which judges a cached reply as it judges a fresh one; ``mask`` (the run's Redactor.masked) takes the
    run's secrets out of a reply before it is stored."""
    if not cache.enabled:
        return None
    return AnswerCache(cache_path(cache), cache.ttl_seconds, warn=warn, normalise=normalise, mask=mask)


def connect(path: Path) -> sqlite3.Connection:
    """The cache file's connection, as :class:`AnswerCache` opens it (autocommit: it begins its own transactions)."""
    return sqlite3.connect(str(path), timeout=1.0, isolation_level=None, check_same_thread=False)


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def cache_key(url: str, dialect: str, body: Any, requester: str) -> str:
    """The key of the answer to ``body`` sent by ``requester`` (:func:`~connector.secrets.requester_identity`)
    to ``url`` in the ``dialect`` API shape: the SHA-256 of ``[url, dialect, requester, body]`` as canonical JSON
    (keys sorted, compact), the hash of its first three items made once per run."""
    digest = _asker(url, dialect, requester).copy()
    digest.update(orjson.dumps(body, option=_CANONICAL, default=str))
    digest.update(b"]")
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _asker(url: str, dialect: str, requester: str) -> hashlib._Hash:
    """SHA-256 fed with the canonical JSON array's start, up to its last item (who asks, where and how)."""
    return hashlib.sha256(orjson.dumps([url, dialect, requester], option=_CANONICAL, default=str)[:-1] + b",")


class AnswerCache:
    """sqlite-backed answers with an optional time to live. Thread-unsafe by design: one event loop."""

    def __init__(self, path: Path, ttl_seconds: float | None = None, warn: Callable[[str], None] = print,
                 normalise: Normalise = normalise_text, mask: Normalise = _as_is,
                 opener: Callable[[Path], sqlite3.Connection] = connect) -> None:
        self.path = path
        self._normalise = normalise
        self._mask = mask  # an answer that echoes a secret is stored masked
        self.ttl = ttl_seconds
        self._warn = warn
        self._db: sqlite3.Connection | None = None
        self.hits = 0
        self.stores = 0
        self.damaged = 0  # entries that could not be read back: misses
        self.failure: str | None = None  # why the cache stopped storing in the middle of the run
        self.unkept = 0  # answers put after (or in the transaction of) that failure: not kept
        self._uncommitted = 0
        self.has_kept = False  # kept entries from an earlier run, found at open: only then are they looked up
        self.limits: tuple[str, ...] = ()  # the caps answers ended on their own under, in the file at open
        self._noted: set[str] = set()  # the caps written (or found at open)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = opener(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; cheap commits
            db.execute(_SCHEMA)
            db.execute(_KEPT)
            db.execute(_LIMITS)
            db.execute("SELECT count(*) FROM answers LIMIT 1").fetchone()
            self.has_kept = db.execute("SELECT 1 FROM kept LIMIT 1").fetchone() is not None
            self.limits = tuple(str(spec) for (spec,) in db.execute("SELECT spec FROM limits LIMIT ?", (MAX_LIMITS,)))
            self._noted.update(self.limits)
            self._db = db
        except (sqlite3.Error, OSError) as exc:
            self._disable(f"cannot open the answer cache at {path} ({exc}); running without a cache")

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _disable(self, message: str) -> None:
        self._warn(message)
        if self._db is not None:  # it opened: the run is buying answers that a repeated run pays for again
            self.failure = message
            self.unkept += self._uncommitted
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def _one(self, query: str, key: str) -> Any:
        """The row ``query`` finds for ``key`` (None: none, or the cache failed and is off now)."""
        if self._db is None:
            return None
        try:
            return self._db.execute(query, (key,)).fetchone()
        except sqlite3.Error as exc:
            self._disable(f"the answer cache at {self.path} failed ({exc}); running without a cache")
            return None

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._one("SELECT reply, created FROM answers WHERE key = ?", key)
        if row is None:
            return None
        if self.ttl is not None and time.time() - row[1] > self.ttl:
            return None
        try:
            reply = self._normalise(_stored_reply(row[0]))  # judged like a fresh reply
        except (ValueError, TypeError, BadReply) as exc:
            self.damaged += 1
            self._warn(f"the answer cache at {self.path} holds a damaged entry ({_reason(exc)}): "
                       "asking the endpoint again")
            return None
        self.hits += 1
        return reply

    def put(self, key: str, reply: dict[str, Any], masked: bool = False, raw: bytes | None = None) -> None:
        """Store an answer in the open transaction; :meth:`commit` makes it durable. ``masked``: the caller
        already masked the reply with the run's redactor (the enricher does, once for cache and record); ``raw``:
        that masked reply's JSON when the redactor made it (:meth:`~connector.secrets.Redactor.masked_json`)."""
        if self._db is None:
            self.unkept += self.failure is not None
            return
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, reply, created) VALUES (?, ?, ?)",
                (key, raw if masked and raw is not None else orjson.dumps(reply if masked else self._mask(reply)),
                 time.time()),
            )
            self.stores += 1
            self._uncommitted += 1
        except sqlite3.Error as exc:
            self._uncommitted += 1
            self._disable(self._stopped(exc))

    def note_limit(self, spec: str) -> None:
        """Remember, with the answers, that some answer ended on its own under the cap ``spec`` (:func:`limit_of`):
        written once per distinct cap, in the open transaction."""
        if spec in self._noted or self._db is None or len(self._noted) >= MAX_LIMITS:
            return
        self._noted.add(spec)
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO limits (spec) VALUES (?)", (spec,))
        except sqlite3.Error as exc:
            self._disable(self._stopped(exc))

    def under_other_caps(self, dialect: Dialect, body: Mapping[str, Any],
                         key_of: Callable[[dict[str, Any]], str]) -> Iterator[str]:
        """The keys ``body`` had when asked under the other output-token caps the file knew at open (``key_of``:
        the run's answer key): the same request in every part but its cap."""
        free = dialect.without_output_limit(body)
        if self.has_kept:  # a file written by a35ee73 or before
            target = self.kept(key_of(free))
            if target is not None:
                yield target
        for spec in self.limits:
            other = {**free, **orjson.loads(spec)}
            if other != body and dialect.without_output_limit(other) == free:  # only the cap differs
                yield key_of(other)

    def kept(self, free_key: str) -> str | None:
        """The key of an answer that ended on its own for the request whose key without the cap is ``free_key``
        (a file written by a35ee73 or before); None without a lookup when the file had no kept entry at open."""
        if not self.has_kept:
            return None
        row = self._one("SELECT answer FROM kept WHERE key = ?", free_key)
        return None if row is None else str(row[0])

    def commit(self) -> None:
        """Make every stored answer durable. Called before each record is emitted: answers
        that completed together are committed together, one transaction for the burst
        instead of one per row (measured: ~38 us of CPU per row otherwise)."""
        if self._db is None or not self._db.in_transaction:
            return
        try:
            self._db.execute("COMMIT")
            self._uncommitted = 0
        except sqlite3.Error as exc:
            self._disable(self._stopped(exc))

    def _stopped(self, exc: sqlite3.Error) -> str:
        return (f"the answer cache at {self.path} stopped storing answers ({exc}): answers bought from now on "
                "are not kept, and a repeated run pays for them again; free space there or set cache.path")

    def trouble(self) -> str:
        """What went wrong with the cache during the run, for the summary ("" when nothing did)."""
        text = f"; damaged cache entries asked again: {self.damaged}" if self.damaged else ""
        if self.failure is not None:
            text += (f"; ANSWER CACHE STOPPED STORING: {self.unkept} answers bought in this run are not kept "
                     f"(a repeated run pays for them again): {self.failure}")
        return text

    def close(self) -> None:
        """Commit, close."""
        if self._db is not None:
            self.commit()
        if self._db is not None:
            self._db.close()
            self._db = None


def limit_of(dialect: Dialect, body: Mapping[str, Any]) -> str | None:
    """The part of ``body`` that sets its output-token cap, as canonical JSON (None: it sets none): the top-level
    items the dialect's :meth:`~connector.dialects.base.Dialect.without_output_limit` drops or changes
    (:meth:`~connector.dialects.base.Dialect.output_limit`, read without copying the body)."""
    if not dialect.max_output_tokens(body):  # none, or 0 (embeddings: no output)
        return None
    part = dialect.output_limit(body)
    return orjson.dumps(part, option=_CANONICAL, default=str).decode("utf-8") if part else None


def _stored_reply(raw: Any) -> dict[str, Any]:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise TypeError(f"a JSON {type(value).__name__}, not a reply object")
    return value


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, BadReply) else f"{type(exc).__name__}: {exc}"


class SingleFlight:
    """Identical requests in flight at once are sent once; the others share the answer."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.shared = 0

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, shared)``: shared is True when another caller's request answered."""
        pending = self._pending.get(key)
        if pending is not None:
            self.shared += 1
            return await asyncio.shield(pending), True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await call()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody may be waiting
            del future  # it holds exc, whose traceback holds this frame: a cycle only the collector frees
            raise
        finally:
            del self._pending[key]
        future.set_result(result)
        return result, False
