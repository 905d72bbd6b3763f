"""Row-count estimates for line-based files (CSV, JSONL), from their sizes.

Counting the rows of a large CSV means reading all of it; the progress display
only needs a good guess. Small inputs (up to :data:`EXACT_BYTES` in all) have
their line breaks counted, which is exact for JSONL and for CSV without line
breaks inside quoted cells; larger ones are sampled: the first
:data:`SAMPLE_BYTES` of each of up to :data:`SAMPLE_FILES` files give the mean
bytes per line, and the total size divided by it is the estimate. Either way
the result is labelled an estimate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

EXACT_BYTES = 32 * 1024 * 1024
SAMPLE_BYTES = 1024 * 1024
SAMPLE_FILES = 8
_CHUNK = 1024 * 1024


def _count_lines(path: str) -> int:
    """Lines in a file; a last line without a break counts."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _sample(path: str, limit: int) -> tuple[int, int]:
    """(whole lines, their bytes) in the first ``limit`` bytes: a line cut by the limit is not counted."""
    with open(path, "rb") as f:
        data = f.read(limit)
    whole = data.rfind(b"\n") + 1
    return data.count(b"\n", 0, whole), whole


def estimate_line_rows(files: Sequence[str], header_lines: int = 0) -> int | None:
    """Estimated data rows in these files (``header_lines`` per file not counted); None if unreadable."""
    try:
        sizes = [os.path.getsize(f) for f in files]
    except OSError:
        return None
    total_bytes = sum(sizes)
    if not total_bytes:
        return 0
    try:
        if total_bytes <= EXACT_BYTES:
            lines = sum(_count_lines(f) for f in files)
            return max(lines - header_lines * len(files), 0)
        nonempty = [f for f, size in zip(files, sizes, strict=True) if size][:SAMPLE_FILES]
        sampled = [_sample(f, SAMPLE_BYTES) for f in nonempty]
    except OSError:
        return None
    lines = sum(n for n, _ in sampled)
    read = sum(b for _, b in sampled)
    if not lines or not read:
        return None
    return max(int(total_bytes / (read / lines)) - header_lines * len(files), 0)
