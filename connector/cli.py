"""The process edge: arguments, files, stdout and the exit code. The only place that prints.

Exit codes: 0 success (and ``check`` whatever its verdict, as Airbyte expects);
1 a fatal error, always preceded by a TRACE ERROR on stdout; 2 bad command-line
usage; 130 interrupted.

``run`` (standalone use, :mod:`connector.standalone.command`) writes a file instead of
protocol messages: its progress and errors are lines on stderr. A live progress
bar (:mod:`connector.pipeline.progress_bar`) is drawn on stderr, never stdout, when stderr
is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from connector.errors import ConfigError, ConnectorError, OutputFailed

if TYPE_CHECKING:
    from connector.airbyte.output import MessageWriter

# A young-generation collection every this many net allocations (CPython's default: 700). With hundreds of
# requests in flight, each young collection scans every object those requests hold, finds nothing (the row
# path makes no reference cycles) and promotes them: at the default, 15-20 % of a read's CPU went to the
# collector. Callgrind, 2,500 rows at 512 in flight: 71k instructions per row at 10,000, 34k at 50,000, none
# in that window at 200,000; gc.callbacks, 10,000 rows: at 512 in flight 96 ms at 50,000, under 1 ms at
# 200,000; at 2,048, 51 µs per row at 50,000, 5 µs at 200,000. A failed row leaves no cycle either
# (answers/cache.py's SingleFlight), so garbage does not pile up between collections: reads in which every
# row timed out peaked at the same memory at 700 and at 200,000 (docs/PROMISES.md); the threshold bounds
# what a cycle a library makes would leave.
YOUNG_COLLECTION_EVERY = 200_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="source-openai-compatible",
        description="Airbyte source: enrich table rows through an OpenAI-compatible endpoint.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("spec", help="print the connector specification")
    for name, text in (("check", "validate the config and probe the endpoint"),
                       ("discover", "print the catalog of streams")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", required=True, help="path to the config JSON")
    read = sub.add_parser("read", help="enrich the input and print records")
    read.add_argument("--config", required=True, help="path to the config JSON")
    read.add_argument("--catalog", required=True, help="path to the configured catalog JSON")
    read.add_argument("--state", help="path to the state JSON (a list of STATE messages)")
    read.add_argument("--dry-run", action="store_true",
                      help="render every request and report rows, tokens and cost as LOG messages; send nothing")
    read.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                      help="a LOG line with rows done, rows/s, tokens, errors and ETA this often (0: never)")
    standalone = sub.add_parser("run", help="enrich the input into a Parquet, CSV or JSONL file (outside Airbyte)")
    standalone.add_argument("--config", required=True, help="path to the config JSON")
    standalone.add_argument("--output", help="the file to write: .parquet, .csv or .jsonl (- for JSONL on stdout)")
    standalone.add_argument("--format", choices=("parquet", "csv", "jsonl"), help="instead of the extension's")
    standalone.add_argument("--dry-run", action="store_true",
                            help="report rows, tokens, cost and a few rendered requests; send nothing")
    files = standalone.add_mutually_exclusive_group()
    files.add_argument("--export-batch", metavar="REQUESTS.jsonl",
                       help="write the rows' requests as an OpenAI batch input file (vllm run-batch reads it); "
                            "send nothing")
    files.add_argument("--import-batch", metavar="RESULTS.jsonl",
                       help="take the answers from a batch output file instead of the endpoint; write --output")
    standalone.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                            help="a progress line on stderr this often when no bar is drawn (0: never)")
    for cmd in (read, standalone):
        cmd.add_argument("--no-progress-bar", action="store_true", help="no live bar on stderr, even on a terminal")
        cmd.add_argument("--limit", type=_positive, metavar="N",
                         help="read only the input's first N rows (a sample; with --dry-run too): the config's "
                              "input.limit")
    return parser


def _positive(text: str) -> int:
    """A --limit value: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows above 0, got {text!r}")
    return value


def _config_of(args: argparse.Namespace) -> Any:
    """The config file's content, with ``--limit`` put where the config model reads it (input.limit)."""
    raw = _load_json(args.config, "config")
    limit = getattr(args, "limit", None)
    if limit is not None and isinstance(raw, dict) and isinstance(raw.get("input"), dict):
        raw = {**raw, "input": {**raw["input"], "limit": limit}}
    return raw


def _progress(args: argparse.Namespace, err: TextIO) -> Any:
    """LOG lines every --progress-every seconds, and a live bar when stderr is a terminal."""
    from connector.pipeline.progress import NO_PROGRESS, LogProgress, Several

    parts: list[Any] = []
    bar = not args.no_progress_bar and err.isatty()
    if args.progress_every > 0 and not (bar and args.command == "run"):
        parts.append(LogProgress(args.progress_every))
    if bar:
        from connector.pipeline.progress_bar import terminal_bar

        parts.append(terminal_bar(err))
    return Several(parts) if parts else NO_PROGRESS


def _run_standalone(args: argparse.Namespace, stdin: BinaryIO, out: BinaryIO, err: TextIO) -> int:
    """``run``: a file out, human lines on stderr, the dry-run report on stdout."""
    import asyncio

    from connector.secrets import Redactor
    from connector.standalone import command as standalone

    def notice(level: str, text: str) -> None:
        err.write(f"{'' if level == 'INFO' else level + ': '}{text}\n")
        err.flush()

    raw_config: Any = None
    try:
        raw_config = _config_of(args)
        result = asyncio.run(standalone.run(raw_config, args.output, args.format, dry_run=args.dry_run,
                                            progress=_progress(args, err), notice=notice, stdin=stdin, stdout=out,
                                            export_batch=args.export_batch, import_batch=args.import_batch))
        if result.report is not None:
            out.write(result.report.encode())
            out.flush()
    except ConnectorError as exc:
        notice("ERROR", Redactor.for_config(raw_config)(exc.message))
        if args.output == "-":
            _stdout_gone(out)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:  # standard output cannot take the report (a full disk, /dev/full)
        notice("ERROR", f"cannot write to standard output: {exc.strerror or exc}")
        _stdout_gone(out)
        return 1
    except Exception as exc:  # a bug: one clear line, never a traceback for a person to decode
        notice("ERROR", Redactor.for_config(raw_config)(_internal_error(exc)))
        return 1
    return 0


def _load_json(path: str, what: str) -> Any:
    import orjson

    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--{what}: cannot read '{path}': {exc.strerror}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--{what}: '{path}' is not valid JSON ({exc})") from None


async def _drive(messages: AsyncIterator[dict[str, Any]], writer: MessageWriter) -> None:
    try:
        async for message in messages:
            writer.write(message)
    finally:
        # Closed here, inside the loop, when writing failed (``| head`` closed the pipe): left to the
        # loop's shutdown, the command and the context managers it is inside would be finalised in
        # no particular order ("aclose(): asynchronous generator is already running").
        if isinstance(messages, AsyncGenerator):
            await messages.aclose()


# The specification as one line of JSON, generated from the config model into the package
# (connector/config/specification.py; its --check and a test keep it equal to the model).
_PACKAGED_SPEC = Path(__file__).resolve().parent / "config" / "spec_compact.json"


def _spec_line() -> bytes:
    """The SPEC message. Platforms call ``spec`` often, each time in a fresh process, so it is the
    packaged specification in an envelope: no pydantic, asyncio or JSON library on its path
    (tests/test_cold_start.py). An install without the file generates it."""
    try:
        body = _PACKAGED_SPEC.read_bytes().strip()
    except OSError:
        from connector.airbyte.protocol import serialize, spec
        from connector.config.specification import specification

        return serialize(spec(specification()))
    return b'{"type":"SPEC","spec":' + body + b"}\n"


def _write_spec(out: BinaryIO, err: TextIO) -> int:
    try:
        out.write(_spec_line())
        out.flush()
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:  # a full disk, /dev/full
        err.write(f"source-openai-compatible: cannot write to standard output: {exc.strerror or exc}\n")
        _stdout_gone(out)
        return 1
    return 0


def run(argv: Sequence[str] | None = None, out: BinaryIO | None = None, err: TextIO | None = None,
        stdin: BinaryIO | None = None) -> int:
    """Run one command; returns the exit code."""
    args = _parser().parse_args(argv)
    err = err or sys.stderr
    if args.command == "spec":
        return _write_spec(out or sys.stdout.buffer, err)
    from connector.airbyte.protocol import trace_error

    if args.command == "run":
        return _run_standalone(args, stdin or sys.stdin.buffer, out or sys.stdout.buffer, err)
    from connector.airbyte.output import MessageWriter

    writer = MessageWriter(out or sys.stdout.buffer)
    try:
        import asyncio

        asyncio.run(_drive(_messages(args, writer, stdin or sys.stdin.buffer, err), writer))
        return 0
    except OutputFailed as exc:  # stdout itself is broken: the TRACE could not be read either
        err.write(f"source-openai-compatible: {exc.message}\n")
        _stdout_gone(out or sys.stdout.buffer)
        return 1
    except ConnectorError as exc:
        if args.command == "check" and isinstance(exc, ConfigError):
            from connector.airbyte.protocol import connection_status

            writer.write(connection_status(False, exc.message))
            return 0
        writer.write(trace_error(exc.message, exc.failure_type))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:
        import traceback

        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        writer.write(trace_error(_internal_error(exc) + " and the stack trace", "system_error",
                                 internal_message=stack))
        return 1
    finally:
        with contextlib.suppress(OSError, ValueError):
            writer.flush()


def _messages(args: argparse.Namespace, writer: MessageWriter, stdin: BinaryIO, err: TextIO
              ) -> AsyncIterator[dict[str, Any]]:
    """The messages of ``check``, ``discover`` or ``read``; the writer masks the config's secrets from here on."""
    from connector.airbyte import commands
    from connector.airbyte.protocol import log
    from connector.secrets import Redactor

    raw_config = _config_of(args)
    writer.redact = Redactor.for_config(raw_config)  # raw: masked even when invalid
    if args.command == "check":
        return commands.check(raw_config)
    if args.command == "discover":
        return commands.discover(raw_config)
    catalog = _load_json(args.catalog, "catalog")
    state = _load_json(args.state, "state") if args.state else None
    return commands.read(raw_config, catalog, state, dry_run=args.dry_run, progress=_progress(args, err),
                         stdin=stdin, notice=lambda level, text: writer.write(log(text, level)),
                         before_output=writer.before_output)


def _internal_error(exc: BaseException) -> str:
    """One line for a bug: what was raised and where, and what to do."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"internal error in source-openai-compatible ({type(exc).__name__}: {exc}){where}; please report it"


def _stdout_gone(out: Any = None) -> None:
    """Standard output cannot be written: drop what is buffered for it, so exit adds no second error
    (only when ``out`` is the process's standard output, not a stream a caller passed in)."""
    import os

    if out is not None and out is not getattr(sys.stdout, "buffer", None):
        return
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``| head``): stop quietly, as a tool killed by SIGPIPE would."""
    _stdout_gone()
    return 141


def tune_collector() -> None:
    """Set the garbage collector for a process that keeps many requests in flight (see above)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


def main() -> None:
    """The process entry point (``source-openai-compatible``, ``python -m connector``)."""
    tune_collector()
    code = run()
    # The process ends: the interpreter's last collections would walk every object left (modules, the
    # run's caches) for memory the system takes back anyway: ~60 M instructions after a read at 512 in
    # flight (callgrind), which frozen objects are spared. Nothing waits for them: run() has flushed
    # the output and closed the files, the cache and the connections.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
