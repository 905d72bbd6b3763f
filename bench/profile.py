"""Where the connector's CPU goes per row: py-spy (sampling, from outside) and cProfile.

Both profile the real CLI process at 512 in flight against the 50 ms mock. py-spy runs on
the server core and samples the connector on the client core without slowing it much;
its shares are turned into µs per row with an unprofiled run's CPU per row. cProfile adds
call counts per row (and its own overhead: its absolute times are inflated).
"""

from __future__ import annotations

import collections
import pstats
import re
from pathlib import Path
from typing import Any

from bench.procs import SERVER_CORE, pinned
from bench.stages import ROOT, Context, run_connector

RESULTS = ROOT / "bench" / "results"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _where(file: str) -> str:
    """A short label for a source file: ``aiohttp/client.py``, ``connector/requests/templates.py``, ``stdlib/inspect``.

    py-spy already gives paths relative to sys.path; cProfile gives absolute ones.
    """
    if not file.startswith("/"):
        return file
    parts = Path(file).parts
    for anchor in ("site-packages", "connector"):
        if anchor in parts:
            i = parts.index(anchor)
            rest = parts[i + 1:] if anchor == "site-packages" else parts[i:]
            return "/".join(rest[:2]) if rest else file
    if "lib" in parts and any(p.startswith("python3") for p in parts):
        return "stdlib/" + Path(file).stem
    return Path(file).name


def _area(where: str) -> str:
    """The package a frame belongs to; the connector's own code by module."""
    if where.startswith("connector/"):
        return where
    if where.startswith("<attrs generated"):
        return "attrs-generated (aiohttp tracing)" if "aiohttp" in where else "attrs-generated"
    head = where.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def _pyspy(ctx: Context, rows: int, out_raw: Path) -> dict[str, Any] | None:
    pyspy = ctx.bench_python.parent / "py-spy"
    if not pyspy.exists():
        return None
    outer = pinned(SERVER_CORE, [str(pyspy), "record", "--rate", "250", "--format", "raw", "--nonblocking",
                                 "-o", str(out_raw), "--"])
    try:
        run_connector(ctx, rows, ctx.base_url(50), 512, outer=outer)
    except Exception as exc:  # py-spy can lack ptrace rights in some sandboxes: say so, go on
        ctx.log(f"  py-spy failed ({str(exc).splitlines()[0]}); cProfile only")
        return None
    if not out_raw.exists():
        return None
    self_by: collections.Counter[str] = collections.Counter()
    incl_by: collections.Counter[str] = collections.Counter()
    area: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out_raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        names = []
        for frame in frames:
            m = _FRAME.match(frame)
            names.append((m.group("func"), _where(m.group("file"))) if m else (frame, "?"))
        if not names:
            continue
        func, where = names[-1]
        self_by[f"{where}:{func}"] += count
        area[_area(where)] += count
        for name in {f"{w}:{f}" for f, w in names}:
            incl_by[name] += count
    return {"samples": total, "self": self_by.most_common(25), "inclusive": incl_by.most_common(40),
            "areas": area.most_common(20), "raw": str(out_raw.relative_to(ROOT))}


def _cprofile(ctx: Context, rows: int, out_prof: Path) -> dict[str, Any]:
    python = ROOT / ".venv" / "bin" / "python"
    # ``-m cProfile -m connector`` runs the same CLI entry point inside the profiler.
    program = [str(python), "-m", "cProfile", "-o", str(out_prof), "-m", "connector"]
    r = run_connector(ctx, rows, ctx.base_url(50), 512, program=program)
    stats = pstats.Stats(str(out_prof))
    entries = []
    for (file, _line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append({"where": f"{_where(file)}:{func}", "calls_per_row": ncalls / rows,
                        "self_us_row": tottime * 1e6 / rows, "cum_us_row": cumtime * 1e6 / rows})
    entries.sort(key=lambda e: e["self_us_row"], reverse=True)
    total_self = sum(e["self_us_row"] for e in entries)
    return {"cpu_us_row_profiled": r["cpu_us_row"], "total_self_us_row": total_self, "top": entries[:25]}


def stage_profile(ctx: Context) -> dict[str, Any]:
    rows = max(ctx.rows, 20_000)
    RESULTS.mkdir(parents=True, exist_ok=True)
    ctx.log(f"  unprofiled reference run, {rows:,} rows, 512 in flight, 50 ms")
    ref = run_connector(ctx, rows, ctx.base_url(50), 512)
    ctx.log(f"    {ref['cpu_us_row']:.0f} µs CPU per row, {ref['rows_per_s']:.0f} rows/s")
    ctx.log("  py-spy record of the same run")
    spy = _pyspy(ctx, rows, RESULTS / "profile_connector_512.pyspy.txt")
    ctx.log("  cProfile of the same run")
    cprof = _cprofile(ctx, rows, ctx.work / "connector.prof")
    return {"rows": rows, "concurrency": 512, "latency_ms": 50, "reference": ref, "pyspy": spy, "cprofile": cprof}
