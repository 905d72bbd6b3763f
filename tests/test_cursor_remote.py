"""A cursor sync (``input.cursor``) of a Parquet object in an S3 bucket (moto's server, started here on
127.0.0.1 and stopped by PID): day 2, after a new version of the object with more rows, asks the fake
endpoint for exactly the new rows, the rows tied at the saved cursor value neither lost nor asked again."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests import test_remote_incremental, test_remote_inputs
from tests.storage_servers import Running
from tests.test_cursor_sync import DAY1, Server, config, cursor_of, sync, write_csv
from tests.test_remote_inputs import https_config

pytestmark = pytest.mark.storage


moto = test_remote_incremental.moto  # the same moto S3 server fixture (started here, stopped by PID)


def put(server: Running, key: str, rows: list[tuple[int, str, int]]) -> None:
    facts = server.facts
    fs = pafs.S3FileSystem(access_key=facts["access_key_id"], secret_key=facts["secret_access_key"],
                           endpoint_override=server.address, scheme="http", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir(key.split("/", 1)[0])
    ids, texts, versions = zip(*rows, strict=True)
    with fs.open_output_stream(key) as out:
        pq.write_table(pa.table({"id": list(ids), "text": list(texts), "version": list(versions)}), out)


def s3_input(server: Running, path: str, **extra: Any) -> dict[str, Any]:
    facts = server.facts
    return {"path": path, "s3": {"endpoint_url": facts["endpoint_url"], "region": "us-east-1",
                                 "access_key_id": facts["access_key_id"],
                                 "secret_access_key": facts["secret_access_key"]}, **extra}


def test_day_two_of_an_s3_parquet_object_asks_exactly_the_new_rows(moto: Running) -> None:
    day1 = [(1, "a", 10), (2, "b", 20), (3, "c", 30), (4, "d", 30)]
    put(moto, "cursors/tickets.parquet", day1)
    cfg = config(s3_input(moto, "s3://cursors/tickets.parquet", cursor="version", primary_key="id"))
    server = Server()
    records, _, state = sync(cfg, server=server)
    assert server.asked == [r["text"] for r in records] == ["a", "b", "c", "d"]
    assert cursor_of(state)["value"] == 30 and cursor_of(state)["keys_at_value"] == ["3", "4"]

    # A new version of the object: a row tied at the saved value, a later one, an edited row moved forward.
    put(moto, "cursors/tickets.parquet", [*day1[:1], (2, "b edited", 40), *day1[2:], (5, "e", 30), (6, "f", 50)])
    server = Server()
    records, _, state = sync(cfg, state, server)
    assert sorted(server.asked) == sorted(r["text"] for r in records) == ["b edited", "e", "f"]
    assert cursor_of(state)["value"] == 50
    server = Server()
    records, _, _ = sync(cfg, state, server)
    assert records == [] and server.asked == []


https = test_remote_inputs.https  # the HTTPS file server with its own CA (module fixture)


def test_day_two_of_a_csv_over_https_asks_exactly_the_new_and_changed_rows(https: Running) -> None:
    """Issue 21's daily CSV over HTTPS: the file is replaced on the server between syncs (as an export job
    rewrites it); the cursor sync asks for exactly the rows past the saved value, ties included."""
    served = https.log.parent / "local" / "daily.csv"
    write_csv(served, DAY1)
    cfg = https_config(https, "daily.csv", cursor="updated_at", primary_key="id")
    cfg["cache"] = {"enabled": False}
    server = Server()
    records, _, state = sync(cfg, server=server)
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5] and len(server.asked) == 5

    write_csv(served, [*DAY1, (2, "b2", "2025-01-01T13:00:00Z"), (6, "f", "2025-01-01T12:00:00Z"),
                       (7, "g", "2025-01-02T08:00:00Z")])
    server = Server()
    records, _, state = sync(cfg, state, server)
    assert sorted(server.asked) == ["Say b2", "Say f", "Say g"] and [r["id"] for r in records] == [2, 6, 7]
    server = Server()
    records, _, _ = sync(cfg, state, server)
    assert records == [] and server.asked == []
