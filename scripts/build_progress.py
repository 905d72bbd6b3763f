#!/usr/bin/env python3
"""Where a ``pip wheel -v`` build of llama.cpp stands, from its log: one short line (stdlib only).

    python scripts/build_progress.py [--steps N] BUILD_LOG

scripts/local_llm.sh prints this every few seconds while the first build compiles llama.cpp,
so a first ``make demo`` shows it is moving rather than hung. The stages, in order: fetching
the source and build tools, configuring (CMake), compiling (with the file or library at hand),
packing the wheel.

How far the compiling is: CMake's ``[ 45%]`` counts the steps of every target of the project,
also those a server-only build leaves out (scripts/llama_server_only.cmake), so there it stops
near 60% and jumps to 100% at the end. Given ``--steps N``, the files the build compiles
(counted once in a finished log), the percentage is the files compiled so far out of N instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable

PERCENT = re.compile(r"^\[\s*(\d{1,3})%\]\s+(.*)$")


def _what(step: str) -> str:
    """'Building CXX object ggml/src/x/ggml-cpu.cpp.o' -> 'ggml-cpu.cpp'; linking and targets too."""
    words = step.split()
    if step.startswith("Building") and words:
        return words[-1].rsplit("/", 1)[-1].removesuffix(".o")
    if step.startswith("Linking") and words:
        return "linking " + words[-1].rsplit("/", 1)[-1]
    if step.startswith("Built target") and words:
        return "built " + words[-1]
    return step[:60]


def milestone(lines: Iterable[str], steps: int | None = None) -> str:
    """The latest stage the log shows; with ``steps``, the share of that many files compiled."""
    stage = "fetching llama.cpp's source and build tools"
    compiled = 0
    for raw in lines:
        line = raw.strip()
        if line.startswith("Installing build dependencies: finished"):
            stage = "preparing the build"
        elif line.startswith("-- The C compiler identification"):
            stage = "configuring (CMake)"
        elif found := PERCENT.match(line):
            compiled += found[2].startswith("Building")
            share = int(found[1]) if not steps else min(99, 100 * compiled // steps)
            stage = f"compiling llama.cpp: {share}% ({_what(found[2])})"
        elif line.startswith("Building wheel for") and "finished" in line:
            stage = "packing the wheel"
    return stage


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", help="the build's log (pip wheel -v)")
    parser.add_argument("--steps", type=int, help="files the build compiles, to count the percentage from")
    args = parser.parse_args(argv)
    try:
        with open(args.log, encoding="utf-8", errors="replace") as log:
            print(milestone(log, args.steps))
    except OSError:
        print("starting")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
