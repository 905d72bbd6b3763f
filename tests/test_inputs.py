"""connector.rows.files.InputTable: formats, globs and folders, resuming, errors; json_schema_for."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.arrow_values import json_schema_for
from connector.rows.columns import field_schema
from connector.rows.files import InputTable


def table(path: Path | str | None = None, **extra: Any) -> InputTable:
    if path is not None:
        extra["path"] = str(path)
    return InputTable(InputConfig(**extra))


def all_rows(t: InputTable, skip: int = 0) -> list[dict[str, Any]]:
    return [row for batch in t.batches(skip=skip) for row in batch]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# Formats ------------------------------------------------------------------------------


def test_csv_with_quoted_newlines_commas_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        'id,text\n'
        '1,"line one\nline two"\n'
        '2,"has, comma and ""quotes"""\n'
        '3,plain\n'
    )
    t = table(path)
    assert t.columns == ["id", "text"]
    assert all_rows(t) == [
        {"id": 1, "text": "line one\nline two"},
        {"id": 2, "text": 'has, comma and "quotes"'},
        {"id": 3, "text": "plain"},
    ]
    assert t.count_rows() == 3  # counted by the scan that typed the columns


def test_csv_crlf_quoted_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'a,b\r\n"x\r\ny",2\r\n')
    assert all_rows(table(path)) == [{"a": "x\r\ny", "b": 2}]


def test_tsv_uses_tab_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\nx, y\t2\n")
    assert all_rows(table(path)) == [{"a": "x, y", "b": 2}]


def test_jsonl_ragged_keys_give_none(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [
        {"id": 1, "text": "a"},
        {"id": 2},
        {"id": 3, "text": "c", "extra": True},
    ])
    t = table(path)
    assert set(t.columns) == {"id", "text", "extra"}
    assert all_rows(t) == [
        {"id": 1, "text": "a", "extra": None},
        {"id": 2, "text": None, "extra": None},
        {"id": 3, "text": "c", "extra": True},
    ]


def test_parquet_and_count_rows(tmp_path: Path) -> None:
    rows = [{"id": i, "score": i / 2, "tags": [str(i)]} for i in range(25)]
    t = table(write_parquet(tmp_path / "data.parquet", rows))
    assert all_rows(t) == rows
    assert t.count_rows() == 25
    assert t.schema.field("tags").type == pa.list_(pa.string())


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.txt", [{"a": 1}, {"a": 2}])
    assert all_rows(table(path, format="jsonl")) == [{"a": 1}, {"a": 2}]


def test_glob_reads_files_in_sorted_order(tmp_path: Path) -> None:
    for part in (2, 0, 1):
        write_parquet(tmp_path / f"part-{part}.parquet",
                      [{"part": part, "i": i} for i in range(3)])
    (tmp_path / "notes.md").write_text("ignored")
    t = table(tmp_path / "part-*.parquet")
    assert [(r["part"], r["i"]) for r in all_rows(t)] == [(p, i) for p in range(3) for i in range(3)]
    assert t.count_rows() == 9


def test_directory_reads_supported_files_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "a.jsonl", [{"n": 1}])
    write_jsonl(tmp_path / "sub" / "b.jsonl", [{"n": 2}, {"n": 3}])
    (tmp_path / "README.txt").write_text("not data")
    assert all_rows(table(tmp_path)) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_inline_rows() -> None:
    t = table(rows=[{"text": "a", "n": 1}, {"text": "b"}])
    assert t.columns == ["text", "n"]
    assert all_rows(t) == [{"text": "a", "n": 1}, {"text": "b", "n": None}]
    assert t.count_rows() == 2
    assert t.first_row() == {"text": "a", "n": 1}


def test_inline_rows_empty() -> None:
    t = table(rows=[])
    assert all_rows(t) == []
    assert t.first_row() is None
    assert t.count_rows() == 0


def test_inline_rows_with_mixed_types_keep_every_value_and_declare_both_types() -> None:
    t = table(rows=[{"a": 1}, {"a": "text"}])
    assert all_rows(t) == [{"a": 1}, {"a": "text"}]
    assert field_schema(t.schema.field("a")) == {"type": ["null", "integer", "string"]}


# Batches and resuming -------------------------------------------------------------------


def test_batches_respect_batch_size(tmp_path: Path) -> None:
    t = table(write_parquet(tmp_path / "d.parquet", [{"i": i} for i in range(10)]), batch_size=4)
    sizes = [len(b) for b in t.batches()]
    assert sum(sizes) == 10
    assert max(sizes) <= 4


@pytest.mark.parametrize("skip", [0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 100])
def test_skip_resumes_at_the_right_row_across_batches_and_files(tmp_path: Path, skip: int) -> None:
    for part in range(3):  # 3 files x 4 rows, batch_size 3: batch and file boundaries differ
        write_parquet(tmp_path / f"p{part}.parquet", [{"i": part * 4 + j} for j in range(4)])
    t = table(tmp_path / "p*.parquet", batch_size=3)
    assert [r["i"] for r in all_rows(t, skip=skip)] == list(range(12))[skip:]


@pytest.mark.parametrize("skip", [0, 2, 3, 5, 6, 8])
def test_skip_on_csv_and_inline(tmp_path: Path, skip: int) -> None:
    path = tmp_path / "x.csv"
    path.write_text("i,t\n" + "".join(f'{i},"v\n{i}"\n' for i in range(8)))
    assert [r["i"] for r in all_rows(table(path, batch_size=3), skip=skip)] == list(range(8))[skip:]
    inline = table(rows=[{"i": i} for i in range(8)], batch_size=3)
    assert [r["i"] for r in all_rows(inline, skip=skip)] == list(range(8))[skip:]


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_many_files_and_small_batches_keep_input_order(tmp_path: Path, kind: str) -> None:
    # Resuming by position is only sound if threaded reads never reorder rows.
    n = 0
    for f in range(15):
        rows = [{"i": n + j} for j in range((f * 7) % 11 + 1)]
        n += len(rows)
        if kind == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"p{f:02d}.parquet", row_group_size=3)
        else:
            write_jsonl(tmp_path / f"p{f:02d}.jsonl", rows)
    t = table(tmp_path / f"p*.{kind}", batch_size=2)
    assert [r["i"] for r in all_rows(t)] == list(range(n))
    assert [r["i"] for r in all_rows(t, skip=n // 2)] == list(range(n // 2, n))


def test_batches_are_read_lazily_per_batch() -> None:
    t = table(rows=[{"i": i} for i in range(10)], batch_size=2)
    batches = t.batches(skip=3)
    assert next(batches) == [{"i": 3}, {"i": 4}]
    assert next(batches) == [{"i": 5}, {"i": 6}]


# Errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        table(tmp_path / "nope.csv")
    message = str(info.value)
    assert message.startswith("input.path: ")
    assert "nope.csv" in message and "does not exist" in message


def test_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input.path: no file matches .*\*\.parquet"):
        table(tmp_path / "*.parquet")


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"input.path: folder .* holds no"):
        table(tmp_path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError) as info:
        table(path)
    message = str(info.value)
    assert message.startswith("input.format: ")
    assert "data.xlsx" in message


def test_glob_of_mixed_formats(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
    write_parquet(tmp_path / "b.parquet", [{"a": 1}])
    with pytest.raises(InputError, match=r"input.path: files of several formats"):
        table(tmp_path / "*")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"this is not a parquet file at all" * 10)
    with pytest.raises(InputError) as info:
        table(path)
    message = str(info.value)
    assert message.startswith("input.path: cannot read ")
    assert "as parquet" in message


def test_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        table(tmp_path / "missing.jsonl")
    assert info.value.failure_type == "config_error"


# json_schema_for ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrow_type", "schema"),
    [
        (pa.int64(), {"type": ["null", "integer"]}),
        (pa.int8(), {"type": ["null", "integer"]}),
        (pa.uint32(), {"type": ["null", "integer"]}),
        (pa.float64(), {"type": ["null", "number"]}),
        (pa.float32(), {"type": ["null", "number"]}),
        (pa.decimal128(10, 2), {"type": ["null", "number"]}),
        (pa.bool_(), {"type": ["null", "boolean"]}),
        (pa.string(), {"type": ["null", "string"]}),
        (pa.large_string(), {"type": ["null", "string"]}),
        (pa.timestamp("us"), {"type": ["null", "string"], "format": "date-time",
                              "airbyte_type": "timestamp_without_timezone"}),
        (pa.timestamp("ms", tz="UTC"), {"type": ["null", "string"], "format": "date-time",
                                        "airbyte_type": "timestamp_with_timezone"}),
        (pa.date32(), {"type": ["null", "string"], "format": "date"}),
        (pa.time64("us"), {"type": ["null", "string"], "format": "time",
                           "airbyte_type": "time_without_timezone"}),
        (pa.list_(pa.int32()), {"type": ["null", "array"], "items": {"type": ["null", "integer"]}}),
        (pa.large_list(pa.string()), {"type": ["null", "array"], "items": {"type": ["null", "string"]}}),
        (pa.struct([("a", pa.int64()), ("b", pa.list_(pa.bool_()))]),
         {"type": ["null", "object"], "properties": {
             "a": {"type": ["null", "integer"]},
             "b": {"type": ["null", "array"], "items": {"type": ["null", "boolean"]}}}}),
        (pa.map_(pa.string(), pa.int64()), {"type": ["null", "object"],
                                            "additionalProperties": {"type": ["null", "integer"]}}),
        (pa.null(), {"type": ["null", "string"]}),
    ],
    ids=lambda v: str(v) if isinstance(v, pa.DataType) else "",
)
def test_json_schema_for(arrow_type: pa.DataType, schema: dict[str, Any]) -> None:
    assert json_schema_for(arrow_type) == schema


def test_inferred_csv_types_map_to_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("n,x,flag,when,s\n1,1.5,true,2024-01-02T03:04:05,hi\n")
    t = table(path)
    schemas = {f.name: field_schema(f) for f in t.schema}
    assert schemas["n"]["type"] == ["null", "integer"]
    assert schemas["x"]["type"] == ["null", "number"]
    assert schemas["flag"]["type"] == ["null", "boolean"]
    assert schemas["when"]["format"] == "date-time"
    assert schemas["s"]["type"] == ["null", "string"]


def test_columns_that_only_later_files_have_are_kept(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"id": 2, "text": "x"}\n')
    table = InputTable(InputConfig(path=str(tmp_path)))
    assert table.columns == ["id", "text"]
    rows = [row for batch in table.batches() for row in batch]
    assert rows == [{"id": 1, "text": None}, {"id": 2, "text": "x"}]


def test_csv_rows_of_tens_of_megabytes_are_read_whole(tmp_path: Path) -> None:
    """A document in a cell is normal input: a row larger than the parser's first block (1 MB) is read,
    also between small rows and with line breaks and delimiters inside it."""
    import csv

    document = "a line, with a comma\n" * 600_000  # 12.6 MB
    rows = [["1", "small"], ["2", document], ["3", "between"], ["4", document + "end"], ["5", "last"]]
    with (tmp_path / "docs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(rows)
    t = table(tmp_path / "docs.csv")
    assert t.count_rows() == 5
    got = all_rows(t)
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5]
    assert got[1]["text"] == document and got[3]["text"] == document + "end" and got[4]["text"] == "last"
    assert all_rows(t, skip=3)[0]["text"] == document + "end"


def test_a_named_pipe_is_read_once_and_every_row_arrives(tmp_path: Path) -> None:
    """What bash's <(zcat data.csv.gz) gives: a pipe that is empty when opened a second time."""
    import os
    import threading

    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    text = "id,text\n" + "".join(f"{i},row {i}\n" for i in range(1, 301))

    def feed() -> None:
        with fifo.open("w") as f:
            f.write(text)
        with fifo.open("w"):
            pass  # a second reader finds the pipe empty, as after zcat ended

    threading.Thread(target=feed, daemon=True).start()
    t = table(fifo)
    assert t.count_rows() == 300
    assert [r["id"] for r in all_rows(t)] == list(range(1, 301)) and all_rows(t, skip=299)[0]["text"] == "row 300"
    assert any("can be read only once (a pipe): its 3," in note for note in t.notes)


def test_a_device_that_never_ends_is_refused_at_once() -> None:
    with pytest.raises(InputError, match=r"'/dev/zero' is a device, not a file of rows"):
        table("/dev/zero", format="csv")


def test_a_pipe_longer_than_spool_max_mb_stops_the_run(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "big.jsonl"
    os.mkfifo(fifo)

    def feed() -> None:
        # suppress outside open(): the close flushes into the pipe the reader gave up on, and raises too
        with contextlib.suppress(BrokenPipeError), fifo.open("w") as f:
            for i in range(200_000):  # ~2.4 MB
                f.write(f'{{"text": "row {i}"}}\n')

    threading.Thread(target=feed, daemon=True).start()
    with pytest.raises(InputError, match=r"is a pipe longer than input.spool_max_mb \(1 MB\)"):
        table(fifo, spool_max_mb=1)
