"""Every value exactly as the file holds it: CSV and JSONL typing, declared types, whole-file schemas.

Each test writes its input byte by byte and asserts both what the endpoint received
and what the record holds (tests/echo_endpoint.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.airbyte import commands
from connector.airbyte.protocol import serialize
from connector.errors import ConfigError, InputError
from connector.standalone.command import run
from tests.conftest import catalog_for
from tests.echo_endpoint import Echo, check, config, discover, logs, read, records, state_at, write

MIXED = (b"id,zip,code,amount,ratio,flag,text,day\n"
         b"007,02134,1e3,12,2.5,TRUE,NaN,2025-01-31\n"
         b"1,10001,12,3,0.25,false,plain,2025-02-01\n")
ALL = "{{id}}|{{zip}}|{{code}}|{{amount}}|{{ratio}}|{{flag}}|{{text}}|{{day}}"


async def test_csv_cells_reach_the_prompt_and_the_record_as_written(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", MIXED))}, ALL)
    echo = Echo()
    out = records(await read(raw, echo))
    assert echo.prompts == ["007|02134|1e3|12|2.5|TRUE|NaN|2025-01-31", "1|10001|12|3|0.25|false|plain|2025-02-01"]
    first = {k: v for k, v in out[0].items() if not k.startswith("_") and k != "answer"}
    assert first == {"id": "007", "zip": "02134", "code": "1e3", "amount": 12, "ratio": 2.5, "flag": "TRUE",
                     "text": "NaN", "day": "2025-01-31"}
    props = await discover(raw, Echo())
    assert {name: props[name]["type"][1] for name in ("id", "zip", "code", "flag", "text")} == dict.fromkeys(
        ("id", "zip", "code", "flag", "text"), "string")
    assert props["amount"] == {"type": ["null", "integer"]} and props["ratio"] == {"type": ["null", "number"]}
    assert props["day"] == {"type": ["null", "string"], "format": "date"}


async def test_an_empty_cell_is_empty_text_in_a_text_column_and_null_in_a_typed_one(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", b"n,s\n,x\n1,\n"))}, "[{{n}}][{{s}}]")
    echo = Echo()
    out = records(await read(raw, echo))
    assert [(r["n"], r["s"]) for r in out] == [(None, "x"), (1, "")]
    assert echo.prompts == ["[][x]", "[1][]"]


async def test_declared_types_convert_once_and_a_value_that_does_not_fit_is_that_rows_bad_input(
        tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"zip,amount,price,ok,day,at\n"
                                     b"2134,5,12345678901234567890.123456789,true,2025-01-31,2025-01-31 10:00:00\n"
                                     b"02134,abc,1.50,0,2025-02-30,2025-01-31T10:00:00.123456789+02:00\n")
    declared = {"zip": "string", "amount": "integer", "price": "decimal", "ok": "boolean", "day": "date",
                "at": "timestamp"}
    raw = config({"path": str(path), "columns": declared}, "{{zip}} {{amount}} {{price}} {{at}}")
    echo = Echo()
    messages = await read(raw, echo)
    good, bad = records(messages)
    assert echo.prompts == ["2134 5 12345678901234567890.123456789 2025-01-31 10:00:00"]  # one request: row 1
    assert good["_status"] == "ok" and good["amount"] == 5 and good["ok"] is True and good["day"] == "2025-01-31"
    line = next(m for m in messages if m["type"] == "RECORD" and m["record"]["data"]["_row_number"] == 1)
    assert b'"price":12345678901234567890.123456789' in serialize(line)  # every digit, as a JSON number
    assert bad["_status"] == "error" and bad["_error_class"] == "bad_input" and bad["_attempts"] == 0
    assert bad["_error"].startswith(f"{path} line 3, column 'amount': 'abc' is not an integer")
    assert "'2025-02-30' is not a valid date" in bad["_error"]
    assert bad["zip"] == "02134" and bad["price"] == pytest.approx(1.5) and bad["amount"] is None
    assert str(bad["price"]) == "1.50" and bad["at"] == "2025-01-31T10:00:00.123456789+02:00"
    props = await discover(raw, Echo())
    assert props["price"]["type"] == ["null", "number"] and props["at"]["format"] == "date-time"


async def test_boolean_declarations_accept_words_and_digits(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"ok\ntrue\nFALSE\n1\nmaybe\n")
    echo = Echo()
    out = records(await read(config({"path": str(path), "columns": {"ok": "boolean"}}, "ok: {{ok}}"), echo))
    assert [r["ok"] for r in out] == [True, False, True, None]
    assert out[3]["_error_class"] == "bad_input" and "line 5" in out[3]["_error"]
    assert echo.prompts == ["ok: true", "ok: false", "ok: true"]


def _late_change(tmp_path: Path) -> Path:
    lines = [b"code,text\n"] + [b"%d,row %d\n" % (i, i) for i in range(1, 59_999)]  # lines 2..59,999
    lines += [b"abc,the odd one\n", b"60000,after\n"]  # line 60,000, then 60,001
    return write(tmp_path / "late.csv", b"".join(lines))


async def test_a_type_change_at_line_60000_keeps_the_column_text_and_nothing_fails(tmp_path: Path) -> None:
    raw = config({"path": str(_late_change(tmp_path))}, "{{code}}: {{text}}")
    props = await discover(raw, Echo())
    assert props["code"] == {"type": ["null", "string"]}  # decided for the whole file, before row 1
    echo = Echo()
    messages = await read(raw, echo, state=state_at(59_996), sync_mode="incremental")
    assert [r["code"] for r in records(messages)] == ["59997", "59998", "abc", "60000"]
    assert echo.prompts[-2:] == ["abc: the odd one", "60000: after"]
    assert not [m for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


async def test_declared_integer_with_a_text_value_at_line_60000_fails_that_row_only(tmp_path: Path) -> None:
    raw = config({"path": str(_late_change(tmp_path)), "columns": {"code": "integer"}}, "Code {{code}}")
    echo = Echo()
    messages = await read(raw, echo, state=state_at(59_996), sync_mode="incremental")
    out = records(messages)
    assert [r["code"] for r in out] == [59997, 59998, None, 60000]
    assert [r["_status"] for r in out] == ["ok", "ok", "error", "ok"]
    assert out[2]["_error_class"] == "bad_input" and "line 60000, column 'code': 'abc' is not an integer" in \
        out[2]["_error"]
    assert echo.prompts == ["Code 59997", "Code 59998", "Code 60000"]  # nothing paid for the bad row
    status = [m["trace"]["stream_status"]["status"] for m in messages if m["type"] == "TRACE"
              and m["trace"]["type"] == "STREAM_STATUS"]
    assert status[-1] == "COMPLETE"


async def test_line_numbers_count_quoted_line_breaks_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b'n,text\n1,"two\nlines"\n\n2,x\nx,y\n')
    out = records(await read(config({"path": str(path), "columns": {"n": "integer"}}, "{{text}}"), Echo()))
    assert out[2]["_error"].startswith(f"{path} line 6, column 'n'")


async def test_a_10000_column_csv(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(10_000)]
    rows = [[f"{r}-{i:05d}" for i in range(10_000)] for r in range(3)]
    data = (",".join(names) + "\n" + "".join(",".join(row) + "\n" for row in rows)).encode()
    raw = config({"path": str(write(tmp_path / "wide.csv", data))}, "{{c0}} {{c9999}}")
    props = await discover(raw, Echo())
    assert all(props[n] == {"type": ["null", "string"]} for n in names)
    echo = Echo()
    out = records(await read(raw, echo))
    assert echo.prompts == ["0-00000 0-09999", "1-00000 1-09999", "2-00000 2-09999"]
    assert [out[2][n] for n in names] == rows[2]


async def test_a_row_with_too_many_cells_is_named_by_line_before_any_request(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"a,b\n1,2\n3,4,5\n")
    echo = Echo()
    with pytest.raises(InputError, match=r"line 3 has 3 cells where the header has 2"):
        await read(config({"path": str(path)}, "{{a}}"), echo)
    assert echo.bodies == []


async def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="names column\\(s\\) 'a' more than once"):
        await discover(config({"path": str(write(tmp_path / "t.csv", b"a,a\n1,2\n"))}, "{{a}}"), Echo())


async def test_a_declared_column_the_input_lacks_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input.columns: .zipp. not in the input; its columns are: zip"):
        await discover(config({"path": str(write(tmp_path / "t.csv", b"zip\n1\n")), "columns": {"zipp": "string"}},
                              "{{zip}}"), Echo())


# JSONL ------------------------------------------------------------------------------------


async def test_a_jsonl_key_first_seen_on_row_9000_of_10000_is_a_column(tmp_path: Path) -> None:
    lines = [b'{"id": %d, "text": "r%d"}\n' % (i, i) for i in range(1, 10_001)]
    lines[8_999] = b'{"id": 9000, "text": "r9000", "late": "only here"}\n'
    raw = config({"path": str(write(tmp_path / "t.jsonl", b"".join(lines)))}, "{{text}} {{late}}")
    props = await discover(raw, Echo())
    assert props["late"] == {"type": ["null", "string"]}
    echo = Echo()
    out = records(await read(raw, echo, state=state_at(8_998), sync_mode="incremental"))
    assert [r["late"] for r in out[:2]] == [None, "only here"]
    assert echo.prompts[:2] == ["r8999 ", "r9000 only here"]


async def test_jsonl_values_keep_their_json_types_and_a_mixed_column_declares_both(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", b'{"n": 1, "x": 1.50, "big": 12345678901234567}\n'
                                       b'{"n": "abc", "x": 2, "big": 1}\n')
    raw = config({"path": str(path)}, "{{n}}|{{x}}|{{big}}")
    echo = Echo()
    out = records(await read(raw, echo))
    assert [(r["n"], r["x"], r["big"]) for r in out] == [(1, 1.5, 12345678901234567), ("abc", 2, 1)]
    assert echo.prompts == ["1|1.5|12345678901234567", "abc|2|1"]
    props = await discover(raw, Echo())
    assert props["n"] == {"type": ["null", "integer", "string"]} and props["x"] == {"type": ["null", "number"]}


async def test_a_broken_jsonl_line_5000_is_named_by_its_line_before_any_request(tmp_path: Path) -> None:
    lines = [b'{"text": "r%d"}\n' % i for i in range(1, 6_001)]
    lines[4_999] = b'{"text": "r5000"\n'
    raw = config({"path": str(write(tmp_path / "t.jsonl", b"".join(lines)))}, "{{text}}")
    echo = Echo()
    with pytest.raises(InputError, match=r"t.jsonl line 5000 is not JSON"):
        await read(raw, echo)
    assert echo.bodies == []


# State and keys -------------------------------------------------------------------------------


async def test_a_state_beyond_the_input_warns_in_incremental_mode(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", b"text\na\nb\nc\n"))}, "{{text}}")
    messages = await read(raw, Echo(), state=state_at(999), sync_mode="incremental")
    warning = next(m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN")
    assert "999 rows are done, but the input has only 3" in warning and "reset the stream's state" in warning
    assert records(messages) == []


async def test_a_state_beyond_the_input_is_a_config_error_in_full_refresh(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", b"text\na\nb\nc\n"))}, "{{text}}")
    echo = Echo()
    with pytest.raises(ConfigError, match="Reset the stream's state") as info:
        await read(raw, echo, state=state_at(999))
    assert info.value.failure_type == "config_error" and echo.bodies == []


async def test_a_primary_key_naming_no_column_fails_check_and_discover(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", b"id,text\n1,a\n")), "primary_key": "key"}, "{{text}}")
    echo = Echo()
    status = await check(raw, echo)
    assert status["status"] == "FAILED" and "input.primary_key: column 'key' is not in the input" in \
        status["message"]
    assert echo.bodies == []
    with pytest.raises(ConfigError, match=r"input\.primary_key"):
        await discover(raw, echo)


# An input that is an enrichment ---------------------------------------------------------------

ENRICHED = (b"id,text,answer,_row_number,_status,_error_class,_error,_cost\n"
            b"1,hello,echo: hello,1,ok,,,0.5\n"
            b"2,bye,,2,error,timeout,took too long,\n")


async def test_an_enriched_csv_keeps_its_own_metadata_under_the_prefix(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "enriched.csv", ENRICHED))}, "Again: {{text}} ({{input_status}})",
                 response_template={"columns": {"again": "choices.0.message.content"}})
    echo = Echo()
    messages = await read(raw, echo)
    first, second = records(messages)
    assert echo.prompts == ["Again: hello (ok)", "Again: bye (error)"]
    assert first["input_row_number"] == 1 and first["input_status"] == "ok" and first["input_cost"] == 0.5
    assert second["input_error_class"] == "timeout" and second["input_error"] == "took too long"
    assert first["_status"] == "ok" and first["_row_number"] == 1 and first["answer"] == "echo: hello"
    assert any("_status as input_status" in line for line in logs(messages))
    props = await discover(raw, Echo())
    assert "input_status" in props and props["_status"]["enum"][0] == "ok"


async def test_an_output_column_named_like_an_input_column_is_still_a_config_error(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "enriched.csv", ENRICHED))}, "{{text}}")
    with pytest.raises(ConfigError, match="answer have the name of an input column"):
        await discover(raw, Echo())


async def test_the_prefix_is_a_setting(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "enriched.csv", ENRICHED)), "metadata_prefix": "prev"},
                 "{{text}}", response_template={"columns": {"again": "choices.0.message.content"}})
    (first, _) = records(await read(raw, Echo()))
    assert first["prev_status"] == "ok" and first["prev_row_number"] == 1


async def test_a_dry_run_counts_rows_whose_value_does_not_fit_as_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"n\n1\nabc\n3\n")
    echo = Echo()
    messages = await read(config({"path": str(path), "columns": {"n": "integer"}}, "n={{n}}"), echo)
    dry = [m async for m in commands.read(config({"path": str(path), "columns": {"n": "integer"}}, "n={{n}}"),
                                          catalog_for(), None, echo.factory(), dry_run=True)]
    assert any("requests: 2; skipped: 1 bad_input" in line for line in logs(dry))
    assert len(echo.prompts) == 2 and len(records(messages)) == 3


async def test_run_writes_csv_cells_as_written_to_parquet_csv_and_jsonl(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "t.csv", MIXED))}, ALL)
    for name in ("out.parquet", "out.csv", "out.jsonl"):
        echo = Echo()
        await run(raw, str(tmp_path / name), transport_factory=echo.factory())
        assert echo.prompts[0] == "007|02134|1e3|12|2.5|TRUE|NaN|2025-01-31"
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("zip").type == pa.string() and table.schema.field("amount").type == pa.int64()
    assert table.schema.field("day").type == pa.date32()
    first = table.to_pylist()[0]
    assert (first["id"], first["zip"], first["code"], first["flag"], first["text"]) == (
        "007", "02134", "1e3", "TRUE", "NaN")
    with (tmp_path / "out.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["id"], row["zip"], row["code"], row["ratio"], row["text"], row["day"]) == (
        "007", "02134", "1e3", "2.5", "NaN", "2025-01-31")
    line = (tmp_path / "out.jsonl").read_text().splitlines()[0]
    assert '"id":"007","zip":"02134","code":"1e3","amount":12,"ratio":2.5,"flag":"TRUE","text":"NaN"' in line


async def test_a_jsonl_float_reaches_the_prompt_as_the_file_writes_it(tmp_path: Path) -> None:
    """1.0 in the file is 1.0 in the prompt and the record (it was rendered as 1)."""
    raw = config({"path": str(write(tmp_path / "t.jsonl", b'{"x": 1.0, "y": 2}\n{"x": 2.5, "y": 3}\n'))},
                 "{{x}}/{{y}}")
    echo = Echo()
    out = records(await read(raw, echo))
    assert echo.prompts == ["1.0/2", "2.5/3"]
    assert [(r["x"], r["y"]) for r in out] == [(1.0, 2), (2.5, 3)]
