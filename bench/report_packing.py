"""The report's "Several rows per request" sections (bench/packing.py): the mock's and llama.cpp's tables."""

from __future__ import annotations

from typing import Any

from bench.report_fmt import num, table

_HEAD = ["rows_per_request", "requests", "prompt tokens", "completion tokens", "wall s", "requests ×",
         "tokens ×", "wall ×"]


def _size(r: dict[str, Any]) -> str:
    return f"auto (chose {r['chosen']})" if r["n"] == "auto" and r.get("chosen") else str(r["n"])


def packing_table(d: dict[str, Any]) -> str:
    """Each size's figures per 1,000 rows, and their ratio to one row a request (the first size)."""
    results = d["results"]
    base = results[0]
    per = 1000 / d["rows"]

    def tokens(r: dict[str, Any]) -> int:
        return int(r["prompt_tokens"] + r["completion_tokens"])

    rows = [[_size(r), num(r["requests"] * per), num(r["prompt_tokens"] * per), num(r["completion_tokens"] * per),
             num(r["wall_s"] * per, 1), num(r["requests"] / base["requests"], 3),
             num(tokens(r) / tokens(base), 3), num(r["wall_s"] / base["wall_s"], 3)]
            for r in results]
    return table(_HEAD, rows)


def _turned_off(d: dict[str, Any]) -> str:
    """What the connector said where it stopped packing mid-run (its WARN), size by size."""
    said = [f"- rows_per_request {_size(r)}: \"{r['off']}\"" for r in d["results"] if r.get("off")]
    return "\n\nPacking turned off during the run (the connector's WARN):\n\n" + "\n".join(said) if said else ""


def _load(d: dict[str, Any]) -> str:
    before, after = d.get("uptime") or ["?", "?"]
    return f"`uptime` before: `{before}`; after: `{after}`."


def packing_section(result: dict[str, Any]) -> str:
    d = result["data"]
    return (f"{d['rows']:,} short rows (the bench's synthetic reviews, ~200 characters, a ~900-character "
            f"labelling instruction as the system prompt), {d['concurrency']} in flight, `max_tokens` "
            f"{d['max_tokens']} a row, answer cache off, one fresh `read` process per size, against bench/packmock.py "
            "(100 ms an answer plus 5 ms a completion token, tokens counted as characters / 4). Figures per "
            "1,000 rows; × is the ratio to one row a request. Every run checked: each row's answer is the one "
            "the mock gives its own text, every row `ok`, the rows' tokens add up to the mock's count. "
            f"\"auto\" here has no `context_window`: 8,192 tokens assumed. {_load(d)}\n\n" + packing_table(d)
            + _turned_off(d))


def packing_live_section(result: dict[str, Any]) -> str:
    d = result["data"]
    if "skipped" in d:
        return f"Skipped: {d['skipped']}"
    truncated = ", ".join(f"{_size(r)}: {r['truncated']}" for r in d["results"])
    return (f"{d['rows']:,} rows of the same kind against llama.cpp's llama-server with SmolLM2-135M "
            f"(scripts/local_llm.sh, {d['threads']} thread, {d['concurrency']} slots and {d['concurrency']} in "
            f"flight), `max_tokens` {d['max_tokens']} a row, `context_window` {d['context_window']:,} (the "
            "script's 8,192-token context shared by its slots: packs are cut to fit it, so 50 asked packs "
            "what fits). Figures scaled to 1,000 rows. Requests are the server's own count (its log), "
            "including the rows asked again alone when the small model broke a packed answer; tokens are the "
            "records' sums (each request's usage shared out to its rows). The answers are the model's own: "
            f"only checked that no row failed (rows `truncated` at 16 tokens: {truncated}). {_load(d)}\n\n"
            + packing_table(d) + _turned_off(d))
