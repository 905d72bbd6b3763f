"""How many connections this process can hold open at once.

Each request in flight holds a socket, and a socket is an open file: with
``concurrency: 4096`` under the common default ``ulimit -n 1024``, requests past
the limit failed with "Too many open files" and their rows were recorded as
failed. At the start of a read the soft open-files limit is raised to the hard
limit (allowed without privileges), and the concurrency is lowered to what fits
below it, with a WARN saying so. What still runs out later (another process
holding files, ENOBUFS) is retried as backpressure by the client.
"""

from __future__ import annotations

from connector.callbacks import Notice

# Files a read needs besides its connections: stdio, the input file(s), the answer
# cache (SQLite and its journal), DNS, the event loop's own descriptors, pyarrow.
RESERVED_FILES = 64


def open_files_limit() -> int | None:
    """The soft open-files limit after raising it to the hard limit; None when unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not a Unix: no such limit to manage
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. macOS refuses an unlimited hard limit
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def connections_that_fit(wanted: int, notice: Notice, limit: int | None = None) -> int:
    """``wanted``, or fewer when the open-files limit (``limit``, else the process's) holds fewer."""
    limit = open_files_limit() if limit is None else limit
    if limit is None:
        return wanted
    room = max(1, limit - RESERVED_FILES)
    if wanted <= room:
        return wanted
    notice("WARN", f"concurrency {wanted} needs up to {wanted} open connections, but this process may open "
                   f"only {limit} files (ulimit -n, already raised to the hard limit): running {room} requests "
                   "at once. Raise the open-files limit (ulimit -n, or the container's nofile) to run more.")
    return room
