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


def median(cell: dict[str, Any], client: str) -> dict[str, Any] | None:
    """A client's median figures in a matrix cell; None when it was not run there or no run of it finished."""
    entry = cell["clients"].get(client)
    return entry["median"] if entry else None


def outcome(cell: dict[str, Any], client: str) -> str:
    """How a client's run in the cell ended when it did not finish ("hung after N s", "failed: ..."), or ""."""
    entry = cell["clients"].get(client) or {}
    return str(entry.get("outcome") or "")
