"""Drive the connector through PyAirbyte, as a user of PyAirbyte would; print a JSON summary.

Runs with ``.venv-compat/bin/python`` (PyAirbyte is not installed in the project's venv):

    pyairbyte_roundtrip.py CONFIG_JSON CONNECTOR_EXECUTABLE [--check-only | --skip-check]
    pyairbyte_roundtrip.py CONFIG_JSON --pip-url WHEEL_OR_PIP_URL [--check-only]

Everything happens offline (no connector registry, no telemetry) and under the current
working directory (the caller passes a temporary one): the connector is the local
executable, or with ``--pip-url`` what PyAirbyte installs from that pip URL into its own
virtualenv under ``./install`` (as ``get_source(..., pip_url=...)`` does for a published
connector; the dependencies come from the package index). The cache is PyAirbyte's default
DuckDB cache under ``AIRBYTE_CACHE_ROOT``. The last stdout line is the summary:

    {"check": {"ok": bool, "error": str|null},
     "streams": [...], "read": {stream: {"count": n, "columns": [...], "rows": [...]}},
     "installed": {"version": str|null, "executable": str} (with --pip-url),
     "error": str|null}
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

WORKDIR = Path.cwd()
# PyAirbyte reads these when it is imported: set them first.
os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("AIRBYTE_PROJECT_DIR", str(WORKDIR))
os.environ.setdefault("AIRBYTE_CACHE_ROOT", str(WORKDIR / ".cache"))
os.environ.setdefault("AIRBYTE_TEMP_DIR", str(WORKDIR / "tmp"))
os.environ.setdefault("AIRBYTE_LOGGING_ROOT", str(WORKDIR / "logs"))
Path(os.environ["AIRBYTE_TEMP_DIR"]).mkdir(parents=True, exist_ok=True)

import airbyte as ab  # noqa: E402
import sqlalchemy  # noqa: E402

SAMPLE_ROWS = 3


def _jsonable(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)  # dates, decimals, timestamps


def _error_text(exc: BaseException) -> str:
    """The exception as PyAirbyte would show it (its str includes context and log excerpts)."""
    parts = [f"{type(exc).__name__}: {exc}"]
    context = getattr(exc, "context", None)
    if context:
        parts.append(f"context: {context}")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    config_path = argv[0]
    pip_url = argv[2] if argv[1] == "--pip-url" else None
    executable = None if pip_url else argv[1]
    check_only = "--check-only" in argv[2:]
    skip_check = "--skip-check" in argv[2:]
    config = json.loads(Path(config_path).read_text())
    summary: dict[str, object] = {"check": None, "streams": None, "read": None, "error": None}
    try:
        if pip_url:
            source = ab.get_source("source-openai-compatible", config=config, pip_url=pip_url,
                                   install_root=WORKDIR / "install", install_if_missing=True)
            bin_dir = source.executor.interpreter_path.parent
            summary["installed"] = {"version": source.executor.get_installed_version(),
                                    "executable": str(bin_dir / "source-openai-compatible")}
        else:
            source = ab.get_source(
                "source-openai-compatible",
                config=config,
                local_executable=executable,
                install_if_missing=False,
            )
        source.validate_config()  # PyAirbyte's own JSON-schema check of the config against the spec
        try:
            if not skip_check:
                source.check()
                summary["check"] = {"ok": True, "error": None}
        except ab.exceptions.AirbyteConnectorCheckFailedError as exc:
            summary["check"] = {"ok": False, "error": _error_text(exc)}
            return _finish(summary)
        if check_only:
            return _finish(summary)

        streams = source.get_available_streams()
        summary["streams"] = streams
        summary["discovered"] = {
            s.name: {
                "supported_sync_modes": [m.value for m in s.supported_sync_modes],
                "properties": sorted((s.json_schema or {}).get("properties", {})),
            }
            for s in source.discovered_catalog.streams
        }
        source.select_all_streams()
        summary["configured_sync_modes"] = {
            s.stream.name: s.sync_mode.value for s in source.get_configured_catalog().streams
        }
        cache = ab.get_default_cache()
        summary["cache_db"] = str(cache.db_path)
        result = source.read(cache=cache)
        engine = cache.get_sql_engine()
        per_stream: dict[str, object] = {}
        for name in streams:
            table = cache.processor.get_sql_table_name(name)
            columns = [c["name"] for c in sqlalchemy.inspect(engine).get_columns(
                table, schema=cache.schema_name)]
            with engine.connect() as conn:
                count = conn.execute(sqlalchemy.text(
                    f'SELECT count(*) FROM "{cache.schema_name}"."{table}"')).scalar_one()
            dataset = result[name]
            rows = [_jsonable(dict(r)) for _, r in zip(range(SAMPLE_ROWS), dataset, strict=False)]
            per_stream[name] = {"table": table, "count": int(count), "columns": columns,
                                "rows": rows, "dataset_len": len(dataset)}
        summary["read"] = per_stream
        summary["processed_records"] = result.processed_records
        summary["state"] = {
            # PyAirbyte keeps states as airbyte_protocol (pydantic v2) models.
            name: cache.get_state_provider(source.name).get_stream_state(name).model_dump(
                mode="json")
            for name in streams
        }

        # An incremental re-read: PyAirbyte passes back the STATE it stored (with its extra
        # null keys); the enriched stream must resume after its last row and emit nothing.
        again = source.read(cache=cache)
        with engine.connect() as conn:
            counts = {name: int(conn.execute(sqlalchemy.text(
                f'SELECT count(*) FROM "{cache.schema_name}".'
                f'"{cache.processor.get_sql_table_name(name)}"')).scalar_one()) for name in streams}
        summary["second_read"] = {"processed_records": again.processed_records,
                                  "counts": counts}
    except Exception as exc:  # reported to the test, which fails with it
        summary["error"] = _error_text(exc)
        summary["traceback"] = traceback.format_exc()
    return _finish(summary)


def _finish(summary: dict[str, object]) -> int:
    sys.stdout.write("\n" + json.dumps(summary, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
