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

Beside the answers, ``kept`` maps the key of a request *without* its output-token cap to the
answer that ended on its own under some cap (:meth:`AnswerCache.keep`): raising ``max_tokens``
after some answers were cut off then asks again only those
(:meth:`connector.pipeline.enrich.RowEnricher.cached_answer` decides when such an answer fits).
Only a run that found ``kept`` entries when it opened the file looks them up
(:attr:`AnswerCache.has_kept`): the entries a run adds itself were made by its own requests, under its
own caps, so a first run pays no lookup. ``kept`` entries are written in batches
(:data:`KEPT_BATCH`, and at :meth:`AnswerCache.close`) inside the answers' transaction; a batch lost to
a crash only costs asking again after a raised cap, never a wrong answer and never an answer bought
twice for the same request: the answers themselves are committed before their records, as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from connector.config.sections import CacheConfig
from connector.dialects.replies import normalise as normalise_text
from connector.errors import BadReply

Normalise = Callable[[dict[str, Any]], dict[str, Any]]


def _as_is(reply: dict[str, Any]) -> dict[str, Any]:
    return reply

T = TypeVar("T")

# Kept entries buffered before one executemany, instead of an INSERT for every answer. Their keys are random, so a
# batch dirties pages all over the kept table's index, each written to the WAL at the next commit: at 256 a 5,000-row
# read wrote ~0.4 pages a row more than at 4,096 (strace: pwrite64 8,148 -> 6,078, fdatasync 17 -> 14).
KEPT_BATCH = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    reply BLOB NOT NULL,
    created REAL NOT NULL
)
"""
# An answer that ended on its own, by the key of its request without the output-token cap: the request with
# a larger cap (raised after other rows were cut off) finds it instead of buying it again.
_KEPT = """
CREATE TABLE IF NOT EXISTS kept (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL
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
        self._keeping: dict[str, str] = {}  # kept entries not written yet (free key -> answer key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = opener(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; cheap commits
            db.execute(_SCHEMA)
            db.execute(_KEPT)
            db.execute("SELECT count(*) FROM answers LIMIT 1").fetchone()
            self.has_kept = db.execute("SELECT 1 FROM kept LIMIT 1").fetchone() is not None
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

    def put(self, key: str, reply: dict[str, Any], masked: bool = False) -> None:
        """Store an answer in the open transaction; :meth:`commit` makes it durable. ``masked``: the caller
        already masked the reply with the run's redactor (the enricher does, once for cache and record)."""
        if self._db is None:
            self.unkept += self.failure is not None
            return
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, reply, created) VALUES (?, ?, ?)",
                (key, orjson.dumps(reply if masked else self._mask(reply)), time.time()),
            )
            self.stores += 1
            self._uncommitted += 1
        except sqlite3.Error as exc:
            self._uncommitted += 1
            self._disable(self._stopped(exc))

    def keep(self, free_key: str, key: str) -> None:
        """Remember that the answer stored under ``key`` ended on its own, by ``free_key`` (its request's key
        without the output-token cap): buffered, written with the answers every :data:`KEPT_BATCH` entries
        and at :meth:`close`."""
        if self._db is None:
            return
        self._keeping[free_key] = key
        if len(self._keeping) >= KEPT_BATCH:
            self._write_kept()

    def _write_kept(self) -> None:
        """The buffered kept entries, in the open transaction (one is begun when none is)."""
        if self._db is None or not self._keeping:
            return
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO kept (key, answer) VALUES (?, ?)", self._keeping.items())
            self._keeping.clear()
        except sqlite3.Error as exc:
            self._disable(self._stopped(exc))

    def kept(self, free_key: str) -> str | None:
        """The key of an answer that ended on its own for the request whose key without the cap is ``free_key``;
        None without a lookup when the file had no kept entry at open (:attr:`has_kept`)."""
        if not self.has_kept:
            return None
        buffered = self._keeping.get(free_key)
        if buffered is not None:
            return buffered
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
        """Write the buffered kept entries, commit, close."""
        if self._db is not None:
            self._write_kept()
            self.commit()
        if self._db is not None:
            self._db.close()
            self._db = None


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
