"""What a tenacity retry wrapper would cost every row, against the client's plain loop over attempts.

    .venv-bench/bin/python -m bench.retry_wrapper

Runs in ``.venv-bench`` (tenacity is not a connector dependency: docs/DEVELOPMENT.md says why).
Both wrap an attempt that answers the first time, the common case on the row path, with the
same policy: at most six attempts, exponential backoff with full jitter on a retryable error.
Prints the CPU time per call (median of five rounds of 20,000 calls each, both in the same process,
alternating, so a busy machine slows both alike).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import tenacity

ATTEMPTS = 6
CALLS = 20_000
ROUNDS = 5


class Transient(Exception):
    """A retryable failure (never raised here: the first attempt answers)."""


async def attempt() -> int:
    return 1


def backoff(failed: int) -> float:
    return random.uniform(0, min(30.0, 0.5 * 2 ** (failed - 1)))


async def plain_loop() -> int:
    """The shape of connector/endpoint/client.py's EndpointClient.complete."""
    failed = 0
    while True:
        try:
            return await attempt()
        except Transient:
            failed += 1
            if failed >= ATTEMPTS:
                raise
            await asyncio.sleep(backoff(failed))


async def with_tenacity() -> int:
    """The same policy as dlt writes it: AsyncRetrying with a stop, a wait and a retry predicate."""
    async for attempt_ in tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(ATTEMPTS),
                                                 wait=lambda state: backoff(state.attempt_number),
                                                 retry=tenacity.retry_if_exception_type(Transient), reraise=True):
        with attempt_:
            return await attempt()
    raise AssertionError("unreachable: reraise is on")


async def cpu_per_call(call: Callable[[], Awaitable[int]]) -> float:
    started = time.process_time()
    for _ in range(CALLS):
        await call()
    return (time.process_time() - started) / CALLS * 1e6


async def main() -> None:
    rounds: dict[str, list[float]] = {"plain loop": [], "tenacity": []}
    for _ in range(ROUNDS):
        rounds["plain loop"].append(await cpu_per_call(plain_loop))
        rounds["tenacity"].append(await cpu_per_call(with_tenacity))
    print(f"tenacity {importlib.metadata.version('tenacity')}")
    for name, values in rounds.items():
        print(f"{name:10s} {statistics.median(values):6.2f} us CPU per call (min {min(values):.2f}, "
              f"max {max(values):.2f}; {ROUNDS} rounds of {CALLS:,} calls)")


if __name__ == "__main__":
    asyncio.run(main())
