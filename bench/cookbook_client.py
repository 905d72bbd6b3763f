"""OpenAI's cookbook ``api_request_parallel_processor.py`` as a client of bench/ratemock.py.

    python -m bench.cookbook_client BASE_URL BODIES RPM TPM OUT SCRIPT

SCRIPT is a copy of the cookbook's script (not shipped with the project: docs/BENCHMARKS.md says
where it comes from). It is run as published, with RPM and TPM as its ``max_requests_per_minute``
and ``max_tokens_per_minute`` and 10 attempts, on BODIES (JSON lines, built by the connector's own
code), with one change: its ``api_endpoint_from_url`` only recognises ``https://`` URLs, so the
endpoint's name (``chat/completions``) is given to it for the mock's ``http://`` URL. Fails unless
every request got an answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys


def main() -> int:
    base, bodies, rpm, tpm, out, script = sys.argv[1:7]
    spec = importlib.util.spec_from_file_location("api_request_parallel_processor", script)
    assert spec is not None and spec.loader is not None
    cookbook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cookbook)
    cookbook.api_endpoint_from_url = lambda _url: "chat/completions"
    asyncio.run(cookbook.process_api_requests_from_file(
        requests_filepath=bodies, save_filepath=out, request_url=f"{base}/chat/completions", api_key="sk-bench",
        max_requests_per_minute=float(rpm), max_tokens_per_minute=float(tpm), token_encoding_name="cl100k_base",
        max_attempts=10, logging_level=40))
    with open(out) as results:
        answered = sum(1 for line in results if "choices" in json.loads(line)[1])
    with open(bodies) as asked:
        wanted = sum(1 for _ in asked)
    print(json.dumps({"answered": answered}))
    return 0 if answered == wanted else 1


if __name__ == "__main__":
    sys.exit(main())
