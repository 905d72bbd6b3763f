"""Curator as a peer of the matrix (run in .venv-curator by bench/stages.py, like bench/peer.py):

    python -m bench.curator_peer --bodies B.jsonl --base-url URL/v1 --concurrency N [--api-key K]

Sends the messages of every request body in B.jsonl (the bodies the connector builds) through
``curator.LLM`` with its OpenAI backend, at most N requests in flight (``max_concurrent_requests``),
and prints bench/peer.py's JSON line (rows, ok, failures, the timed call's wall and CPU seconds,
the CPU before it). The mock sends no ``x-ratelimit-*`` headers, and without them Curator falls
back to 200 requests/min; so its request and token limits are set far above anything one core can
send, and only the concurrency binds, as for the other peers. Everything else is Curator's default:
its response cache on disk (a fresh ``CURATOR_CACHE_DIR`` per run, so every row is a miss), its
retries, its status display. The timed part is the ``llm(rows)`` call: Curator's own preparation
of the dataset and its writing of the answers are part of its cost per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

UNBOUNDED = 10**9  # requests and tokens per minute: no limit a client could reach here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    from bench.curator_client import Bench  # Curator's import is set-up CPU, as the other peers' imports

    with open(args.bodies) as lines:
        bodies = [json.loads(line) for line in lines if line.strip()]
    params = {k: v for k, v in bodies[0].items() if k not in ("messages", "model", "stream")}
    llm = Bench(model_name=bodies[0]["model"], backend="openai", generation_params=params,
                backend_params={"base_url": args.base_url, "api_key": args.api_key, "request_timeout": 120,
                                "max_concurrent_requests": args.concurrency, "require_all_responses": True,
                                "max_requests_per_minute": UNBOUNDED, "max_tokens_per_minute": UNBOUNDED})
    failures: list[str] = []
    setup_cpu = time.process_time()
    t0, c0 = time.perf_counter(), time.process_time()
    ok = 0
    try:
        result: Any = llm([{"messages": body["messages"]} for body in bodies])
        ok = len(getattr(result, "dataset", result))
    except Exception as exc:  # the harness reports it in the table ("failed: ...")
        failures.append(f"{type(exc).__name__}: {exc}"[:300])
    loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c0
    sys.stdout.write(json.dumps({"client": "curator", "rows": len(bodies), "ok": ok, "failures": failures,
                                 "loop_s": loop_s, "loop_cpu_s": loop_cpu, "setup_cpu_s": setup_cpu}) + "\n")


if __name__ == "__main__":
    main()
