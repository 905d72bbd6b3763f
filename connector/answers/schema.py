"""The enriched records' JSON schema: the input's columns, the output columns, the metadata columns.

One home for what a record holds, below every way to run it: ``discover`` declares it
(:mod:`connector.airbyte.catalog`), ``run`` writes files of it (:mod:`connector.standalone`), and
the Spark and Ray workers build Arrow batches of it (:mod:`connector.scaleout`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from connector.answers.extra_columns import extra_output_columns
from connector.answers.records import META_COLUMNS, ROW_NUMBER
from connector.answers.task_columns import TASK_META
from connector.config.parts import OutputPart
from connector.config.sections import ResponseTemplate
from connector.dialects.embeddings import VECTOR_STEP, vector_schema
from connector.errors import ConfigError
from connector.rows.columns import field_schema
from connector.rows.file_columns import FILE_ROW, FILE_URL

_PATH_TYPES = {
    "content": {"type": ["null", "string"]},
    "finish_reason": {"type": ["null", "string"]},
    "model": {"type": ["null", "string"]},
    "id": {"type": ["null", "string"]},
    "role": {"type": ["null", "string"]},
    "reasoning_content": {"type": ["null", "string"]},
    "created": {"type": ["null", "integer"]},
}
_ANY = {"type": ["null", "string", "number", "integer", "boolean", "object", "array"]}


def _path_schema(path: str, dimensions: int | None = None) -> dict[str, Any]:
    last = path.rsplit(".", 1)[-1]
    if last == VECTOR_STEP:
        return vector_schema(dimensions)
    if last.endswith("tokens"):
        return {"type": ["null", "integer"]}
    return dict(_PATH_TYPES.get(last, _ANY))


def output_columns(template: ResponseTemplate, dimensions: int | None = None) -> dict[str, dict[str, Any]]:
    """Output column name -> JSON schema; a vector's length is ``dimensions`` when known."""
    out = {name: _path_schema(path, dimensions) for name, path in template.columns.items()}
    for name, kind in template.json_columns.items():
        out[name] = {"type": ["null", kind]}
    return out


def enriched_schema(input_schema: pa.Schema, output: OutputPart) -> dict[str, Any]:
    """The enriched stream's JSON schema; fails when an output column shadows an input one."""
    properties: dict[str, Any] = {f.name: field_schema(f) for f in input_schema}
    outputs = task_outputs(output.tasks) if output.tasks else _outputs(output)
    clash = sorted((set(outputs) | set(META_COLUMNS)) & set(properties))
    if clash:
        raise ConfigError(
            f"{'tasks' if output.tasks else 'response_template'}: output column(s) {', '.join(clash)} have the name "
            "of an input column; rename " + ("the task" if output.tasks else
                                              "them in response_template.columns or json_columns"))
    properties.update(outputs)
    properties.update(META_COLUMNS)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "additionalProperties": True, "properties": properties}


def _outputs(output: OutputPart) -> dict[str, dict[str, Any]]:
    outputs = output_columns(output.response_template, output.dimensions)
    outputs.update(extra_output_columns(output))  # output_schema properties, _tool_calls
    return outputs


def task_outputs(tasks: tuple[tuple[str, str, OutputPart], ...]) -> dict[str, dict[str, Any]]:
    """Every task's columns (:mod:`connector.answers.task_columns`): its output columns after its prefix,
    its metadata after its name; a name two tasks would both write is a ConfigError."""
    out: dict[str, dict[str, Any]] = {}
    for name, prefix, output in tasks:
        named = [(prefix + column, schema) for column, schema in _outputs(output).items()]
        for key, schema in [*named, *((f"{name}_{field}", schema) for field, schema in TASK_META.items())]:
            if key in out or key in META_COLUMNS:
                raise ConfigError(f"tasks: task '{name}' would write column '{key}', which another task (or the "
                                  "row's metadata) writes too; rename a task, or set its column_prefix true")
            out[key] = schema
    return out


def record_key(output: OutputPart, input_schema: pa.Schema) -> list[list[str]]:
    """The records' primary key as the catalog declares it: :func:`primary_key`, or with input.incremental
    files and no input.primary_key, the row's file and its row in it (connector.rows.file_columns)."""
    if output.primary_key is None and FILE_ROW in input_schema.names:
        return [[FILE_URL], [FILE_ROW]]
    return [[primary_key(output, input_schema)]]


def primary_key(output: OutputPart, input_schema: pa.Schema) -> str:
    """The records' primary key: ``input.primary_key``, else ``_row_number``; fails when the input lacks it."""
    key = output.primary_key
    if key is None:
        return ROW_NUMBER
    if key not in input_schema.names:
        raise ConfigError(
            f"input.primary_key: column '{key}' is not in the input; columns are: {', '.join(input_schema.names)}"
        )
    return key
