"""Where the rows come from: the ``input`` section of the config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from connector.config.sections import ColumnType, Strict


class InputConfig(Strict):
    """Where the rows come from."""

    path: str | None = Field(
        None,
        title="Path",
        description=(
            "A CSV, JSONL or Parquet file, a glob (data/*.parquet) or a directory; '-' reads standard input "
            "(JSON lines, or the Airbyte messages of another connector's read)."
        ),
        json_schema_extra={"order": 0, "examples": ["data/reviews.csv", "data/part-*.parquet", "-"]},
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
    columns: dict[str, ColumnType] | None = Field(
        None,
        title="Columns (stdin)",
        description=(
            "For input.path '-': the input columns and their types, e.g. {\"review\": \"string\", \"id\": "
            "\"integer\"}. discover declares them (it cannot read stdin); read keeps only these columns. "
            "Without it, read infers the columns from the first batch and keeps them."
        ),
        json_schema_extra={"order": 5},
    )
    stream: str | None = Field(
        None,
        title="Stream (stdin)",
        description="With Airbyte messages on stdin: take only the RECORDs of this stream. Default: every RECORD.",
        json_schema_extra={"order": 6},
    )

    @property
    def is_stdin(self) -> bool:
        """Rows come from standard input."""
        return self.path == "-"

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        if (self.path is None) == (self.rows is None):
            raise ValueError("give exactly one of input.path (a file, glob or folder) or input.rows")
        if not self.is_stdin and (self.columns is not None or self.stream is not None):
            raise ValueError("input.columns and input.stream apply to standard input only (input.path '-')")
        if self.is_stdin and self.format not in ("auto", "jsonl", "airbyte"):
            raise ValueError("input.format: standard input carries JSON lines or Airbyte messages "
                             "(auto, jsonl or airbyte)")
        return self
