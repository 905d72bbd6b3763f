"""The throughput tables: the mock's capacity, the matrix of clients, the concurrency sweep."""

from __future__ import annotations

from typing import Any

from bench.report_fmt import median, num, outcome, ratio, table

PLOT_NAME = "throughput_vs_concurrency.png"


CLIENT_NAMES = {"connector": "**connector**", "aiohttp": "raw aiohttp loop", "streams": "raw asyncio streams loop",
                "curator": "Curator (`curator.LLM`)", "openai": "openai AsyncOpenAI", "litellm": "litellm.acompletion"}
MATRIX_CLIENTS = ("connector", "baseline", "aiohttp", "streams", "curator", "openai", "litellm")


def _client_row(cell: dict[str, Any], client: str, name: str) -> list[str]:
    lead = [f"{cell['latency_ms']} ms", str(cell["concurrency"]), name]
    m, raw, ended = median(cell, client), median(cell, "aiohttp") or {}, outcome(cell, client)
    if m is None:  # no run finished: the one that was tried says why
        return [*lead, ended or "not run", *["–"] * 8]
    rate = num(m["rows_per_s"]) + (f" (then {ended}: median of the {m['n']} run(s) before)" if ended else "")
    return [*lead, rate, num(ratio(m["rows_per_s"], raw.get("rows_per_s")), 2), num(m["rows_per_s_e2e"]),
            num(ratio(m["rows_per_s_e2e"], raw.get("rows_per_s_e2e")), 2), num(m["cpu_us_row"]),
            num(m["loop_cpu_us_row"]), num(m["maxrss_mb"]), num(m["mock_cpu_pct"]), num(m.get("other_load_pct"))]


def _summary_table(cells: list[dict[str, Any]]) -> str:
    """Issue 25's shape: one line per in-flight count at 50 ms, each client as a share of the raw loop."""
    peers = [c for c in ("baseline", "streams", "curator", "litellm", "openai")
             if any(c in x["clients"] for x in cells)]
    head = ["in flight", "raw aiohttp rows/s", "connector", *[{"baseline": "connector at the baseline",
            "streams": "raw streams loop", "curator": "Curator", "litellm": "litellm", "openai": "AsyncOpenAI"}[c]
            for c in peers]]
    rows = []
    for cell in (c for c in cells if c["latency_ms"] == 50):
        raw = median(cell, "aiohttp") or {}

        def share(client: str, cell: dict[str, Any] = cell, raw: dict[str, Any] = raw) -> str:
            m = median(cell, client)
            if m is None:
                return outcome(cell, client) or "not run"
            return f"{num(ratio(m['rows_per_s'], raw.get('rows_per_s')), 2)}×"

        con = median(cell, "connector") or {}
        rows.append([f"{cell['concurrency']:,}", num(raw.get("rows_per_s")) if raw else outcome(cell, "aiohttp"),
                     f"{num(con.get('rows_per_s'))} ({share('connector')}, {num(con.get('cpu_us_row'))} µs CPU/row)",
                     *[share(c) for c in peers]])
    return table(head, rows)


def matrix_section(result: dict[str, Any]) -> str:
    head = ["latency", "in flight", "client", "rows/s", "× raw", "rows/s end to end", "× raw e2e",
            "CPU µs/row", "CPU µs/row after start-up", "peak RSS MB", "mock CPU %", "others' CPU %"]
    names = {**CLIENT_NAMES, "baseline": f"connector at {result['data'].get('baseline_ref')}"}
    cells = result["data"]["cells"]
    rows = [_client_row(cell, client, names[client])
            for cell in cells for client in MATRIX_CLIENTS if client in cell["clients"]]
    n = cells[0]["clients"]["connector"]["median"]["n"]
    sizes = sorted({(c["latency_ms"], c["rows"]) for c in cells})
    per = ", ".join(f"{r:,} at {lat} ms" for lat, r in sizes)
    bound = result["data"].get("run_bound_s")
    bounded = (f" Each run was bounded ({', '.join(f'{num(s)} s' for s in bound.values())} for those row counts): "
               "a client past it was killed and its cell says \"hung after N s\"; a client that hung or failed "
               "in a cell was not run there again." if bound else "")
    return (f"Rows per run: {per}. Median of {n} run(s) per cell, clients in rotating order.{bounded} Peers run "
            "with their defaults: AsyncOpenAI on httpx (its pool keeps at most 100 idle connections, so above 100 "
            "in flight it keeps opening new ones), litellm through its OpenAI provider (`openai/<model>`, "
            "`api_base`), Curator (`bespokelabs-curator` in `.venv-curator`, offline: `TIKTOKEN_CACHE_DIR` at the "
            "cl100k_base file litellm bundles) with its OpenAI backend, `max_concurrent_requests` = in flight and "
            "its request and token limits set out of reach (the mock sends no rate-limit headers, and without "
            "them Curator holds 200 requests/min); its rows/s times its `llm(rows)` call, which includes its "
            "dataset preparation and its on-disk answer cache.\n\n"
            "At 50 ms, as a share of the raw loop's rows/s (steady state, whole process CPU):\n\n"
            + _summary_table(cells) + "\n\nEvery client and cell:\n\n" + table(head, rows))


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
