"""Where the rows come from: the ``input`` section of the config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from connector.config.database import DatabaseConnection
from connector.config.sections import Strict, TLSConfig
from connector.config.storage import (
    REMOTE_SCHEMES,
    AzureStorage,
    GcsStorage,
    HttpsStorage,
    S3Storage,
    SftpStorage,
    scheme_of,
)

# The types input.columns can declare (connector.rows.kinds says what each accepts).
InputColumnType = Literal["string", "integer", "number", "boolean", "date", "timestamp", "decimal", "object",
                          "array"]


class InputConfig(Strict):
    """Where the rows come from."""

    path: str | None = Field(
        None,
        title="Path",
        description=(
            "A CSV, JSONL or Parquet file, a glob (data/*.parquet) or a directory; '-' reads standard input "
            "(JSON lines, or the Airbyte messages of another connector's read). Remote: s3://bucket/key (a "
            "glob or prefix too; input.s3), gs://bucket/key (input.gcs), "
            "az://container/path (input.azure), https://host/file.csv (input.https), sftp://host/path (input.sftp)."
        ),
        json_schema_extra={"order": 0, "examples": ["data/reviews.csv", "data/part-*.parquet", "-",
                                                    "s3://bucket/tickets/*.parquet"]},
    )
    format: Literal["auto", "csv", "jsonl", "parquet", "airbyte"] = Field(
        "auto",
        title="Format",
        description=(
            "File format; 'auto' infers it from the file extension (on stdin: from the first line). "
            "'airbyte': stdin carries Airbyte messages; each RECORD's data is a row, other lines are skipped."
        ),
        json_schema_extra={"order": 1},
    )
    rows: list[dict[str, Any]] | None = Field(
        None,
        title="Inline rows",
        description="Rows given directly in the config, for tiny jobs and tests.",
        json_schema_extra={"order": 2},
    )
    primary_key: str | None = Field(
        None,
        title="Primary key column",
        description="Input column that identifies a row. Default: the row's position (_row_number).",
        json_schema_extra={"order": 3},
    )
    batch_size: int = Field(
        1024,
        gt=0,
        le=1_000_000,
        title="Read batch size",
        description="Rows read from the input per batch; memory stays bounded by this.",
        json_schema_extra={"order": 4},
    )
    columns: dict[str, InputColumnType] | None = Field(
        None,
        title="Column types",
        description=(
            "Input column -> type (string, integer, number, boolean, date, timestamp, decimal, object, array), "
            "e.g. {\"zip\": \"string\", \"id\": \"integer\"}. A declared column's values are converted once; "
            "one that does not fit is that row's bad_input error. Undeclared columns keep their values as the "
            "file holds them (CSV: text unless every cell of the column is written as the type writes it). "
            "For input.path '-' (stdin) these are the columns: discover declares them, read keeps only these."
        ),
        json_schema_extra={"order": 5},
    )
    stream: str | None = Field(
        None,
        title="Stream (stdin)",
        description="With Airbyte messages on stdin: take only the RECORDs of this stream. Default: every RECORD.",
        json_schema_extra={"order": 6},
    )
    encoding: str = Field(
        "utf-8",
        title="Encoding",
        description=(
            "Text encoding of CSV and JSONL input (and of stdin), e.g. utf-8, latin-1, cp1252, utf-16. Bytes "
            "that are not text in it stop the run before any request, naming file, line and byte offset."
        ),
        json_schema_extra={"order": 7},
    )
    metadata_prefix: str = Field(
        "input",
        min_length=1,
        title="Prefix for input columns named like metadata columns",
        description=(
            "An input that is itself an enrichment has columns named like the ones this connector adds "
            "(_status, _row_number, ...). They are kept under this prefix: _status becomes input_status."
        ),
        json_schema_extra={"order": 8},
    )
    spool_max_mb: int = Field(
        10_240,
        gt=0,
        title="Largest pipe input (MB)",
        description=(
            "An input.path that can be read only once (a named pipe, bash's <(zcat data.csv.gz)) is copied "
            "once into a temporary file, up to this many megabytes; a longer one stops the run. A device "
            "such as /dev/zero is refused."
        ),
        json_schema_extra={"order": 14},
    )

    s3: S3Storage | None = Field(None, title="S3", description="How to reach an s3:// input.path.",
                                 json_schema_extra={"order": 9})
    gcs: GcsStorage | None = Field(None, title="Google Cloud Storage", description="How to reach a gs:// input.path.",
                                   json_schema_extra={"order": 16})
    azure: AzureStorage | None = Field(None, title="Azure Blob Storage",
                                       description="How to reach an az:// or abfs:// input.path.",
                                       json_schema_extra={"order": 15})
    https: HttpsStorage | None = Field(None, title="HTTPS", description="How to reach an https:// input.path.",
                                       json_schema_extra={"order": 10})
    sftp: SftpStorage | None = Field(None, title="SFTP", description="How to reach an sftp:// input.path.",
                                     json_schema_extra={"order": 11})
    sql: str | None = Field(
        None, title="SQL query",
        description="Rows from a database instead of files: a query run as written (add ORDER BY so a resumed sync "
        "finds its place). Needs input.database.",
        json_schema_extra={"order": 12, "examples": ["SELECT id, text FROM tickets ORDER BY id"]})
    database: DatabaseConnection | None = Field(
        None, title="Database", description="Where input.sql runs: PostgreSQL or SQLite.",
        json_schema_extra={"order": 13})
    limit: int | None = Field(
        None,
        gt=0,
        title="Row limit (a sample)",
        description=(
            "Read only the first N rows of the input (read, run and the dry run; the input is not changed), to "
            "try a prompt on a sample. The STATE of such a run carries the limit and is never a finished sync: a "
            "later full-refresh sync starts over, an incremental one continues after the rows it emitted. The "
            "command line's --limit sets it too."
        ),
        json_schema_extra={"order": 17, "examples": [20]},
    )
    incremental: Literal["rows", "files"] = Field(
        "rows",
        title="Incremental by",
        description=(
            "What an incremental sync reads after the last one. 'rows': the rows after the last row emitted "
            "(rows appended to the input). 'files' (a folder, glob or bucket prefix): the files not read "
            "before and those changed since (size, modification time or ETag), each whole; files unchanged "
            "since they were read are skipped. The STATE keeps the files read (docs/INPUT.md)."
        ),
        json_schema_extra={"order": 20},
    )

    cursor: str | None = Field(
        None,
        title="Cursor column (incremental syncs)",
        description=(
            "A column whose value grows when a row is added or changed (an updated_at, or an id that only "
            "grows). An incremental sync then reads only the rows past the highest value the last sync enriched "
            "(input.sql: pushed into the query as a bound parameter; files: filtered as they are read); the STATE "
            "keeps that value and the keys of the rows at it, so rows with the same value are neither lost nor "
            "enriched twice. Rows with a null value are read only by a sync without a saved value. Compared in "
            "the column's type (integer, number, text, date, timestamp). The configured catalog's cursor_field "
            "may name it instead. A full-refresh sync reads every row."
        ),
        json_schema_extra={"order": 18, "examples": ["updated_at"]},
    )

    # The top-level tls section, set by SourceConfig: one TLS setting for every HTTPS connection.
    _tls: TLSConfig = PrivateAttr(default_factory=TLSConfig)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}; use a name such as utf-8, latin-1, cp1252 or "
                             "utf-16") from None
        return encoding

    @property
    def tls(self) -> TLSConfig:
        """The run's TLS settings (the top-level ``tls`` section), for an https:// input."""
        return self._tls

    def use_tls(self, tls: TLSConfig) -> None:
        self._tls = tls

    @property
    def scheme(self) -> str | None:
        """The URL scheme of a remote input.path (``s3``, ``https``, ``sftp``); None for local files."""
        return None if self.path is None else scheme_of(self.path)

    @property
    def is_stdin(self) -> bool:
        """Rows come from standard input."""
        return self.path == "-"

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        if [self.path, self.rows, self.sql].count(None) != 2:
            raise ValueError("give exactly one of input.path (a file, glob or folder), input.rows or input.sql")
        if (self.sql is None) != (self.database is None):
            raise ValueError("input.sql and input.database go together: the query, and the database it runs on")
        if not self.is_stdin and self.stream is not None:
            raise ValueError("input.stream applies to standard input only (input.path '-')")
        if self.is_stdin and self.format not in ("auto", "jsonl", "airbyte"):
            raise ValueError("input.format: standard input carries JSON lines or Airbyte messages "
                             "(auto, jsonl or airbyte)")
        if self.cursor is not None and self.is_stdin:
            raise ValueError("input.cursor: standard input is read once, so a sync cannot pick the rows past a "
                             "cursor from it; give a file, inline rows or input.sql")
        if self.incremental == "files" and (self.path is None or self.is_stdin):
            raise ValueError("input.incremental files needs input.path naming files (a file, glob, folder or "
                             "bucket prefix), not standard input, input.rows or input.sql")
        if self.incremental == "files" and self.cursor is not None:
            raise ValueError("input.incremental files and input.cursor are two ways to pick what a sync reads; "
                             "set one of them")
        scheme = self.scheme
        if scheme is not None and scheme not in REMOTE_SCHEMES:
            raise ValueError(f"input.path: {scheme}:// is not a location this connector reads; use s3://, "
                             "https://, sftp:// or a local path")
        return self
