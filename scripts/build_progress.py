#!/usr/bin/env python3
"""Where a ``pip wheel -v`` build of llama.cpp stands, from its log: one short line (stdlib only).

    python scripts/build_progress.py BUILD_LOG

scripts/local_llm.sh prints this every few seconds while the first build compiles llama.cpp,
so a first ``make demo`` shows it is moving rather than hung. The stages, in order: fetching
the source and build tools, configuring (CMake), compiling (CMake's ``[ 45%]`` lines, with the
file or library at hand), packing the wheel.
"""

from __future__ import annotations

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


def milestone(lines: Iterable[str]) -> str:
    """The latest stage the log shows."""
    stage = "fetching llama.cpp's source and build tools"
    for raw in lines:
        line = raw.strip()
        if line.startswith("Installing build dependencies: finished"):
            stage = "preparing the build"
        elif line.startswith("-- The C compiler identification"):
            stage = "configuring (CMake)"
        elif found := PERCENT.match(line):
            stage = f"compiling llama.cpp: {int(found[1])}% ({_what(found[2])})"
        elif line.startswith("Building wheel for") and "finished" in line:
            stage = "packing the wheel"
    return stage


def main(argv: list[str]) -> int:
    try:
        with open(argv[0], encoding="utf-8", errors="replace") as log:
            print(milestone(log))
    except OSError:
        print("starting")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
