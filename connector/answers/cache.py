"""Answers already paid for: an on-disk cache, and one request per distinct body per run.

The key is a SHA-256 over a canonical JSON of (endpoint URL, dialect, request
body); the body includes the model and every parameter, so a different prompt,
model or temperature is a different key. An answer is stored (and committed)
before its record is emitted: a resumed or repeated run pays nothing for it.

The store is sqlite in WAL mode. Anything wrong with the file (corrupt, locked,
read-only, a directory in the way) degrades to "no cache" with a warning, never
a crash: the cache saves money, it must not cost a sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from connector.config.sections import CacheConfig

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    reply BLOB NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "source-openai-compatible" / "answers.sqlite"


def cache_path(cache: CacheConfig) -> Path:
    """The cache file the config names, or the default one."""
    return Path(cache.path).expanduser() if cache.path else default_cache_path()


def open_cache(cache: CacheConfig, warn: Callable[[str], None]) -> AnswerCache | None:
    """The answer cache the config asks for (None when it is off)."""
    if not cache.enabled:
        return None
    return AnswerCache(cache_path(cache), cache.ttl_seconds, warn=warn)


def cache_key(url: str, dialect: str, body: Any) -> str:
    canonical = orjson.dumps([url, dialect, body], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                             default=str)
    return hashlib.sha256(canonical).hexdigest()


class AnswerCache:
    """sqlite-backed answers with an optional time to live. Thread-unsafe by design: one event loop."""

    def __init__(self, path: Path, ttl_seconds: float | None = None, warn: Callable[[str], None] = print) -> None:
        self.path = path
        self.ttl = ttl_seconds
        self._warn = warn
        self._db: sqlite3.Connection | None = None
        self.hits = 0
        self.stores = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=1.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; cheap commits
            db.execute(_SCHEMA)
            db.execute("SELECT count(*) FROM answers LIMIT 1").fetchone()
            self._db = db
        except (sqlite3.Error, OSError) as exc:
            self._disable(f"cannot open the answer cache at {path} ({exc}); running without a cache")

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _disable(self, message: str) -> None:
        self._warn(message)
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT reply, created FROM answers WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._disable(f"the answer cache at {self.path} failed ({exc}); running without a cache")
            return None
        if row is None:
            return None
        if self.ttl is not None and time.time() - row[1] > self.ttl:
            return None
        self.hits += 1
        reply: dict[str, Any] = orjson.loads(row[0])
        return reply

    def put(self, key: str, reply: dict[str, Any]) -> None:
        """Store an answer in the open transaction; :meth:`commit` makes it durable."""
        if self._db is None:
            return
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, reply, created) VALUES (?, ?, ?)",
                (key, orjson.dumps(reply), time.time()),
            )
            self.stores += 1
        except sqlite3.Error as exc:
            self._disable(f"the answer cache at {self.path} failed ({exc}); running without a cache")

    def commit(self) -> None:
        """Make every stored answer durable. Called before each record is emitted: answers
        that completed together are committed together, one transaction for the burst
        instead of one per row (measured: ~38 us of CPU per row otherwise)."""
        if self._db is None or not self._db.in_transaction:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._disable(f"the answer cache at {self.path} failed ({exc}); running without a cache")

    def close(self) -> None:
        if self._db is not None:
            self.commit()
        if self._db is not None:
            self._db.close()
            self._db = None


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
            raise
        finally:
            del self._pending[key]
        future.set_result(result)
        return result, False
