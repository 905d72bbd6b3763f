"""connector.airbyte.state.position_for (a STATE bound to its input, types strict), connector.airbyte.catalog
(streams) and connector.answers.schema (schemas, primary key)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from connector.airbyte.catalog import MODELS_STREAM, SYNC_MODES, enriched_stream, selected_streams
from connector.airbyte.protocol import state as state_message
from connector.airbyte.state import StreamPosition, position_for
from connector.answers.records import META_COLUMNS, ROW_NUMBER
from connector.answers.schema import enriched_schema, output_columns, primary_key
from connector.config.load import load_config
from connector.config.parts import parts_of
from connector.config.sections import ResponseTemplate
from connector.errors import CatalogError, ConfigError, ConnectorError, StateError
from tests.conftest import catalog_for, chat_reply, mock_transport

STREAM = "enriched_rows"


def stream_state(stream_state: Any, name: str = STREAM) -> dict[str, Any]:
    return {"type": "STREAM",
            "stream": {"stream_descriptor": {"name": name}, "stream_state": stream_state}}


# position_for ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], {}])
@pytest.mark.parametrize("mode", SYNC_MODES)
def test_no_state_starts_at_zero(raw: Any, mode: str) -> None:
    assert position_for(raw, STREAM, mode) == StreamPosition(0, False)


def test_incremental_continues_after_saved_position() -> None:
    raw = [stream_state({"position": 42})]
    assert position_for(raw, STREAM, "incremental") == StreamPosition(42, False)


def test_incremental_continues_even_after_a_complete_sync() -> None:
    # rows appended since are picked up: the position is the cursor
    raw = [stream_state({"position": 42, "sync_complete": True})]
    assert position_for(raw, STREAM, "incremental") == StreamPosition(42, True)


def test_full_refresh_resumes_an_interrupted_sync() -> None:
    raw = [stream_state({"position": 17})]
    assert position_for(raw, STREAM, "full_refresh") == StreamPosition(17, False)


def test_full_refresh_after_complete_sync_restarts_at_zero() -> None:
    raw = [stream_state({"position": 17, "sync_complete": True})]
    assert position_for(raw, STREAM, "full_refresh") == StreamPosition(0, False)


def test_pyairbyte_style_state_with_extra_null_keys() -> None:
    raw = [{"type": "STREAM",
            "stream": {"stream_descriptor": {"name": STREAM, "namespace": None},
                       "stream_state": {"position": 9}},
            "global": None, "data": None, "sourceStats": None, "destinationStats": None}]
    assert position_for(raw, STREAM, "incremental") == StreamPosition(9, False)


def test_full_airbyte_messages_are_unwrapped() -> None:
    raw = [state_message(STREAM, {"position": 5}, record_count=5)]
    assert raw[0]["type"] == "STATE"
    assert position_for(raw, STREAM, "incremental") == StreamPosition(5, False)


def test_own_emitted_state_round_trips() -> None:
    saved = StreamPosition(12, True)
    raw = [state_message(STREAM, saved.as_state(), 1)["state"]]
    assert position_for(raw, STREAM, "incremental") == saved
    assert StreamPosition(3).as_state() == {"position": 3}


def test_state_of_other_streams_is_ignored() -> None:
    raw = [stream_state({"position": 3}, name="models"), stream_state({"position": 8})]
    assert position_for(raw, STREAM, "incremental").position == 8
    assert position_for(raw, "other_stream", "incremental") == StreamPosition()


def test_legacy_dict_state() -> None:
    raw = {STREAM: {"position": 30}, "models": {}}
    assert position_for(raw, STREAM, "incremental") == StreamPosition(30, False)
    raw = {STREAM: {"position": 30, "sync_complete": True}}
    assert position_for(raw, STREAM, "full_refresh") == StreamPosition(0, False)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([{"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": []}}], "type GLOBAL"),
        ([{"type": "LEGACY", "data": {"x": 1}}], "type LEGACY"),
        (["not a message"], "state.0: expected a STATE message object"),
        ([{"type": "STREAM", "stream": {"stream_state": {"position": 1}}}], "stream_descriptor.name"),
        ("position=4", "expected a list of STATE messages"),
    ],
)
def test_malformed_or_foreign_state_structure(raw: Any, fragment: str) -> None:
    with pytest.raises(StateError, match=fragment) as info:
        position_for(raw, STREAM, "incremental")
    assert info.value.failure_type == "config_error"


@pytest.mark.parametrize(
    "entry",
    [{"cursor": "2024-01-01"}, {"position": "4"}, {"position": -1}, {"position": 2.5}, [1], "x"],
)
def test_foreign_stream_state_raises_naming_the_stream(entry: Any) -> None:
    with pytest.raises(StateError) as info:
        position_for([stream_state(entry)], STREAM, "incremental")
    message = str(info.value)
    assert f"state for stream '{STREAM}' is not this source's" in message
    assert "start over" in message


# selected_streams -------------------------------------------------------------------------

KNOWN = {STREAM: SYNC_MODES, MODELS_STREAM: ("full_refresh",)}


def test_selected_streams_reads_name_and_mode() -> None:
    catalog = catalog_for(STREAM, "incremental")
    catalog["streams"] += catalog_for(MODELS_STREAM)["streams"]
    selected = selected_streams(catalog, KNOWN)
    assert [(s.name, s.sync_mode) for s in selected] == [(STREAM, "incremental"),
                                                         (MODELS_STREAM, "full_refresh")]


def test_sync_mode_defaults_to_full_refresh() -> None:
    catalog = catalog_for()
    del catalog["streams"][0]["sync_mode"]
    assert selected_streams(catalog, KNOWN)[0].sync_mode == "full_refresh"


def test_unknown_stream_is_named_with_offered_ones() -> None:
    with pytest.raises(CatalogError) as info:
        selected_streams(catalog_for("reviews"), KNOWN)
    message = str(info.value)
    assert "catalog.streams.0: unknown stream 'reviews'" in message
    assert "this source offers: enriched_rows, models" in message
    assert "discover" in message


def test_unsupported_sync_mode_is_named() -> None:
    with pytest.raises(CatalogError) as info:
        selected_streams(catalog_for(MODELS_STREAM, "incremental"), KNOWN)
    message = str(info.value)
    assert "stream 'models' does not support sync_mode 'incremental'" in message
    assert "use one of: full_refresh" in message


@pytest.mark.parametrize("catalog", [[], {"streams": "x"}, {"nope": []}, None])
def test_catalog_must_have_streams_list(catalog: Any) -> None:
    with pytest.raises(CatalogError, match="'streams' list"):
        selected_streams(catalog, KNOWN)


def test_catalog_entry_without_stream_name() -> None:
    with pytest.raises(CatalogError, match=r"catalog.streams.1: each entry needs stream.name"):
        selected_streams({"streams": [catalog_for()["streams"][0], {"stream": {}}]}, KNOWN)


# enriched schema -------------------------------------------------------------------------

INPUT = pa.schema([("id", pa.string()), ("text", pa.string()), ("stars", pa.int64())])


def config(**extra: Any) -> Any:
    return load_config({"api_key": "sk-test", "prompt": "{{text}}", "input": {"rows": [{"text": "a"}]}, **extra})


def test_enriched_schema_has_inputs_outputs_and_meta_columns() -> None:
    cfg = config(response_template={
        "columns": {"answer": "choices.0.message.content", "tokens": "usage.total_tokens",
                    "why": "choices.0.finish_reason", "raw": "choices.0.message"},
        "json_columns": {"sentiment": "string", "score": "number"},
    })
    schema = enriched_schema(INPUT, parts_of(cfg).output)
    props = schema["properties"]
    assert list(props)[:3] == ["id", "text", "stars"]
    assert props["stars"] == {"type": ["null", "integer"]}
    assert props["answer"] == {"type": ["null", "string"]}
    assert props["tokens"] == {"type": ["null", "integer"]}
    assert props["why"] == {"type": ["null", "string"]}
    assert "object" in props["raw"]["type"]
    assert props["sentiment"] == {"type": ["null", "string"]}
    assert props["score"] == {"type": ["null", "number"]}
    for name, column_schema in META_COLUMNS.items():
        assert props[name] == column_schema
    assert set(props) == {"id", "text", "stars", "answer", "tokens", "why", "raw",
                          "sentiment", "score", *META_COLUMNS}
    assert schema["type"] == "object"


def test_default_output_column_is_answer() -> None:
    assert output_columns(ResponseTemplate()) == {"answer": {"type": ["null", "string"]}}


@pytest.mark.parametrize(
    "template",
    [{"columns": {"text": "choices.0.message.content"}},
     {"json_columns": {"stars": "integer"}}],
)
def test_output_column_clashing_with_input_column_raises(template: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        enriched_schema(INPUT, parts_of(config(response_template=template)).output)
    message = str(info.value)
    assert message.startswith("response_template: ")
    assert "text" in message or "stars" in message


def test_input_column_named_like_a_meta_column_raises() -> None:
    schema = pa.schema([("text", pa.string()), ("_status", pa.string())])
    with pytest.raises(ConfigError, match="_status"):
        enriched_schema(schema, parts_of(config()).output)


def test_primary_key_defaults_to_row_number() -> None:
    assert primary_key(parts_of(config()).output, INPUT) == ROW_NUMBER == "_row_number"


def test_configured_primary_key_is_used() -> None:
    cfg = config(input={"rows": [{"id": "a", "text": "x"}], "primary_key": "id"})
    assert primary_key(parts_of(cfg).output, INPUT) == "id"
    stream = enriched_stream(cfg.stream_name, parts_of(cfg).output, INPUT)
    assert stream["source_defined_primary_key"] == [["id"]]
    assert stream["name"] == STREAM
    assert stream["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert stream["default_cursor_field"] == [ROW_NUMBER]


def test_configured_primary_key_missing_from_input_raises() -> None:
    cfg = config(input={"rows": [{"text": "x"}], "primary_key": "uuid"})
    with pytest.raises(ConfigError) as info:
        primary_key(parts_of(cfg).output, INPUT)
    message = str(info.value)
    assert "input.primary_key: column 'uuid' is not in the input" in message
    assert "id, text, stars" in message


def test_custom_stream_name_is_the_stream_name() -> None:
    named = config(stream_name="reviews_scored")
    assert enriched_stream(named.stream_name, parts_of(named).output, INPUT)["name"] == "reviews_scored"


def test_a_single_state_message_object_is_accepted() -> None:
    message = {"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "enriched_rows"}, "stream_state": {"position": 9}}}}
    assert position_for(message, "enriched_rows", "incremental").position == 9


def test_a_boolean_position_is_not_a_position() -> None:
    with pytest.raises(StateError):
        position_for({"enriched_rows": {"position": True}}, "enriched_rows", "incremental")


# A STATE is bound to the input it came from ----------------------------------------------


def sync(tmp: Path, state: Any, *, mode: str = "incremental", **input_extra: Any,
         ) -> tuple[list[dict[str, Any]], ConnectorError | None, int]:
    """An in-process read of ``tmp/data.csv`` with ``state``: its messages, the error that ended it, and how
    many requests reached the endpoint."""
    from connector.airbyte import commands

    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(1)
        return httpx.Response(200, json=chat_reply("ok"))

    config = {"url": "http://fake.local/v1", "api_key": "sk-test", "model": "m", "prompt": "Say {{text}}",
              "input": {"path": str(tmp / "data.csv"), **input_extra}}
    messages: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in commands.read(config, catalog_for(sync_mode=mode), state, mock_transport(answer)):
            messages.append(message)

    try:
        asyncio.run(collect())
    except ConnectorError as exc:
        return messages, exc, len(asked)
    return messages, None, len(asked)


def write_rows(path: Path, texts: list[str]) -> None:
    path.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts, 1)))


def last_state(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [[m for m in messages if m["type"] == "STATE"][-1]]


def rows_of(messages: list[dict[str, Any]]) -> list[int]:
    return [m["record"]["data"]["_row_number"] for m in messages if m["type"] == "RECORD"]


def test_the_state_of_a_100_row_file_is_refused_for_another_150_row_file(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", [f"old {i}" for i in range(100)])
    first, error, _ = sync(tmp_path, None)
    assert error is None and rows_of(first)[-1] == 100
    write_rows(tmp_path / "data.csv", [f"new {i}" for i in range(150)])
    os.utime(tmp_path / "data.csv", (1_800_000_000, 1_800_000_000))
    messages, error, asked = sync(tmp_path, last_state(first))
    assert isinstance(error, StateError) and error.failure_type == "config_error"
    assert rows_of(messages) == [] and asked == 0  # nothing emitted, nothing bought
    assert "does not belong to this input" in error.message and "rows 1..100" in error.message
    assert f"'{tmp_path / 'data.csv'}' changed" in error.message and "2027-01-15 08:00:00 UTC now" in error.message
    assert "run without --state" in error.message


@pytest.mark.parametrize("change", ["edit", "insert", "remove"])
def test_a_row_edited_inserted_or_removed_before_the_position_is_named_not_skipped(tmp_path: Path,
                                                                                   change: str) -> None:
    texts = [f"row {i}" for i in range(1, 11)]
    write_rows(tmp_path / "data.csv", texts)
    first, _, _ = sync(tmp_path, None)
    if change == "edit":
        texts[4] = "row 5 edited"
    elif change == "insert":
        texts.insert(4, "a row inserted")
    else:
        del texts[4]
    write_rows(tmp_path / "data.csv", [*texts, "row 11"])
    messages, error, asked = sync(tmp_path, last_state(first))
    assert isinstance(error, StateError) and "rows 1..10 of the input are not the rows it covered" in error.message
    assert rows_of(messages) == [] and asked == 0


def test_appended_rows_are_read_and_the_state_binds_them_too(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["1", "2", "3"])  # text column read as integers
    first, _, _ = sync(tmp_path, None)
    write_rows(tmp_path / "data.csv", ["1", "2", "3", "four", "five"])  # now a string column: no row changed
    second, error, asked = sync(tmp_path, last_state(first))
    assert error is None and rows_of(second) == [4, 5] and asked == 2
    state = last_state(second)[0]["state"]["stream"]["stream_state"]
    assert state["state_version"] == 2 and state["position"] == 5
    assert state["input"]["files"] == [{"name": str(tmp_path / "data.csv"), "rows": 5,
                                        "size": (tmp_path / "data.csv").stat().st_size,
                                        "mtime_ns": (tmp_path / "data.csv").stat().st_mtime_ns}]
    third, error, asked = sync(tmp_path, last_state(second))
    assert error is None and rows_of(third) == [] and asked == 0


def test_a_state_written_before_fingerprints_still_resumes_and_is_bound_from_then_on(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["a", "b", "c"])
    messages, error, asked = sync(tmp_path, [stream_state({"position": 2})])
    assert error is None and rows_of(messages) == [3] and asked == 1
    warnings = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]
    assert any("no input fingerprint" in w and "rows 1..2" in w for w in warnings)
    assert last_state(messages)[0]["state"]["stream"]["stream_state"]["state_version"] == 2


def test_a_fingerprinted_state_of_a_longer_input_is_an_error_not_a_warning(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["a", "b", "c"])
    first, _, _ = sync(tmp_path, None)
    write_rows(tmp_path / "data.csv", ["a", "b"])
    _, error, asked = sync(tmp_path, last_state(first))
    assert isinstance(error, StateError) and "the input has only 2 rows" in error.message and asked == 0


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"position": 3, "sync_complete": "false"}, "sync_complete must be true or false, got 'false' (str)"),
    ({"position": 3, "sync_complete": 0}, "sync_complete must be true or false"),
    ({"position": 3, "state_version": 3, "input": {}}, "state_version 3 is not one this version"),
    ({"position": 3, "state_version": "2"}, "state_version 2 is not one"),
    ({"position": 3, "state_version": 2}, "must have 'input'"),
    ({"position": 3, "state_version": 2, "input": {"rows_sha256": "x", "files": []}}, "input.rows_sha256"),
    ({"position": 3, "state_version": 2, "input": {"rows_sha256": "0" * 64, "files": [{"name": "a", "size": "1",
                                                                                        "mtime_ns": 0, "rows": 1}]}},
     "input.files.0.size: expected a whole number"),
])
def test_state_types_are_checked_strictly(entry: Any, fragment: str) -> None:
    with pytest.raises(StateError) as caught:
        position_for([stream_state(entry)], STREAM, "full_refresh")
    assert fragment in caught.value.message


def test_a_string_false_sync_complete_does_not_restart_from_row_1(tmp_path: Path) -> None:
    write_rows(tmp_path / "data.csv", ["a", "b", "c"])
    messages, error, asked = sync(tmp_path, [stream_state({"position": 2, "sync_complete": "false"})],
                                  mode="full_refresh")
    assert isinstance(error, StateError) and rows_of(messages) == [] and asked == 0


def test_a_rows_fingerprint_is_its_values_as_text_and_every_row_has_one() -> None:
    from connector.rows.fingerprint import row_bytes

    assert row_bytes({"id": 7, "ok": True, "v": None}) == row_bytes({"n": "7", "b": "true", "x": None}) == \
        b'["7","true",null]'
    assert row_bytes({"v": "null"}) != row_bytes({"v": None})
    assert row_bytes({"v": "a,b"}) != row_bytes({"v": "a", "w": "b"})
    assert row_bytes({"v": "\ud800"}) != row_bytes({"v": "\ud801"})  # a lone surrogate: tagged bytes, no error


def test_the_row_chain_is_the_one_states_saved_by_earlier_versions_hold() -> None:
    """The chain over rows of every kind a reader gives, as a35ee73 computed it: a STATE saved then still resumes."""
    from datetime import date
    from decimal import Decimal

    from connector.rows.fingerprint import ZERO, chain

    rows = [{"id": 1, "text": 'héllo "q"', "n": None, "f": 2.5, "b": True},
            {"id": -7, "text": "", "n": "null", "f": Decimal("1.10"), "b": False},
            {"id": 3, "text": "x\ud800", "n": None, "f": [1, {"a": 2}], "b": date(2024, 1, 2)}]
    digest = ZERO
    for row in rows:
        digest = chain(digest, row)
    assert digest.hex() == "5289b3c24140f6344b46499e4e7ddfecaea1fed31d145b8b7fd4e8479bd95719"
