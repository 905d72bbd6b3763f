"""Four tasks per row against the real local server: llama.cpp with SmolLM2-135M (issue 22's done criterion).

Two independent tasks (``topic``, ``sentiment``), one using the first's answer (``headline``) and one
using both (``reply``), over the first rows of sample_configs/product_reviews.csv: one ``read`` (a fresh
answer cache) and one ``run`` (the same cache), each as a process with the production transport.

The server counts: llama.cpp logs one ``launch_slot_ ... processing task`` line per completion it
starts, so its log says how many requests it served. Between the connector and the server sits a
recording relay (this process, 127.0.0.1) that passes every request through unchanged and keeps its
body, so the test sees the dependent tasks' prompts as the server got them.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, LIVE_KEY, ROOT, catalog_for, sample_reviews
from tests.servers import Started, running, start_llama_cpp

pytestmark = pytest.mark.live

ROWS = 5
TASKS = [
    {"name": "topic", "prompt": "In a few words, what is this {{category}} review about?\n\n{{review_text}}"},
    {"name": "sentiment", "prompt": "Is this review positive or negative? One word.\n\n{{review_text}}"},
    # Its own parameters: SmolLM2's headlines run on ("A Guide to the Ultimate Guide to the Ultimate ...")
    # past max_tokens without them.
    {"name": "headline", "prompt": "Write a short headline about: {{topic.answer}}",
     "parameters": {"max_tokens": 48, "temperature": 0, "stop": ["\n", ".", ":", "!"], "frequency_penalty": 1.0}},
    {"name": "reply", "prompt": "Write one sentence to a customer whose review was {{sentiment.answer}} "
                                "about: {{topic.answer}}"},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live_tasks")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Started]:
    with running(start_llama_cpp(workdir, LIVE_KEY)) as started:
        yield started


@pytest.fixture(scope="module")
def relay(server: Started) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A pass-through relay to the server that keeps every request body it forwards."""
    bodies: list[dict[str, Any]] = []
    upstream = server.base_url.removesuffix("/v1")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            bodies.append(json.loads(raw))
            forwarded = urllib.request.Request(upstream + self.path, data=raw, method="POST", headers={
                "Content-Type": "application/json", "Authorization": self.headers["Authorization"]})
            with urllib.request.urlopen(forwarded, timeout=300) as answer:
                status, payload = answer.status, answer.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


def completions_served(server: Started) -> int:
    """The completions llama.cpp started, from its log."""
    return sum(1 for line in server.log.read_text(errors="replace").splitlines()
               if "launch_slot_" in line and "processing task" in line)


@pytest.fixture(scope="module")
def syncs(workdir: Path, server: Started, relay: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One read (fresh cache), then one run (the same cache); what the server served before and after each."""
    config = workdir / "config.json"
    config.write_text(json.dumps({
        "url": relay[0], "api_key": server.api_key, "model": "smollm2-135m-instruct", "tasks": TASKS,
        "input": {"path": str(sample_reviews(workdir / "reviews.csv", ROWS)), "primary_key": "review_id"},
        "parameters": {"max_tokens": 48, "temperature": 0, "stop": ["\n", "."]},
        "concurrency": 4, "timeout": 120, "cache": {"path": str(workdir / "answers.sqlite")}}))
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps(catalog_for()))
    out: dict[str, Any] = {"before": completions_served(server)}
    read = subprocess.run([*CLI, "read", "--config", str(config), "--catalog", str(catalog)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    out["read"], out["after_read"], out["relayed"] = read, completions_served(server), len(relay[1])
    target = workdir / "enriched.jsonl"
    run = subprocess.run([*CLI, "run", "--config", str(config), "--output", str(target)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, check=False)
    out["run"], out["after_run"] = run, completions_served(server)
    out["records"] = [json.loads(line)["record"]["data"] for line in read.stdout.splitlines()
                      if line.startswith('{"type":"RECORD"')]
    out["run_records"] = [json.loads(line) for line in target.read_text().splitlines()] if target.exists() else []
    return out


def test_one_read_asks_rows_times_tasks_and_records_every_tasks_columns(syncs: dict[str, Any]) -> None:
    assert syncs["read"].returncode == 0, syncs["read"].stderr[-2000:]
    records = syncs["records"]
    assert [r["_row_number"] for r in records] == list(range(1, ROWS + 1))
    for record in records:
        for task in TASKS:
            assert record[f"{task['name']}_status"] == "ok", {k: v for k, v in record.items() if k.startswith(
                task["name"])}
            assert isinstance(record[f"{task['name']}_answer"], str) and record[f"{task['name']}_answer"]
        assert record["_status"] == "ok" and record["_attempts"] == len(TASKS)
    # Exactly rows x tasks completions at the server, and through the relay.
    assert syncs["after_read"] - syncs["before"] == ROWS * len(TASKS)
    assert syncs["relayed"] == ROWS * len(TASKS)


def test_the_dependent_prompts_held_the_earlier_answers(syncs: dict[str, Any],
                                                       relay: tuple[str, list[dict[str, Any]]]) -> None:
    prompts = [body["messages"][-1]["content"] for body in relay[1]]
    for record in syncs["records"]:
        assert f"Write a short headline about: {record['topic_answer']}" in prompts
        assert (f"Write one sentence to a customer whose review was {record['sentiment_answer']} about: "
                f"{record['topic_answer']}") in prompts


def test_one_run_over_the_same_cache_asks_nothing_and_writes_the_same_answers(syncs: dict[str, Any]) -> None:
    assert syncs["run"].returncode == 0, syncs["run"].stderr[-2000:]
    assert syncs["after_run"] == syncs["after_read"]  # every task's answer from the cache
    rows = syncs["run_records"]
    assert len(rows) == ROWS and all(r["_cached"] for r in rows)
    for name in ("topic", "sentiment", "headline", "reply"):
        assert [r[f"{name}_answer"] for r in rows] == [r[f"{name}_answer"] for r in syncs["records"]]
