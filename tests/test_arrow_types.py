"""Lossless Parquet and Arrow types through read, run (Parquet, CSV, JSONL outputs), stdin and the worker.

Every value reaches the prompt, the record and the output file with every digit,
declared truthfully in discover; a type that cannot flow is refused naming column
and type; a value that cannot be shown is that row's bad_input error. Never a
traceback.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connector.airbyte.protocol import serialize
from connector.errors import ConfigError
from connector.scaleout import BatchEnricher
from connector.standalone.command import run
from tests.echo_endpoint import Echo, config, discover, read, records, state_at

TEMPLATE = "{{ts_ns}}|{{ts_tz}}|{{dur}}|{{dec}}|{{map}}|{{bin}}|{{big}}|{{cat}}|{{t_ns}}|{{nested}}|{{when}}"
FIRST_PROMPT = ('2023-11-14T22:13:20.000000001|2023-11-14T23:13:20.123456789+01:00|PT1.500000001S|'
                '12345678901234567890.123456789|{"a":1,"b":2}|6QD/|large text é|red|00:00:01.000000001|'
                '{"at":"1970-01-01T00:00:00.000000007","amount":12.30}|["2262-04-11T23:47:16.854775807"]')


def every_type() -> pa.Table:
    return pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "ts_ns": pa.array([1_700_000_000_000_000_001, None], pa.timestamp("ns")),
        "ts_tz": pa.array([1_700_000_000_123_456_789, 0], pa.timestamp("ns", tz="Europe/Paris")),
        "dur": pa.array([1_500_000_001, -5], pa.duration("ns")),
        "dec": pa.array([Decimal("12345678901234567890.123456789"), Decimal("0.000000001")], pa.decimal128(38, 9)),
        "map": pa.array([[("a", 1), ("b", 2)], None], pa.map_(pa.string(), pa.int64())),
        "bin": pa.array([b"\xe9\x00\xff", b""], pa.binary()),
        "big": pa.array(["large text é", None], pa.large_string()),
        "cat": pa.array(["red", "blue"]).dictionary_encode(),
        "t_ns": pa.array([1_000_000_001, 0], pa.time64("ns")),
        "nested": pa.array([{"at": 7, "amount": Decimal("12.30")}, None],
                           pa.struct([("at", pa.timestamp("ns")), ("amount", pa.decimal128(10, 2))])),
        "when": pa.array([[2**63 - 1], []], pa.list_(pa.timestamp("ns"))),
    })


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "types.parquet"
    pq.write_table(every_type(), path)
    return path


def names() -> list[str]:
    return every_type().column_names


async def test_read_sends_and_records_every_arrow_type_exactly(parquet: Path) -> None:
    echo = Echo()
    messages = await read(config({"path": str(parquet)}, TEMPLATE), echo)
    first, second = records(messages)
    assert echo.prompts[0] == FIRST_PROMPT
    assert echo.prompts[1] == "|1970-01-01T01:00:00+01:00|-PT0.000000005S|0.000000001||||blue|00:00:00||[]"
    assert first["dec"] == Decimal("12345678901234567890.123456789") and first["map"] == {"a": 1, "b": 2}
    assert first["bin"] == "6QD/" and first["cat"] == "red" and first["big"] == "large text é"
    line = serialize(next(m for m in messages if m["type"] == "RECORD"))
    assert b'"dec":12345678901234567890.123456789' in line and b'"amount":12.30' in line
    assert b'"ts_ns":"2023-11-14T22:13:20.000000001"' in line
    assert second["ts_ns"] is None and second["map"] is None and second["when"] == []


async def test_discover_declares_each_arrow_type_truthfully(parquet: Path) -> None:
    props = await discover(config({"path": str(parquet)}, TEMPLATE), Echo())
    assert props["ts_ns"] == {"type": ["null", "string"], "format": "date-time",
                              "airbyte_type": "timestamp_without_timezone"}
    assert props["ts_tz"]["airbyte_type"] == "timestamp_with_timezone"
    assert props["dur"] == {"type": ["null", "string"], "format": "duration"}
    assert props["dec"] == {"type": ["null", "number"]}
    assert props["map"] == {"type": ["null", "object"], "additionalProperties": {"type": ["null", "integer"]}}
    assert props["bin"] == {"type": ["null", "string"], "contentEncoding": "base64"}
    assert props["big"] == props["cat"] == {"type": ["null", "string"]}
    assert props["t_ns"]["format"] == "time"
    assert props["nested"]["properties"]["amount"] == {"type": ["null", "number"]}


async def test_run_to_parquet_gives_back_the_input_types_and_values(parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    echo = Echo()
    result = await run(config({"path": str(parquet)}, TEMPLATE), str(out), transport_factory=echo.factory())
    assert result.complete and result.rows_written == 2
    written = pq.read_table(out)
    assert written.select(names()).equals(every_type())  # every type and every digit
    assert written.column("answer").to_pylist()[0] == "echo: " + FIRST_PROMPT
    assert echo.prompts[0] == FIRST_PROMPT


async def test_run_to_csv_writes_what_the_record_holds(parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    await run(config({"path": str(parquet)}, TEMPLATE), str(out), transport_factory=Echo().factory())
    first, second = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert (first["ts_ns"], first["ts_tz"], first["dur"]) == (
        "2023-11-14T22:13:20.000000001", "2023-11-14T23:13:20.123456789+01:00", "PT1.500000001S")
    assert (first["dec"], first["map"], first["bin"], first["cat"]) == (
        "12345678901234567890.123456789", '{"a":1,"b":2}', "6QD/", "red")
    assert first["nested"] == '{"at":"1970-01-01T00:00:00.000000007","amount":12.30}'
    assert second["dec"] == "0.000000001" and second["bin"] == ""


async def test_run_to_jsonl_writes_every_digit(parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    await run(config({"path": str(parquet)}, TEMPLATE), str(out), transport_factory=Echo().factory())
    text = out.read_text(encoding="utf-8")
    assert '"dec":12345678901234567890.123456789' in text and '"t_ns":"00:00:01.000000001"' in text
    first = json.loads(text.splitlines()[0], parse_float=Decimal)
    assert first["dec"] == Decimal("12345678901234567890.123456789") and first["map"] == {"a": 1, "b": 2}


def test_the_worker_enriches_every_arrow_type_and_gives_the_types_back() -> None:
    table = every_type()
    echo = Echo()
    raw = {k: v for k, v in config({}, TEMPLATE).items() if k != "input"}
    enricher = BatchEnricher(raw, table.schema, transport_factory=echo.factory())
    try:
        out = enricher.enrich(table)
    finally:
        enricher.close()
    assert pa.Table.from_batches([out]).select(names()).equals(table)
    assert echo.prompts[0] == FIRST_PROMPT


def test_the_worker_refuses_a_union_column_by_name() -> None:
    union = pa.UnionArray.from_sparse(pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])])
    schema = pa.schema([("text", pa.string()), ("u", union.type)])
    with pytest.raises(ConfigError, match=r"input column 'u' is sparse_union.*a union type"):
        BatchEnricher({k: v for k, v in config({}, "{{text}}").items() if k != "input"}, schema)


def test_the_worker_keeps_an_enriched_tables_metadata_under_the_prefix() -> None:
    table = pa.table({"text": ["hi"], "_status": ["ok"], "_row_number": [7]})
    echo = Echo()
    raw = {k: v for k, v in config({}, "{{text}} was {{input_status}}").items() if k != "input"}
    enricher = BatchEnricher(raw, table.schema, transport_factory=echo.factory())
    try:
        (row,) = enricher.enrich(table).to_pylist()
    finally:
        enricher.close()
    assert echo.prompts == ["hi was ok"]
    assert row["input_status"] == "ok" and row["input_row_number"] == 7 and row["_status"] == "ok"


async def test_a_timestamp_beyond_year_9999_is_that_rows_bad_input_named_by_row_group(tmp_path: Path) -> None:
    path = tmp_path / "far.parquet"
    seconds = pa.array([0, 253_402_300_800, 60], pa.timestamp("s"))  # the second one is year 10000
    pq.write_table(pa.table({"at": pc.cast(seconds, pa.timestamp("ms"))}), path, row_group_size=2)
    echo = Echo()
    out = records(await read(config({"path": str(path)}, "at {{at}}"), echo))
    assert [r["_status"] for r in out] == ["ok", "error", "ok"]
    assert out[1]["_error_class"] == "bad_input"
    assert out[1]["_error"].startswith(f"{path} row group 0, row 2 of the group (row 2 of the file), column 'at':")
    assert "years 1-9999" in out[1]["_error"]
    assert echo.prompts == ["at 1970-01-01T00:00:00", "at 1970-01-01T00:01:00"]


async def test_resuming_parquet_skips_whole_row_groups_and_keeps_positions(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"n": list(range(10))}), path, row_group_size=3)
    echo = Echo()
    out = records(await read(config({"path": str(path)}, "n={{n}}"), echo, state=state_at(7),
                             sync_mode="incremental"))
    assert [r["n"] for r in out] == [7, 8, 9] and [r["_row_number"] for r in out] == [8, 9, 10]


# Piped stdin -------------------------------------------------------------------------------------

STDIN = (b'{"zip": "02134", "n": 5, "price": "1.50", "at": "2025-01-01 10:00:00"}\n'
         b'{"zip": 2134, "n": "abc", "price": 2.25, "at": "yesterday"}\n')


async def test_piped_rows_keep_their_values_and_a_misfit_names_its_stdin_line() -> None:
    raw = config({"path": "-", "columns": {"zip": "string", "n": "integer", "price": "decimal",
                                           "at": "timestamp"}}, "{{zip}} {{n}} {{price}} {{at}}")
    echo = Echo()
    first, second = records(await read(raw, echo, stdin=io.BytesIO(STDIN)))
    assert echo.prompts == ["02134 5 1.50 2025-01-01 10:00:00"]
    assert (first["zip"], first["n"], first["price"], first["at"]) == ("02134", 5, Decimal("1.50"),
                                                                      "2025-01-01 10:00:00")
    assert second["_error_class"] == "bad_input" and second["_error"].startswith(
        "stdin line 2, column 'n': 'abc' is not an integer")
    assert "'yesterday' is not an ISO 8601 date-time" in second["_error"]


async def test_piped_rows_without_declared_columns_flag_a_late_key_instead_of_dropping_it() -> None:
    lines = b'{"text": "a", "n": 1}\n{"text": "b", "n": 2, "late": true}\n{"text": "c", "n": "x"}\n'
    echo = Echo()
    out = records(await read(config({"path": "-", "batch_size": 1}, "{{text}}"), echo, stdin=io.BytesIO(lines)))
    assert [r["_status"] for r in out] == ["ok", "error", "error"]
    assert out[1]["_error"] == ("stdin line 2, key(s) 'late' not among the columns fixed from the first rows; list "
                                "every column in input.columns")
    assert out[2]["_error"].startswith("stdin line 3, column 'n': '\"x\"' does not fit the type inferred")
    assert echo.prompts == ["a"]


async def test_piped_rows_run_into_parquet_with_the_declared_types(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    raw = config({"path": "-", "columns": {"zip": "string", "n": "integer", "price": "decimal"}}, "{{zip}}")
    result = await run(raw, str(out), stdin=io.BytesIO(STDIN), transport_factory=Echo().factory())
    assert result.rows_written == 2
    written = pq.read_table(out).to_pylist()
    assert [(r["zip"], r["n"], r["price"]) for r in written] == [("02134", 5, "1.50"), ("2134", None, "2.25")]
    assert [r["_error_class"] for r in written] == [None, "bad_input"]


async def test_piped_objects_keep_keys_the_first_rows_did_not_have_in_output_files(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    lines = b'{"text": "a", "meta": {"x": 1}}\n{"text": "b", "meta": {"x": 2, "y": [1, 2]}}\n'
    await run(config({"path": "-", "batch_size": 1}, "{{text}}"), str(out), stdin=io.BytesIO(lines),
              transport_factory=Echo().factory())
    assert [json.loads(r["meta"]) for r in pq.read_table(out).to_pylist()] == [{"x": 1}, {"x": 2, "y": [1, 2]}]
