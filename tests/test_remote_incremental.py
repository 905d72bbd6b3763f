"""Daily syncs where the table lives: a Parquet folder in an S3 bucket (moto's server) synced by file, and a
remote CSV or JSONL file downloaded once per sync however many passes read it (the HTTPS server counts GETs,
moto's log lists them). Real servers started here on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests import test_remote_inputs
from tests.servers import stop
from tests.storage_servers import Running, records, start_moto
from tests.test_cursor_sync import DAY1, Server, write_csv
from tests.test_cursor_sync import sync as cursor_sync
from tests.test_file_incremental import said, sync
from tests.test_remote_inputs import https_config, stats, write_tables

pytestmark = pytest.mark.storage


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        stop(server.pid)


def bucket(server: Running) -> pafs.S3FileSystem:
    facts = server.facts
    return pafs.S3FileSystem(access_key=facts["access_key_id"], secret_key=facts["secret_access_key"],
                             endpoint_override=server.address, scheme="http", region="us-east-1",
                             allow_bucket_creation=True)


def upload(fs: pafs.S3FileSystem, key: str, texts: list[str]) -> None:
    with fs.open_output_stream(key) as out:
        pq.write_table(pa.table({"text": texts}), out)


def s3_config(server: Running, path: str, **extra: Any) -> dict[str, Any]:
    facts = server.facts
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": "m", "prompt": "{{text}}",
            "input": {"path": path, "incremental": "files",
                      "s3": {"endpoint_url": facts["endpoint_url"], "region": "us-east-1",
                             "access_key_id": facts["access_key_id"],
                             "secret_access_key": facts["secret_access_key"]}}, **extra}


def test_an_s3_parquet_folder_synced_daily_enriches_only_new_and_changed_files(moto: Running) -> None:
    fs = bucket(moto)
    fs.create_dir("daily")
    for day, texts in (("01", ["a1", "a2"]), ("02", ["b1", "b2", "b3"]), ("03", ["c1"])):
        upload(fs, f"daily/tickets/day-{day}.parquet", texts)
    cfg = s3_config(moto, "s3://daily/tickets/", cache={"enabled": False})
    records_1, _, state, endpoint = sync(cfg)
    assert records_1 == endpoint.asked == ["a1", "a2", "b1", "b2", "b3", "c1"]
    time.sleep(1.1)  # S3 keeps modification times in whole seconds
    upload(fs, "daily/tickets/day-02.parquet", ["b1", "b2 edited", "b3"])  # changed
    upload(fs, "daily/tickets/day-04.parquet", ["d1", "d2"])  # new
    records_2, logs, state, endpoint = sync(cfg, state)
    assert endpoint.asked == records_2 == ["b1", "b2 edited", "b3", "d1", "d2"]
    assert said(logs, "4 files listed, 2 skipped as unchanged since they were read, 2 to read (1 new, 1 changed)")
    assert said(logs, "rows: 5 read, 5 enriched")
    history = state[0]["stream"]["stream_state"]["file_history"]["files"]
    assert sorted(history) == [f"s3://daily/tickets/day-0{d}.parquet" for d in range(1, 5)]
    assert history["s3://daily/tickets/day-04.parquet"]["rows"] == 2
    records_3, _, _, endpoint = sync(cfg, state)
    assert records_3 == endpoint.asked == []


def gets_of(log: Path, key: str) -> int:
    return len(re.findall(rf'GET /{re.escape(key)}[ ?]', log.read_text(errors="replace")))


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl"])
def test_a_remote_csv_or_jsonl_file_is_downloaded_once_per_sync_on_s3(moto: Running, name: str) -> None:
    fs = bucket(moto)
    fs.create_dir("once")
    local = moto.log.parent / "local"
    write_tables(local)
    with fs.open_output_stream(f"once/{name}") as out:
        out.write((local / name).read_bytes())
    cfg = s3_config(moto, f"s3://once/{name}")
    del cfg["input"]["incremental"]
    before = gets_of(moto.log, f"once/{name}")
    assert len(records(cfg)) == 7
    assert gets_of(moto.log, f"once/{name}") - before == 1


https = test_remote_inputs.https  # the same HTTPS server fixture (its CA, its GET counts)


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl"])
def test_a_remote_csv_or_jsonl_file_is_downloaded_once_per_sync_on_https(https: Running, name: str) -> None:
    before = stats(https)
    assert len(records(https_config(https, name))) == 7
    after = stats(https)
    assert (after["whole"] - before["whole"], after["ranged"] - before["ranged"]) == (1, 0)


def test_a_csv_over_https_synced_daily_by_file_pays_once_for_its_unchanged_rows(https: Running,
                                                                                 tmp_path: Path) -> None:
    """One CSV over HTTPS rewritten by its exporter every day: the server's ETag tells it changed, it is read
    again whole, and only its new row is bought (the others come from the answer cache); unchanged, nothing."""
    served = https.log.parent / "local" / "daily-by-file.csv"
    write_csv(served, DAY1)
    cfg = https_config(https, "daily-by-file.csv", incremental="files")
    cfg["cache"] = {"enabled": True, "path": str(tmp_path / "answers.sqlite")}
    server = Server()
    rows, _, state = cursor_sync(cfg, server=server)
    assert len(rows) == len(server.asked) == 5

    write_csv(served, [*DAY1, (6, "f", "2025-01-01T12:00:00Z")])
    server = Server()
    rows, messages, state = cursor_sync(cfg, state, server)
    assert len(rows) == 6 and server.asked == ["Say f"]
    assert "files: 1 listed, 0 skipped as unchanged, 1 read (0 new, 1 changed)" in " ".join(
        m["log"]["message"] for m in messages if m["type"] == "LOG")
    server = Server()
    rows, _, _ = cursor_sync(cfg, state, server)
    assert rows == [] and server.asked == []
