"""The throughput tables: the mock's capacity, the matrix of clients, the concurrency sweep."""

from __future__ import annotations

from typing import Any

from bench.report_fmt import num, ratio, table

PLOT_NAME = "throughput_vs_concurrency.png"


def matrix_section(result: dict[str, Any]) -> str:
    head = ["latency", "in flight", "client", "rows/s", "× raw", "rows/s end to end", "× raw e2e",
            "CPU µs/row", "CPU µs/row after start-up", "peak RSS MB", "mock CPU %", "others' CPU %"]
    rows = []
    for cell in result["data"]["cells"]:
        raw = cell["clients"]["aiohttp"]["median"]
        for client in ("connector", "baseline", "aiohttp", "openai", "litellm"):
            if client not in cell["clients"]:
                continue
            m = cell["clients"][client]["median"]
            name = {"connector": "**connector**", "baseline": f"connector at {result['data'].get('baseline_ref')}",
                    "aiohttp": "raw aiohttp loop", "openai": "openai AsyncOpenAI",
                    "litellm": "litellm.acompletion"}[client]
            rows.append([f"{cell['latency_ms']} ms", str(cell["concurrency"]), name, num(m["rows_per_s"]),
                         num(ratio(m["rows_per_s"], raw["rows_per_s"]), 2), num(m["rows_per_s_e2e"]),
                         num(ratio(m["rows_per_s_e2e"], raw["rows_per_s_e2e"]), 2), num(m["cpu_us_row"]),
                         num(m["loop_cpu_us_row"]), num(m["maxrss_mb"]), num(m["mock_cpu_pct"]),
                         num(m.get("other_load_pct"))])
    cells = result["data"]["cells"]
    n = next(iter(cells[0]["clients"].values()))["median"]["n"]
    sizes = sorted({(c["latency_ms"], c["rows"]) for c in cells})
    per = ", ".join(f"{r:,} at {lat} ms" for lat, r in sizes)
    return (f"Rows per run: {per}. Median of {n} run(s) per cell, clients in rotating order. Peers run with "
            "their defaults: AsyncOpenAI on httpx (its pool keeps at most 100 idle connections, so above 100 in "
            "flight it keeps opening new ones), litellm through its OpenAI provider (`openai/<model>`, "
            "`api_base`).\n\n" + table(head, rows))


def capacity_section(result: dict[str, Any]) -> str:
    d = result["data"]
    m = d["median"]
    return (
        f"A raw aiohttp loop (one core) at 512 in flight against the 0 ms mock: **{num(m['rows_per_s'])} req/s**, "
        f"while the mock ({d['mock_loop']} event loop, its own core) used {num(m['mock_cpu_pct'])} % of its core, "
        f"i.e. about {num(d['mock_us_per_request'], 1)} µs of CPU per request: it would serve about "
        f"**{num(d['mock_capacity_rps'])} req/s** on its core, "
        f"{num(ratio(d['mock_capacity_rps'], m['rows_per_s']), 1)}× what one client core can send. "
        "The `mock CPU %` column of every table shows it stayed far from its limit."
    )


def sweep_section(result: dict[str, Any]) -> str:
    head = ["in flight", "connector rows/s", "raw aiohttp rows/s", "ratio", "connector CPU µs/row",
            "raw CPU µs/row", "ideal rows/s (in flight / 50 ms)", "others' CPU %"]
    rows = []
    for p in result["data"]["points"]:
        rows.append([str(p["concurrency"]), num(p["connector"]["rows_per_s"]), num(p["aiohttp"]["rows_per_s"]),
                     num(ratio(p["connector"]["rows_per_s"], p["aiohttp"]["rows_per_s"]), 2),
                     num(p["connector"]["cpu_us_row"]), num(p["aiohttp"]["cpu_us_row"]),
                     num(p["concurrency"] / 0.05),
                     num(max(p["connector"].get("other_load_pct") or 0, p["aiohttp"].get("other_load_pct") or 0))])
    return table(head, rows) + f"\n\n![throughput vs concurrency]({PLOT_NAME})"
