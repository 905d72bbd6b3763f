"""Re-record tests/cassettes/*.yaml from a running llama.cpp server (by hand, not by pytest).

Start the project's local server, then record against it::

    PORT=8091 API_KEY=sk-record-key PIDFILE=/tmp/rec.pid LOG=/tmp/rec.log scripts/local_llm.sh start
    .venv/bin/python -m tests.record_cassettes --base-url http://127.0.0.1:8091/v1 --api-key sk-record-key
    kill "$(cat /tmp/rec.pid)"

Each cassette is deleted and recorded afresh through the connector's own commands
(``commands.check`` / ``commands.read``) over :class:`connector.endpoint.transport.HttpxTransport`, the
plain ``httpx.AsyncClient`` that vcrpy intercepts. ``Authorization``, ``api-key`` and
``x-api-key`` headers are filtered out before anything is written, so no key reaches a
cassette (tests/test_cassettes.py asserts it). After re-recording, update the server
version quoted in the replay tests' docstrings (printed by this script).

The configs live here, not in the tests, so that recording and replay send the very
same requests: replay matches on method, path and the row-identifying part of the body.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import vcr
from vcr.request import Request

from connector.airbyte import commands
from connector.endpoint.transport import HttpxTransport
from connector.errors import ConnectorError

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = Path(__file__).resolve().parent / "cassettes"
REVIEWS = ROOT / "sample_configs" / "product_reviews.csv"
# Replay never connects anywhere; this URL only has to have the recorded path.
REPLAY_URL = "http://127.0.0.1:8091/v1"
WRONG_KEY = "sk-wrong-key-cassette-0000000000"
SECRET_HEADERS = ["authorization", "api-key", "x-api-key"]
N_ROWS = 3


def sample_rows(n: int = N_ROWS) -> list[dict[str, Any]]:
    """The first ``n`` rows of the sample reviews, as inline rows (rating as a number)."""
    with REVIEWS.open(newline="", encoding="utf-8") as f:
        rows = list(itertools.islice(csv.DictReader(f), n))
    return [{**row, "rating": int(row["rating"])} for row in rows]


def plain_config(base_url: str, api_key: str) -> dict[str, Any]:
    return {
        "url": base_url,
        "api_key": api_key,
        "model": "smollm2-135m-instruct",
        "prompt": "In a few words, what is this {{category}} review about?\n\n{{review_text}}",
        "input": {"rows": sample_rows()},
        # Ends at the first sentence, well within max_tokens: finish_reason "stop", status ok.
        "parameters": {"max_tokens": 24, "temperature": 0, "stop": ["\n", "."]},
        "concurrency": 1,
        "max_retries": 0,
    }


def stream_config(base_url: str, api_key: str) -> dict[str, Any]:
    return {**plain_config(base_url, api_key), "stream": True}


def check_config(base_url: str, api_key: str) -> dict[str, Any]:
    return {**plain_config(base_url, api_key), "input": {"rows": sample_rows(1)}}


CATALOG: dict[str, Any] = {
    "streams": [{"stream": {"name": "enriched_rows", "json_schema": {},
                            "supported_sync_modes": ["full_refresh", "incremental"]},
                 "sync_mode": "full_refresh", "destination_sync_mode": "append"}]
}


def _chat_row(r1: Request, r2: Request) -> None:
    """Match what identifies the row and the mode (messages, stream), not every parameter.

    vcrpy matchers raise AssertionError on a mismatch.
    """

    def key(request: Request) -> Any:
        if not request.body:
            return None
        body = json.loads(request.body)
        return body.get("messages"), bool(body.get("stream"))

    assert key(r1) == key(r2), "different chat request body (messages or stream flag)"


def cassette_vcr(record_mode: str) -> vcr.VCR:
    """The VCR both the recorder and the replay tests use."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        filter_headers=SECRET_HEADERS,
        match_on=["method", "path", "chat_row"],
        decode_compressed_response=True,
    )
    recorder.register_matcher("chat_row", _chat_row)
    return recorder


def transport_factory(_concurrency: int) -> HttpxTransport:
    return HttpxTransport()


async def collect(messages: Any) -> list[dict[str, Any]]:
    return [m async for m in messages]


async def collect_until_error(messages: Any) -> tuple[list[dict[str, Any]], ConnectorError | None]:
    """The messages a command yields before it raises, and what it raised."""
    out: list[dict[str, Any]] = []
    try:
        async for message in messages:
            out.append(message)
    except ConnectorError as exc:
        return out, exc
    return out, None


def _jobs(base_url: str, api_key: str) -> dict[str, Any]:
    """Cassette file name -> a function starting the command that records it."""
    return {
        "read_plain.yaml": lambda: commands.read(plain_config(base_url, api_key), CATALOG,
                                                 transport_factory=transport_factory),
        "read_stream.yaml": lambda: commands.read(stream_config(base_url, api_key), CATALOG,
                                                  transport_factory=transport_factory),
        "check_401.yaml": lambda: commands.check(check_config(base_url, WRONG_KEY),
                                                 transport_factory=transport_factory),
        "read_401.yaml": lambda: commands.read(check_config(base_url, WRONG_KEY), CATALOG,
                                               transport_factory=transport_factory),
    }


def server_version() -> str:
    """``llama-server --version`` of the project's local server install, if present."""
    script = ROOT / "scripts" / "local_llm.sh"
    try:
        out = subprocess.run([str(script), "install"], capture_output=True, text=True, timeout=60)
        binary = next(line.split("=", 1)[1] for line in out.stdout.splitlines()
                      if line.startswith("SERVER_BIN="))
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        return " ".join((version.stdout + version.stderr).split())
    except (OSError, StopIteration, subprocess.SubprocessError):
        return "(unknown: scripts/local_llm.sh install found no server)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-record the cassettes from a running server.")
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8091/v1")
    parser.add_argument("--api-key", required=True, help="the server's key (never written)")
    parser.add_argument("--only", help="record just this cassette file name")
    args = parser.parse_args(argv)

    CASSETTES.mkdir(exist_ok=True)
    version = server_version()
    recorder = cassette_vcr("all")
    for name, job in _jobs(args.base_url, args.api_key).items():
        if args.only and name != args.only:
            continue
        (CASSETTES / name).unlink(missing_ok=True)
        # A private, empty answer cache per cassette: a cached answer (the cache key has no
        # API key in it) would skip the very request we want on tape.
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="record-cassettes-")
        with recorder.use_cassette(name) as cassette:
            messages, error = asyncio.run(collect_until_error(job()))
        print(f"{name}: {len(cassette)} interactions, {len(messages)} messages")
        for message in messages:
            if message["type"] == "RECORD":
                data = message["record"]["data"]
                print(f"    {data['review_id']} {data['_status']}: {data['answer']!r}")
            elif message["type"] == "CONNECTION_STATUS":
                print(f"    {message['connectionStatus']}")
        if error is not None:
            print(f"    raised {type(error).__name__}: {error.message}")
        text = (CASSETTES / name).read_text()
        assert args.api_key not in text and WRONG_KEY not in text, f"a key leaked into {name}"
    print(f"recorded with: {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
