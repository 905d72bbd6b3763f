#!/usr/bin/env python3
"""Print the RECORDs of an Airbyte message stream as a readable table (stdlib only).

    python scripts/show_records.py out/demo_messages.jsonl
    python -m connector read ... | python scripts/show_records.py -
    python scripts/show_records.py messages.jsonl --columns review_id,answer,_status --limit 20

After the table it prints counts by ``_status``, the run's LOG summary line and any TRACE
error, so one command shows what a sync produced. When the records have a 1-5 star ``rating``
and a ``sentiment`` label (the demo's), it also prints how often the label agrees with the
stars (1-2 negative, 3 neutral, 4-5 positive), beside what always giving the commonest
expected label would score. ``status`` is an alias of ``_status``; a
row that is not ok shows its ``_error`` in place of its empty output column.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

DEFAULT_COLUMNS = "review_id,rating,sentiment,topic,status"
ALIASES = {"status": "_status", "row": "_row_number", "error": "_error"}


def messages(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            print(f"(line {number} is not JSON, skipped)", file=sys.stderr)
            continue
        if isinstance(message, dict):
            yield message


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return " ".join(text.split())


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def widths_for(headers: list[str], rows: list[list[str]], total: int) -> list[int]:
    """Natural widths, shrinking the widest columns until the table fits ``total``."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    budget = total - 2 * (len(headers) - 1)
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=widths.__getitem__)
        if widths[widest] <= max(len(headers[widest]), 6):
            break
        widths[widest] -= 1
    return widths


def render(records: list[dict[str, Any]], columns: list[str], width: int, out: TextIO) -> None:
    rows = []
    for record in records:
        row = [cell(record.get(ALIASES.get(c, c))) for c in columns]
        if record.get("_status") != "ok" and record.get("_error"):
            # Put the reason where the missing answer would be.
            empty = [i for i, c in enumerate(columns) if not row[i] and c not in ALIASES]
            if empty:
                row[empty[-1]] = "! " + cell(record["_error"])
        rows.append(row)
    widths = widths_for(columns, rows, width)
    line = "  ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(clip(v, w).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


def expected_sentiment(rating: Any) -> str | None:
    """The label a 1-5 star rating stands for: 1-2 negative, 3 neutral, 4-5 positive."""
    try:
        stars = round(float(rating))
    except (TypeError, ValueError):
        return None
    if not 1 <= stars <= 5:
        return None
    return "negative" if stars <= 2 else "neutral" if stars == 3 else "positive"


def agreement(records: list[dict[str, Any]]) -> tuple[int, int, str, int] | None:
    """(agreeing, rated rows, commonest expected label, its count), or None without ratings.

    A row without a label (it failed) counts as disagreeing: it is a row the run got wrong.
    """
    rated: list[tuple[str, Any]] = []
    for record in records:
        want = expected_sentiment(record.get("rating"))
        if want is not None:
            rated.append((want, record.get("sentiment")))
    if not rated:
        return None
    agreeing = sum(1 for want, got in rated if want == got)
    by_label: dict[str, int] = {}
    for want, _ in rated:
        by_label[want] = by_label.get(want, 0) + 1
    commonest = max(by_label, key=by_label.__getitem__)
    return agreeing, len(rated), commonest, by_label[commonest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="file of Airbyte messages, one JSON per line ('-' = stdin)")
    parser.add_argument("--columns", default=DEFAULT_COLUMNS, help=f"comma list (default {DEFAULT_COLUMNS})")
    parser.add_argument("--limit", type=int, default=0, help="show at most this many rows (0 = all)")
    parser.add_argument("--width", type=int, default=0, help="table width (default: terminal, min 100)")
    args = parser.parse_args(argv)

    source = sys.stdin if args.path == "-" else open(args.path, encoding="utf-8")  # noqa: SIM115
    with source:
        all_messages = list(messages(source))
    records = [m["record"]["data"] for m in all_messages if m.get("type") == "RECORD"]
    logs = [m["log"]["message"] for m in all_messages if m.get("type") == "LOG"]
    errors = [m["trace"]["error"]["message"] for m in all_messages
              if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"]

    shown = records[: args.limit] if args.limit > 0 else records
    width = args.width or max(shutil.get_terminal_size((160, 20)).columns, 100)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    render(shown, columns, width, sys.stdout)
    if len(shown) < len(records):
        print(f"... {len(records) - len(shown)} more rows", file=sys.stdout)

    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.get("_status"))] = statuses.get(str(r.get("_status")), 0) + 1
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items(), key=lambda kv: -kv[1]))
    print(f"\n{len(records)} records: {by_status or 'none'}")
    counts: dict[str, int] = {}
    for r in records:
        if r.get("sentiment"):
            counts[str(r["sentiment"])] = counts.get(str(r["sentiment"]), 0) + 1
    if counts:
        print("sentiment: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        agreed = agreement(records)
        if agreed:
            agreeing, rated, commonest, baseline = agreed
            print(f"agreement with the star rating: {100 * agreeing / rated:.0f}% ({agreeing} of {rated} rows; "
                  f"1-2 stars = negative, 3 = neutral, 4-5 = positive); answering \"{commonest}\" "
                  f"for every row would score {100 * baseline / rated:.0f}%")
    # The run's summary (progress lines are left out); the last LOG when none looks like one.
    summaries = [m for m in logs if " rows in " in m] or logs[-1:]
    for message in summaries:
        print(f"LOG: {message}")
    for message in errors:
        print(f"TRACE ERROR: {message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
