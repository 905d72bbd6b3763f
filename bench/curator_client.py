"""Curator as a client of bench/ratemock.py (run in .venv-bench by bench/ratelimits.py).

    python -m bench.curator_client BASE_URL BODIES RPM TPM OUT

Sends the messages of each request body in BODIES (JSON lines, built by the connector's own
code) through ``curator.LLM`` with its OpenAI backend at BASE_URL, with Curator's defaults for
everything else: its rate limits come from the endpoint's ``x-ratelimit-limit-*`` headers (RPM
and TPM are not passed). Fails unless every row got an answer.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bespokelabs import curator


class Bench(curator.LLM):  # type: ignore[misc]
    def prompt(self, row: dict[str, Any]) -> Any:
        return row["messages"]

    def parse(self, row: dict[str, Any], response: Any) -> dict[str, Any]:
        return {"review": row["messages"][-1]["content"][:20], "answer": str(response)}


def main() -> int:
    base, bodies_path = sys.argv[1], sys.argv[2]
    with open(bodies_path) as lines:
        bodies = [json.loads(line) for line in lines]
    llm = Bench(model_name=bodies[0]["model"], backend="openai",
                generation_params={"max_tokens": 16, "temperature": 0},
                backend_params={"base_url": base, "api_key": "sk-bench", "max_retries": 10,
                                 "require_all_responses": True, "request_timeout": 120})
    result = llm([{"messages": body["messages"]} for body in bodies])
    dataset = getattr(result, "dataset", result)
    answered = len(dataset)
    print(json.dumps({"answered": answered}))
    return 0 if answered == len(bodies) else 1


if __name__ == "__main__":
    sys.exit(main())
