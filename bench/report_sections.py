"""The report's other sections: the long read, start-up, the real endpoint, the profile, scans, rate limits, remote."""

from __future__ import annotations

from typing import Any

from bench.report_fmt import num, table


def million_section(result: dict[str, Any]) -> str:
    d = result["data"]
    r = d["result"]
    over = ", ".join(f"{m['rss_mb']:.0f} MB after {m['records']:,}" for m in d["rss_over_time"])
    return (
        f"{d['rows']:,} rows, {d['concurrency']} in flight, 0 ms latency, one run: "
        f"**{num(r['rows_per_s'])} rows/s** ({num(r['rows_per_s_e2e'])} end to end, {num(r['wall_s'], 1)} s), "
        f"**peak RSS {num(r['maxrss_mb'])} MB**, {num(r['cpu_us_row'])} µs CPU per row, mock at "
        f"{num(r['mock_cpu_pct'])} % of its core.\n\nRSS while reading (sampled every 2 s): {over or '–'}."
    )


def ratelimits_section(result: dict[str, Any]) -> str:
    from bench.ratelimits import render

    return render(result["data"])


def cold_section(result: dict[str, Any]) -> str:
    from bench.cold import render

    return render(result["data"])


def spec_section(result: dict[str, Any]) -> str:
    d = result["data"]
    return (f"`source-openai-compatible spec`, median of {d['runs']} runs: **{num(d['spec_ms'])} ms** wall "
            f"(all runs: {', '.join(num(x) for x in d['spec_ms_all'])}); a bare `python -c pass` of the same venv: "
            f"{num(d['bare_python_ms'])} ms.")


def scan_section(result: dict[str, Any]) -> str:
    d = result["data"]
    head = ["file", "size", "rows", "discover wall", "MB/s", "CPU", "peak RSS"]
    rows = [[kind.upper(), f"{num(f['bytes'] / (1 << 20))} MB", f"{f['rows']:,}", f"{num(f['wall_s'], 1)} s",
             num(f["mb_per_s"]), f"{num(f['cpu_s'], 1)} s", f"{num(f['maxrss_mb'])} MB"]
            for kind, f in d["files"].items()]
    return ("`source-openai-compatible discover` (not pinned: the CSV parser uses both cores) on files generated "
            "into the bench's temporary folder, each ending in a row only a whole-file scan sees (a JSONL key "
            "no earlier row has, a CSV id that is not an integer); the stage fails unless discover declared "
            "it. Discover reads every byte: the encoding check, then every cell's type.\n\n" + table(head, rows))


def remote_section(result: dict[str, Any]) -> str:
    from bench.remote import section

    return section(result)


def llm_section(result: dict[str, Any]) -> str:
    d = result["data"]
    if "skipped" in d:
        return f"Skipped: {d['skipped']}."
    head = ["client", "rows/s", "rows/s end to end", "CPU µs/row", "all runs rows/s"]
    rows = [[c, num(d[c]["rows_per_s"], 2), num(d[c]["rows_per_s_e2e"], 2), num(d[c]["cpu_us_row"]),
             ", ".join(num(x, 2) for x in d["spread"][c])] for c in ("connector", "aiohttp")]
    return (f"llama.cpp `llama-server` with SmolLM2-135M-Instruct (scripts/local_llm.sh, 1 thread on the server "
            f"core, {d['concurrency']} slots), {d['rows']} rows, max_tokens {d['max_tokens']}, temperature 0, "
            f"{d['concurrency']} in flight. Ratio connector / direct aiohttp: **{num(d['ratio'], 2)}×** "
            f"(end to end {num(d['ratio_e2e'], 2)}×).\n\n" + table(head, rows))


def profile_section(result: dict[str, Any]) -> str:
    d = result["data"]
    ref = d["reference"]
    scale = ref["cpu_us_row"]
    parts = [f"The connector process at {d['concurrency']} in flight, {d['latency_ms']} ms, {d['rows']:,} rows. "
             f"Unprofiled reference: {num(ref['cpu_us_row'])} µs CPU per row (whole process), "
             f"{num(ref['rows_per_s'])} rows/s."]
    spy = d.get("pyspy")
    if spy and spy["samples"]:
        total = spy["samples"]
        parts.append(f"\n**py-spy** ({total:,} on-CPU samples; µs/row = share × {num(scale)} µs; raw stacks in "
                     f"`{spy['raw']}`). By area (leaf frame's package):\n")
        parts.append(table(["area", "share", "µs/row"],
                            [[a, f"{c / total:.1%}", num(c / total * scale)] for a, c in spy["areas"][:12]]))
        parts.append("\nFunctions by own time (self), and the connector's functions by inclusive time:\n")
        parts.append(table(["function (self)", "share", "µs/row"],
                            [[f"`{f}`", f"{c / total:.1%}", num(c / total * scale)] for f, c in spy["self"][:15]]))
        parts.append("")
        incl = [(f, c) for f, c in spy["inclusive"] if f.startswith("connector/")][:15]
        parts.append(table(["connector function (inclusive)", "share", "µs/row"],
                            [[f"`{f}`", f"{c / total:.1%}", num(c / total * scale)] for f, c in incl]))
    else:
        parts.append("\npy-spy: not available here (see the run's log); cProfile only.")
    cp = d["cprofile"]
    parts.append(f"\n**cProfile** (deterministic; inflates per-call costs: {num(cp['cpu_us_row_profiled'])} µs/row "
                 "under the profiler). Top functions by own time, per row:\n")
    parts.append(table(["function", "calls/row", "self µs/row", "cumulative µs/row"],
                        [[f"`{e['where']}`", num(e["calls_per_row"], 1), num(e["self_us_row"], 1),
                          num(e["cum_us_row"], 1)] for e in cp["top"][:20]]))
    return "\n".join(parts)
