"""Shared fixtures: the fake OpenAI server, the real local llama.cpp server, CLI runners.

Every server a test starts is its own process, started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.endpoint.transport import HttpxTransport
from connector.errors import ConnectorError
from tests.servers import start_llama_cpp

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "connector"]
FAKE_KEY = "sk-fake-test-key-0123456789"
LIVE_KEY = "sk-live-test-key-0123456789"


@pytest.fixture(autouse=True)
def _private_answer_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every connector process it starts) gets its own answer cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@dataclass
class Server:
    base_url: str
    api_key: str
    pid: int
    log: Path | None = None  # the server's own log, where it has one (llama.cpp)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/_stats", timeout=5) as r:
            return dict(json.load(r))


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[Server]:
    """The fake OpenAI-compatible server (tests/fake_openai.py) on a free port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--api-key", FAKE_KEY,
         "--models", "fake-model,other-model"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), f"fake server did not start: {line!r}"
    try:
        yield Server(f"http://127.0.0.1:{int(line.split()[1])}/v1", FAKE_KEY, proc.pid)
    finally:
        _stop(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real llama.cpp server with SmolLM2-135M, installed and started by scripts/local_llm.sh."""
    started = start_llama_cpp(tmp_path_factory.mktemp("llm"), LIVE_KEY)
    try:
        yield Server(started.base_url, LIVE_KEY, started.pid, started.log)
    finally:
        _stop(started.pid)


@dataclass
class Run:
    code: int
    messages: list[dict[str, Any]]
    stdout: str
    stderr: str

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of_type("RECORD")]

    @property
    def trace_errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 600, *, process: bool = False,
            stdin: bytes = b"") -> Run:
    """Run the connector's command line and parse stdout.

    In-process by default, through ``connector.cli.run`` with its streams injected (the same code
    the console script runs, without a new interpreter per call); ``process=True`` runs it as a
    platform would, for what only a process shows (the entry point, exit codes of a real exit).
    """
    if process:
        proc = subprocess.run([*CLI, *args], cwd=cwd or ROOT, capture_output=True, timeout=timeout,
                              input=stdin)
        stdout, stderr, code = proc.stdout.decode(), proc.stderr.decode(), proc.returncode
    else:
        from connector import cli

        out, err = io.BytesIO(), io.StringIO()
        previous = Path.cwd()
        os.chdir(cwd or ROOT)
        try:
            with contextlib.redirect_stderr(err):  # argparse writes usage errors to sys.stderr
                try:
                    code = cli.run(args, out, err, io.BytesIO(stdin))
                except SystemExit as exc:  # argparse: bad usage
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(previous)
        stdout, stderr = out.getvalue().decode(), err.getvalue()
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return Run(code, messages, stdout, stderr)


def run_connector(args: list[str]) -> Run:
    """Run the connector in-process (``connector.cli.run``), stdin empty; parse stdout."""
    import io

    from connector import cli

    out, err = io.BytesIO(), io.StringIO()
    code = cli.run(args, out, err, io.BytesIO())
    stdout = out.getvalue().decode()
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return Run(code, messages, stdout, err.getvalue())


def run_command(workdir: Path, name: str, command: str, config: dict[str, Any], timeout: float = 300) -> Run:
    """``check`` or ``read`` (with the default catalog) with ``config`` written to ``workdir/<name>.json``."""
    config_path = workdir / f"{name}.json"
    config_path.write_text(json.dumps(config))
    args = [command, "--config", str(config_path)]
    if command == "read":
        catalog_path = workdir / "catalog.json"
        catalog_path.write_text(json.dumps(catalog_for()))
        args += ["--catalog", str(catalog_path)]
    return run_cli(args, timeout=timeout)


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], str]:
    def write(name: str, value: Any) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(value))
        return str(path)
    return write


def sample_reviews(target: Path, rows: int) -> Path:
    """The first ``rows`` rows of sample_configs/product_reviews.csv as their own CSV file
    (through the csv module: one review has a newline inside its quotes)."""
    import csv
    import itertools

    with (ROOT / "sample_configs" / "product_reviews.csv").open(newline="", encoding="utf-8") as src, \
            target.open("w", newline="", encoding="utf-8") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        writer.writerows(itertools.islice(reader, rows))
    return target


def catalog_for(stream: str = "enriched_rows", sync_mode: str = "full_refresh") -> dict[str, Any]:
    return {"streams": [{"stream": {"name": stream, "json_schema": {},
                                    "supported_sync_modes": ["full_refresh", "incremental"]},
                         "sync_mode": sync_mode, "destination_sync_mode": "append"}]}


def progress_of(stream_state: dict[str, Any]) -> dict[str, Any]:
    """A stream state without its fingerprints (``state_version``, ``input``, ``request``): what it says is done."""
    return {key: value for key, value in stream_state.items() if key not in ("state_version", "input", "request")}


def mock_transport(handler: Callable[[httpx.Request], httpx.Response]) -> Callable[[Any], HttpxTransport]:
    """A transport factory for commands.*: every request goes to ``handler``."""
    return lambda _limits: HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(handler)))


def client_for(config: Any, transport: Any, dialect: Any = None, **options: Any) -> Any:
    """An EndpointClient for a validated config, as the run's preparation builds one (without its limiter)."""
    from connector.config.parts import parts_of
    from connector.endpoint.client import EndpointClient

    return EndpointClient(parts_of(config).client, transport, dialect or dialect_of(config), **options)


def dialect_of(config: Any) -> Any:
    """The dialect of a validated config, as the run's preparation builds it (from the config's request part)."""
    from connector.config.parts import parts_of
    from connector.dialects import dialect_for

    return dialect_for(parts_of(config).request)


def enricher_for(config: Any, transport: Any, cache: Any = None) -> Any:
    """A RowEnricher for a validated config over ``transport``, as the run's preparation builds one."""
    from connector.answers.extra_columns import ExtraOutputs
    from connector.answers.extract import ResponseExtractor
    from connector.config.parts import parts_of
    from connector.pipeline.enrich import RowEnricher
    from connector.secrets import Redactor, requester_identity

    parts, client = parts_of(config), client_for(config, transport)
    extractor = ResponseExtractor(parts.output.response_template, ExtraOutputs.from_config(parts.output))
    template = template_for(config, client.dialect.conversation_key)
    return RowEnricher(parts.rows, client, template, extractor, Redactor(), cache,
                       requester=requester_identity(parts.request))


def template_for(config: Any, conversation_key: str = "messages") -> Any:
    """The request template of a validated config, as the run's preparation builds it."""
    from connector.config.parts import parts_of
    from connector.requests.templates import RequestTemplate

    return RequestTemplate.from_config(parts_of(config).request, conversation_key)


def read_through(config: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response],
                 ) -> tuple[list[dict[str, Any]], ConnectorError | None]:
    """Every message of an in-process ``read`` through ``handler``, and the error that ended it (if one did)."""
    from connector.airbyte import commands

    messages: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in commands.read(config, catalog_for(), None, mock_transport(handler)):
            messages.append(message)

    try:
        asyncio.run(collect())
    except ConnectorError as exc:
        return messages, exc
    return messages, None


def chat_reply(content: str, finish_reason: str = "stop", model: str = "m") -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
