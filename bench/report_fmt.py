"""Number and table formatting shared by the report's modules (bench/report.py writes the page)."""

from __future__ import annotations

from typing import Any


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def provenance(result: dict[str, Any], header: dict[str, Any]) -> str:
    if result.get("date") == header.get("date") and result.get("command") == header.get("command"):
        return ""
    commit = (result.get("machine") or {}).get("commit", "unknown")
    return f"_From another run: {result.get('date')}, `{result.get('command')}`, connector {commit}._\n\n"


def matrix_cell(matrix: dict[str, Any] | None, latency: int, conc: int) -> dict[str, Any] | None:
    for cell in (matrix or {}).get("data", {}).get("cells", []):
        if cell["latency_ms"] == latency and cell["concurrency"] == conc:
            return cell
    return None
