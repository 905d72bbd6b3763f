"""The one preparation of a run: a validated config in, one :class:`RunContext` out.

:func:`prepare` builds, in this order, so that what is wrong fails before anything is read or
sent: the typed parts of the config (:mod:`connector.config.parts`), the dialect (what the API
shape cannot express fails here), the request template (a typo fails before the input is read),
the input table (stdin starts here, inferring its columns), the records' schema, then the
transport, the client with its limiter and spend budget, the redactor, the answer cache and the
row enricher. ``read``, ``run``, the dry run, ``--export-batch`` / ``--import-batch``, the batch
path and the Spark/Ray workers all take what it yields; :func:`connector.pipeline.connect.connect` alone (a
client, no rows) serves ``check`` and ``discover``. Nothing else constructs a client, an enricher or a cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import BinaryIO, Literal

from connector.answers.cache import AnswerCache, Normalise, cache_path, open_cache
from connector.answers.extra_columns import ExtraOutputs
from connector.answers.extract import ResponseExtractor
from connector.answers.records import META_COLUMNS
from connector.answers.schema import enriched_schema, primary_key
from connector.callbacks import Notice, OutputBarrier
from connector.config.model import SourceConfig
from connector.config.parts import Parts, task_config
from connector.config.sections import CacheConfig
from connector.config.task_settings import TaskConfig, needs, task_order
from connector.endpoint.client import EndpointClient
from connector.errors import ConfigError
from connector.pipeline.batch_ledger import SavedBatch
from connector.pipeline.connect import Endpoint, TransportFactory, connect, default_transport, requests_of
from connector.pipeline.context import RunContext
from connector.pipeline.cursor_sync import CursorTracker
from connector.pipeline.enrich import RowEnricher
from connector.pipeline.file_sync import file_sync_for
from connector.pipeline.tasks import Task, TaskEnricher
from connector.requests.media import StoreReader
from connector.rows.cursor import CursorState
from connector.rows.cursor_table import CursorTable
from connector.rows.file_history import FileHistory
from connector.rows.fingerprint import InputFingerprint
from connector.rows.opening import open_input
from connector.rows.table import Table
from connector.secrets import Redactor, requester_identity

# What the run is for decides its answer cache: a read or run opens (or creates) it; a dry run
# looks only into one that exists; an export needs none; an import stores the file's answers and
# never asks again; a worker has no input table (its rows come from Spark or Ray).
Purpose = Literal["read", "dry_run", "export", "import", "worker"]


@asynccontextmanager
async def prepare(config: SourceConfig, transport_factory: TransportFactory = default_transport, *,
                  purpose: Purpose = "read", stdin: BinaryIO | None = None, notice: Notice | None = None,
                  start: int = 0, saved: tuple[SavedBatch, ...] = (), before_output: OutputBarrier | None = None,
                  saved_input: InputFingerprint | None = None, saved_cursor: CursorState | None = None,
                  file_history: FileHistory | None = None, columns: Sequence[str] = ()) -> AsyncIterator[RunContext]:
    """The run context of ``config`` (see the module doc); its transport and cache are closed on the way out.
    ``start``, ``saved``, ``saved_input``, ``saved_cursor``, ``file_history``: the STATE's position, provider batches,
    input fingerprint, cursor mark (the table is the rows past it; the context's ``cursor`` follows the mark reached)
    and files read (input.incremental files: ``files``); ``columns``: a worker's input columns (it has no table), which
    its tasks' templates are checked against; ``before_output``: the output's barrier, where the cache commits."""
    _tasks_allowed(config, purpose)
    parts, dialect, template = requests_of(config)
    table, schema, notes = None, {}, []
    files = file_sync_for(parts.input.incremental, file_history, start, saved_input, purpose in ("read", "dry_run"))
    if purpose != "worker":
        table = open_input(parts.input, stdin, META_COLUMNS, saved_cursor, files.choose if files else None)
        start, saved_input = (files.start, files.saved_input) if files else (start, saved_input)  # within a file
        await table.start()  # stdin without input.columns infers them from its first rows
        template.check_columns(table.columns)
        notes += [*table.notes, *template.warnings]
        schema = enriched_schema(table.schema, parts.output)  # the same name and column checks as discover
        primary_key(parts.output, table.schema)
    async with connect(parts, Redactor.for_config(config), dialect, transport_factory, notice=notice,
                       learn=purpose != "worker") as endpoint:
        parts = endpoint.parts if purpose != "import" else endpoint.parts.without_validation_retries()
        running: list[bool] = []  # once the context is handed out, notes are no longer read

        def warn(text: str) -> None:  # the cache's: when it opens, and whenever it fails while running
            if running and notice is not None:
                notice("WARN", endpoint.redact(text))
            else:
                notes.append(text)

        cache = _cache_for(purpose, parts.cache, warn, dialect.normalise, endpoint.redact.masked, before_output)
        try:
            extractor = ResponseExtractor(parts.output.response_template, ExtraOutputs.from_config(parts.output))
            enricher = RowEnricher(parts.rows, endpoint.client, template, extractor, endpoint.redact, cache,
                                   requester=requester_identity(parts.request), store=_media_store(parts))
            tasks = _tasks_of(config, table.columns if table else columns, endpoint, cache) if config.tasks else None
            context = RunContext(parts, dialect, template, table, schema, endpoint.transport, endpoint.client,
                                 endpoint.redact, cache, enricher, start, saved, [endpoint.redact(n) for n in notes],
                                 saved_input, tasks, _tracker(parts, table), files,
                                 output_commits=before_output is not None and cache is not None)
            running.append(True)
            yield context
        finally:
            if cache is not None:
                cache.close()


def _tasks_allowed(config: SourceConfig, purpose: Purpose) -> None:
    """ConfigError when ``purpose`` cannot run the config's tasks."""
    if config.tasks and purpose in ("export", "import"):
        _no_dependents(config.tasks, "--export-batch" if purpose == "export" else "--import-batch")


def _tracker(parts: Parts, table: Table | None) -> CursorTracker | None:
    """The mark a cursor sync's rows reach (None without input.cursor); batch mode keeps none yet."""
    if not isinstance(table, CursorTable):
        return None
    if parts.run.batch.enabled:
        raise ConfigError("input.cursor: batch mode (batch.enabled) does not keep a cursor yet; run the cursor "
                          "sync without batch mode, or leave input.cursor unset")
    return CursorTracker(table)


def _no_dependents(tasks: list[TaskConfig], flag: str) -> None:
    """A batch file holds requests known before it runs: no task that uses another's answer (ConfigError)."""
    names = {t.name for t in tasks}
    for task in tasks:
        used = needs(task, names)
        if used:
            raise ConfigError(f"tasks: {flag} cannot hold task '{task.name}': its prompt uses the answer of task "
                              f"'{used[0]}', which is known only once the batch file has been run; use batch mode "
                              "(batch.enabled), which submits a dependent task once its input answers are in, or "
                              "export and import a config without the dependent tasks")


def _tasks_of(config: SourceConfig, columns: Sequence[str], endpoint: Endpoint,
              cache: AnswerCache | None) -> TaskEnricher:
    """The row enricher of each task, in dependency order: its own template (checked against the input's
    columns and the answers it uses), dialect and client, sharing the run's limiter and spend budget."""
    tasks = config.tasks or []
    names, built = {t.name for t in tasks}, dict[str, Task]()
    for task in task_order(tasks):
        uses = needs(task, names)
        parts, dialect, template = requests_of(task_config(config, task))
        try:
            template.check_columns([*columns, *(f"{name}.{column}" for name in uses
                                                for column in built[name].enricher.output_columns)])
        except ConfigError as exc:
            raise ConfigError(f"tasks ({task.name}): {exc.message}") from None
        client = EndpointClient(parts.client, endpoint.transport, dialect, limiter=endpoint.limiter,
                                budget=endpoint.client.budget)
        extractor = ResponseExtractor(parts.output.response_template, ExtraOutputs.from_config(parts.output))
        enricher = RowEnricher(parts.rows, client, template, extractor, endpoint.redact, cache,
                               requester=requester_identity(parts.request), store=_media_store(parts))
        built[task.name] = Task(task.name, uses, enricher, task.prefix)
    return TaskEnricher(list(built.values()), commit=cache.commit if cache is not None else None)


def _media_store(parts: Parts) -> StoreReader | None:
    """Where media cells naming s3:// (gs://, az://) objects are read: with the input's store settings."""
    if not parts.rows.media_columns:
        return None
    from connector.rows.media_files import StoreMedia

    return StoreMedia(parts.input)


def _cache_for(purpose: Purpose, settings: CacheConfig, warn: Callable[[str], None], normalise: Normalise,
               mask: Normalise, before_output: OutputBarrier | None) -> AnswerCache | None:
    """The answer cache for ``purpose`` (None when off or not needed); ``warn`` hears why it could not be used;
    its commit is registered at the output's barrier (``before_output``), when there is one."""
    if purpose == "export":
        return None
    if purpose == "dry_run":  # a dry run creates nothing: only a cache file that exists is looked into
        if not settings.enabled or not cache_path(settings).is_file():
            return None
        cache: AnswerCache | None = AnswerCache(cache_path(settings), settings.ttl_seconds,
                                                warn=lambda _message: None, normalise=normalise)
    else:
        cache = open_cache(settings, warn, normalise, mask)
    if cache is not None and before_output is not None:
        before_output(cache.commit)
    return cache
