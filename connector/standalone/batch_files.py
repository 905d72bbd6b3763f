"""Batch files for ``run``: the OpenAI batch input file of the rows (``--export-batch``), a results
file mapped back to the rows (``--import-batch``), and ``run``'s own record of its batches.

``--export-batch requests.jsonl`` writes one line per row that needs an answer, rendered exactly as
a read renders it (templates, null policy, context fit, output schema): ``{"custom_id", "method":
"POST", "url": "/v1/chat/completions" (or "/v1/responses"), "body"}``, the OpenAI Batch API's input
format, which ``vllm run-batch`` and the OpenAI-compatible batch providers read. Nothing is sent.

``--import-batch results.jsonl --output enriched.parquet`` reads the output (and error) lines of
such a run, ``{"custom_id", "response": {"status_code", "body"}, "error"}``, and writes the table
with the record contract of a read: each row's answer is found by its custom_id (which names the
row and the exact request, so a file answering other requests is not taken for these rows'),
validated and priced at the batch price; a failed line is the row's error; a row with no line is
``_status: error``, ``_error_class: unanswered``. No request is sent (validation retries are off),
and ``_batch_id`` is ``file:<name of the results file>``. The answers go into the answer cache.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from connector import errors
from connector.answers.records import Enriched
from connector.config.providers import canonical
from connector.dialects.openai_chat import ChatDialect
from connector.endpoint.batch import BatchLimits, ItemResult
from connector.endpoint.batch.openai_batches import LIMITS, input_line, output_line
from connector.pipeline.batch_ledger import SavedBatch, cache_key_of, custom_id
from connector.pipeline.context import RunContext
from connector.pipeline.enrich import Ask, RowEnricher
from connector.pipeline.ordered import as_async
from connector.pipeline.run_loop import Note, Rows
from connector.rows.opening import numbered_rows

OPENAI_FORMAT = ("openai_chat_completions", "openai_responses", "azure_openai", "openai_embeddings")


def _openai_dialect(ctx: RunContext, flag: str) -> ChatDialect:
    shape = canonical(ctx.parts.request.api_compatibility)
    dialect = ctx.dialect
    if shape not in OPENAI_FORMAT or not isinstance(dialect, ChatDialect):
        raise errors.ConfigError(f"{flag}: the OpenAI batch file format holds OpenAI-format requests "
                                 f"({', '.join(OPENAI_FORMAT)}); api_compatibility is {shape}")
    return dialect


async def export_requests(ctx: RunContext, path: str) -> tuple[int, Counter[str]]:
    """Write the batch input file of the context's rows to ``path`` (whole, or not at all); the requests
    written and the rows skipped by status."""

    dialect = _openai_dialect(ctx, "--export-batch")
    enrichers = [t.enricher for t in ctx.tasks.tasks] if ctx.tasks else [ctx.enricher]  # with tasks: each one's line
    rows = numbered_rows(ctx.input.batches(skip=ctx.start), ctx.start, lambda: False, ctx.parts.input.limit)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    written, skipped, models = 0, Counter[str](), dict[str, str]()
    try:
        with partial.open("wb") as out:
            async for position, row in as_async(rows):
                for enricher in enrichers:
                    planned = enricher.plan((position, row))
                    if not isinstance(planned, Ask):
                        skipped[planned.outcome.status] += 1
                        continue
                    key = enricher.answer_key(planned.body)
                    out.write(input_line(dialect, custom_id(position + 1, key), planned.body).entry + b"\n")
                    models.setdefault(str(planned.body.get("model")), f"row {position + 1}")
                    written += 1
        if ctx.tasks and len(models) > 1:
            raise errors.ConfigError(f"--export-batch: the tasks ask {len(models)} models ({', '.join(models)}); "
                                     "OpenAI's Batch API takes one model per file: give the tasks one model, or "
                                     "export one config per model")
        os.replace(partial, target)
    except OSError as exc:
        raise errors.OutputError(f"--export-batch: cannot write '{path}': {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return written, skipped


def over_upload_limits(path: str, requests: int, limits: BatchLimits = LIMITS) -> str | None:
    """What an exported file exceeds of OpenAI's batch input limits (media rows make large lines), or None:
    an offline engine reads any size, the upload does not."""
    size = Path(path).stat().st_size
    over = [f"{requests:,} requests (at most {limits.max_requests:,})"] \
        if limits.max_requests is not None and requests > limits.max_requests else []
    if size > limits.max_bytes:
        over.append(f"{size / 1024 / 1024:,.1f} MB (at most {limits.max_bytes / 1024 / 1024:,.0f} MB)")
    if not over:
        return None
    return (f"{path} holds {' and '.join(over)}: more than OpenAI's Batch API takes in one input file; split it "
            "into files within both limits before uploading it there (vllm run-batch reads it whole)")


def read_results(ctx: RunContext, path: str) -> dict[str, ItemResult]:
    """The results of a batch output (or error) file by custom_id; InputError naming the line that is not one."""
    dialect = _openai_dialect(ctx, "--import-batch")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise errors.InputError(f"--import-batch: cannot read '{path}': {exc.strerror}") from None
    found: dict[str, ItemResult] = {}
    source = f"file {Path(path).name}"
    for number, text in enumerate(raw.splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = orjson.loads(text)
        except orjson.JSONDecodeError:
            line = None
        result = output_line(dialect, line, source) if isinstance(line, dict) else None
        if result is None:
            raise errors.InputError(f"--import-batch: '{path}' line {number} is not a batch output line "
                                    "(a JSON object with custom_id and response or error)")
        found[result.custom_id] = result
    return found


class ImportSource:
    """The run loop's answer source for ``--import-batch``: each row's answer from the results file, else from
    the answer cache (its exact request answered before), else the row is ``unanswered``."""

    def __init__(self, ctx: RunContext, results: dict[str, ItemResult], path: str) -> None:
        self._client, self._enricher, self._results, self._cache = ctx.client, ctx.enricher, results, ctx.cache
        # With tasks, each task's request of a row is looked up (its own line); counts are then per request.
        self._tasks = ctx.tasks.answered_by(self._row) if ctx.tasks else None
        self._label = f"file:{Path(path).name}"
        self._path = path
        self.used = 0
        self.counts: Counter[str] = Counter()  # rows by where their answer came from (see :meth:`summary`)

    async def __call__(self, rows: Rows) -> AsyncIterator[Enriched | Note | None]:
        if self._cache is not None:
            for cid, found in self._results.items():
                key = cache_key_of(cid)
                if found.reply is not None and key is not None:
                    self._cache.put(key, found.reply)
            self._cache.commit()
        async for position, row in as_async(rows):
            if self._tasks is not None:
                yield await self._tasks((position, row))
                continue
            planned = self._enricher.plan((position, row))
            if not isinstance(planned, Ask):
                self.counts["no request"] += 1
                yield planned
                continue
            yield await self._row(self._enricher, planned)
        yield Note(self.summary())
        unused = len(self._results) - self.used
        if unused:
            yield Note(f"{unused:,} lines of {self._path} answer no row of this input with this config", "WARN")

    async def _row(self, enricher: RowEnricher, planned: Ask) -> Enriched | None:
        key = enricher.answer_key(planned.body)
        cid = custom_id(planned.number, key)
        result = self._results.get(cid)
        self.used += result is not None
        if result is not None and result.reply is not None:
            self.counts["file"] += 1
            return await enricher.finish_batch(planned, result.reply, self._label)
        if result is not None and result.error is not None:
            self.counts["failed"] += 1
            return enricher.batch_error(planned, result.error, self._label)
        cached = self._cache.get(key) if self._cache is not None else None
        if cached is not None:
            self.counts["cache"] += 1
            return await enricher.finish_shared(planned, cached, None)  # bought before: nothing is sent
        self.counts["missing"] += 1
        return enricher.batch_error(planned, errors.BatchItemUnfinished(
            f"{self._path} has no line with custom_id {cid} and the answer cache has no answer to its request "
            "(was the file run from the one --export-batch wrote with this config?)"), self._label)

    def summary(self) -> str:
        """Where the rows' answers came from, each row counted once."""
        c, what = self.counts, "task requests" if self._tasks else "rows"
        return (f"--import-batch {Path(self._path).name}: {c['file']:,} {what} answered by the file, "
                f"{c['cache']:,} from the answer cache, {c['failed']:,} failed in the file (an error line), "
                f"{c['missing']:,} with no answer (no line in the file, nothing in the cache), "
                f"{c['no request']:,} needed no request")


class LedgerFile:
    """``run`` in batch mode keeps its batches in ``<output>.batches.json`` while it runs, so a ``run``
    that was stopped (killed, or ``wait: false``) collects them when run again instead of submitting its
    rows twice. Removed once the run is complete."""

    def __init__(self, output: str) -> None:
        self.path = Path(output + ".batches.json")

    def load(self) -> tuple[SavedBatch, ...]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return ()
        except (OSError, orjson.JSONDecodeError) as exc:
            raise errors.StateError(f"{self.path}: cannot read the batches of an earlier run ({exc}); remove the "
                                    "file to start over (its batches are then submitted again)") from None
        batches = raw.get("batches") if isinstance(raw, dict) else None
        if not isinstance(batches, list):
            raise errors.StateError(f"{self.path}: not a batches file of this connector; remove it to start over")
        return tuple(SavedBatch.from_state(b, f"{self.path}: batches.{i}") for i, b in enumerate(batches))

    def save(self, batches: tuple[SavedBatch, ...]) -> None:
        if not batches:
            self.clear()
            return
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            partial.write_bytes(orjson.dumps({"batches": [b.as_state() for b in batches]}))
            os.replace(partial, self.path)
        except OSError as exc:
            raise errors.OutputError(f"cannot write {self.path} (the batches of this run): {exc.strerror}") from None

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
