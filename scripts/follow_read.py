#!/usr/bin/env python3
"""Keep a read's Airbyte messages in a file and say how it goes, at least every few seconds (stdlib only).

    python -m connector read ... | python scripts/follow_read.py out/messages.jsonl --every 5

``make demo`` pipes its reads through this: the messages go to the file untouched, and the
connector's LOG lines (its progress lines, its summary, a dry run's report) are printed as they
come, each line cut to ``--width`` characters. When nothing
was printed for ``--every`` seconds (a slow model, a long first answer), a line of its own says
how many records arrived so far, so the demo never sits silent, in a terminal or in a CI log.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TextIO

_END = None


def log_message(line: str) -> str | None:
    """The text of a LOG message line, or None for any other line."""
    if '"LOG"' not in line:
        return None
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("type") != "LOG":
        return None
    return str(message.get("log", {}).get("message", ""))


def follow(lines: Iterable[str], sink: TextIO, say: Callable[[str], None], every: float,
           clock: Callable[[], float] = time.monotonic) -> int:
    """Copy ``lines`` to ``sink``, say each LOG message, and a heartbeat after ``every`` s of silence.

    Returns the number of RECORD lines seen. The lines are read on a thread so the heartbeat
    fires while the read is waiting for an answer.
    """
    incoming: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        try:
            for line in lines:
                incoming.put(line)
        finally:   # also when reading fails: the loop below must end
            incoming.put(_END)

    threading.Thread(target=pump, daemon=True).start()
    started = last_said = clock()
    records = 0
    while True:
        try:
            line = incoming.get(timeout=max(every - (clock() - last_said), 0.05))
        except queue.Empty:
            say(f"still reading: {records} records so far, {clock() - started:.0f} s")
            last_said = clock()
            continue
        if line is _END:
            return records
        sink.write(line)
        if '"RECORD"' in line:
            records += 1
        elif (text := log_message(line)) is not None:
            say(text)
            last_said = clock()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="file the messages are written to")
    parser.add_argument("--every", type=float, default=5.0, help="longest silence, in seconds (default 5)")
    parser.add_argument("--width", type=int, default=160, help="cut longer lines to this (default 160)")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        for line in text.splitlines() or [""]:
            line = "  " + line
            print(line if len(line) <= args.width else line[: args.width - 1] + "…", flush=True)

    with open(args.path, "w", encoding="utf-8") as sink:
        follow(sys.stdin, sink, say, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
