"""Airbyte protocol messages as plain dicts, and their one serialiser.

Messages are built as dicts rather than model instances: a sync emits one per
row, and constructing and validating a pydantic model per record would cost more
than the HTTP call's client side. Their shape is checked against airbyte-cdk's
models in the compatibility tests instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from connector.jsonbytes import dumps_line

Message = dict[str, Any]
StreamStatus = Literal["STARTED", "RUNNING", "COMPLETE", "INCOMPLETE"]


def now_ms() -> int:
    """Epoch milliseconds as an int: PyAirbyte drops records whose emitted_at is a float."""
    return time.time_ns() // 1_000_000


# One protocol message as one line of JSON (with the newline). The shared serialiser itself, not a
# function around it: a read calls it once per record, and the wrapper was a Python frame per row.
serialize = dumps_line


def record(stream: str, data: Mapping[str, Any], emitted_at: int | None = None) -> Message:
    return {
        "type": "RECORD",
        "record": {
            "stream": stream,
            "data": data,
            "emitted_at": now_ms() if emitted_at is None else emitted_at,
        },
    }


def state(stream: str, stream_state: Mapping[str, Any], record_count: int) -> Message:
    """A per-stream STATE; ``record_count`` counts records since the previous state."""
    return {
        "type": "STATE",
        "state": {
            "type": "STREAM",
            "stream": {
                "stream_descriptor": {"name": stream},
                "stream_state": dict(stream_state),
            },
            "sourceStats": {"recordCount": float(record_count)},
        },
    }


def stream_status(stream: str, status: StreamStatus) -> Message:
    return {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": float(now_ms()),
            "stream_status": {"stream_descriptor": {"name": stream}, "status": status},
        },
    }


def trace_error(message: str, failure_type: str, internal_message: str | None = None) -> Message:
    error: dict[str, Any] = {"message": message, "failure_type": failure_type}
    if internal_message:
        error["internal_message"] = internal_message
    return {
        "type": "TRACE",
        "trace": {"type": "ERROR", "emitted_at": float(now_ms()), "error": error},
    }


def estimate(stream: str, row_count: int) -> Message:
    return {
        "type": "TRACE",
        "trace": {
            "type": "ESTIMATE",
            "emitted_at": float(now_ms()),
            "estimate": {"name": stream, "type": "STREAM", "row_estimate": row_count},
        },
    }


def log(message: str, level: str = "INFO") -> Message:
    return {"type": "LOG", "log": {"level": level, "message": message}}


def connection_status(succeeded: bool, message: str) -> Message:
    return {
        "type": "CONNECTION_STATUS",
        "connectionStatus": {"status": "SUCCEEDED" if succeeded else "FAILED", "message": message},
    }


def spec(specification: Mapping[str, Any]) -> Message:
    return {"type": "SPEC", "spec": dict(specification)}


def catalog(streams: list[dict[str, Any]]) -> Message:
    return {"type": "CATALOG", "catalog": {"streams": streams}}
