"""The run context: everything one run uses, built once by :func:`connector.pipeline.prepare.prepare`.

``read``, ``run``, the dry run, the batch path and the Spark/Ray workers take this one value;
none of them builds a client, an enricher or a cache of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.answers.cache import AnswerCache
from connector.config.parts import Parts
from connector.dialects import Dialect
from connector.endpoint.client import EndpointClient
from connector.endpoint.transport import Transport
from connector.pipeline.batch_ledger import SavedBatch
from connector.pipeline.cursor_sync import CursorTracker
from connector.pipeline.enrich import RowEnricher
from connector.pipeline.file_sync import FileSync
from connector.pipeline.tasks import TaskEnricher
from connector.requests.templates import RequestTemplate
from connector.rows.fingerprint import InputFingerprint
from connector.rows.table import Table
from connector.secrets import Redactor


@dataclass
class RunContext:
    """One prepared run (see the module doc).

    ``start`` is the starting position (rows 1..start are done, from the STATE), ``saved`` the
    provider batches the STATE lists, ``saved_input`` the STATE's fingerprint of rows 1..start (None
    for a state written before fingerprints, or none). ``notes`` are what the run should say before its first row
    (input renames, template warnings, why the answer cache could not be used).
    """

    parts: Parts
    dialect: Dialect
    template: RequestTemplate
    table: Table | None  # None for a worker: its rows come from the engine
    schema: dict[str, Any]  # the records' JSON schema ({} for a worker before it knows its input)
    transport: Transport
    client: EndpointClient
    redact: Redactor
    cache: AnswerCache | None
    enricher: RowEnricher
    start: int = 0
    saved: tuple[SavedBatch, ...] = ()
    notes: list[str] = field(default_factory=list)
    saved_input: InputFingerprint | None = None
    tasks: TaskEnricher | None = None  # the config's tasks (connector.pipeline.tasks): the run loop's enricher then
    cursor: CursorTracker | None = None  # input.cursor in an incremental sync: the mark the rows emitted reach
    files: FileSync | None = None  # input.incremental files: which files this sync reads, the history it leaves
    output_commits: bool = False  # the output commits the cache before records reach their reader (prepare's
    # before_output), not the run loop before each record

    @property
    def input(self) -> Table:
        """The input table (every run but a worker's has one)."""
        assert self.table is not None, "a worker's run context has no input table"
        return self.table
