"""Inputs where they live: s3:// (moto's server), https:// (a stdlib server with its own CA) and sftp://
(asyncssh's server), each a real server started here on 127.0.0.1 and stopped by PID.

Each location is read end to end by ``read`` (rows exactly as a local file gives them) and its
``check`` names what is wrong (missing bucket or object, refused credentials, unreachable host,
unknown host key) without a traceback or a credential.
"""

from __future__ import annotations

import csv
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.servers import free_port, stop
from tests.storage_servers import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Running,
    check,
    moto_fs,
    records,
    start_azurite,
    start_gcs,
    start_https,
    start_moto,
    start_sftp,
)

pytestmark = pytest.mark.storage

TOKEN = "tok-https-secret-7f3a9c"
SFTP_USER, SFTP_PASSWORD = "loader", "sftp-secret-pass-91"
ROWS = [{"id": i, "text": f"review {i}", "price": f"{i}.50"} for i in range(1, 8)]


def config(path: str, **input_extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": "m", "prompt": "Say {{text}}",
            "input": {"path": path, **input_extra}}


def local_records(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    return records(config(str(tmp_path / "local" / name)))


def write_tables(folder: Path) -> None:
    """The same rows as CSV, JSONL and two Parquet parts (the CSV keeps price as text like 1.50)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "rows.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "text", "price"])
        writer.writeheader()
        writer.writerows(ROWS)
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table.slice(0, 4), folder / "part-1.parquet", row_group_size=2)
    pq.write_table(table.slice(4), folder / "part-2.parquet", row_group_size=2)


def upload_tables(fs: pafs.FileSystem, workdir: Path) -> None:
    """The tables of :func:`write_tables` in bucket ``data`` under ``tables/`` (and a local copy)."""
    fs.create_dir("data")
    write_tables(workdir / "local")
    for item in (workdir / "local").iterdir():
        with fs.open_output_stream(f"data/tables/{item.name}") as out:
            out.write(item.read_bytes())


def enriched(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["id"], r["text"], r["price"], r["answer"], r["_status"]) for r in rows]


# S3 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("moto")
    server = start_moto(workdir)
    try:
        fs = moto_fs(server)
        fs.create_dir("data")
        local = workdir / "local"
        write_tables(local)
        for item in local.iterdir():
            with fs.open_output_stream(f"data/tables/{item.name}") as out:
                out.write(item.read_bytes())
            if item.suffix == ".parquet":
                with fs.open_output_stream(f"data/parts/2025/{item.name}") as out:
                    out.write(item.read_bytes())
        yield server
    finally:
        stop(server.pid)


def s3(moto: Running, **override: str) -> dict[str, Any]:
    facts = moto.facts
    return {"endpoint_url": facts["endpoint_url"], "region": "us-east-1", "access_key_id": facts["access_key_id"],
            "secret_access_key": facts["secret_access_key"], **override}


@pytest.fixture(scope="module")
def local_dir(moto: Running) -> Path:
    return moto.log.parent


@pytest.mark.parametrize("name, path", [("rows.csv", "rows.csv"), ("rows.jsonl", "rows.jsonl"),
                                        ("part-*.parquet", "part-*.parquet")])
def test_s3_rows_are_read_exactly_as_the_local_file_gives_them(moto: Running, local_dir: Path, name: str,
                                                                 path: str) -> None:
    remote = records(config(f"s3://data/tables/{path}", s3=s3(moto)))
    assert enriched(remote) == enriched(local_records(local_dir, name))
    assert [r["id"] for r in remote] == list(range(1, 8))


def test_s3_prefix_reads_every_file_under_it(moto: Running) -> None:
    assert [r["id"] for r in records(config("s3://data/parts/", s3=s3(moto)))] == list(range(1, 8))
    status = check(config("s3://data/tables/", s3=s3(moto)))
    assert status["status"] == "FAILED"
    assert "files of several formats match" in status["message"]


@pytest.mark.parametrize("path, override, expected", [
    ("s3://data/tables/rows.csv", {"secret_access_key": "wrong-secret-key-000"},
     "authentication failed at {endpoint}: the secret access key does not match"),
    ("s3://data/tables/rows.csv", {"access_key_id": "AKIAUNKNOWNUNKNOWN00"},
     "authentication failed at {endpoint}: the access key id is unknown"),
    ("s3://nobucket/rows.csv", {}, "bucket 'nobucket' does not exist (at {endpoint})"),
    ("s3://data/tables/missing.csv", {}, "object 'tables/missing.csv' does not exist in bucket 'data'"),
    ("s3://data/tables/*.tsv", {}, "no object matches 's3://data/tables/*.tsv'"),
])
def test_s3_check_names_what_is_wrong_without_the_secret(moto: Running, path: str, override: dict[str, str],
                                                         expected: str) -> None:
    cfg = config(path, s3=s3(moto, **override))
    status = check(cfg)
    assert status["status"] == "FAILED"
    assert expected.format(endpoint=moto.facts["endpoint_url"]) in status["message"]
    assert moto.facts["secret_access_key"] not in status["message"]
    assert "wrong-secret-key-000" not in status["message"]
    assert "Traceback" not in status["message"]


def test_s3_check_names_an_endpoint_nobody_listens_on(moto: Running) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    status = check(config("s3://data/tables/rows.csv", s3=s3(moto, endpoint_url=endpoint)))
    assert status["status"] == "FAILED"
    assert f"cannot connect to {endpoint}; check input.s3.endpoint_url" in status["message"]


def test_s3_check_succeeds_with_the_right_keys(moto: Running) -> None:
    status = check(config("s3://data/tables/part-*.parquet", s3=s3(moto)))
    assert status["status"] == "SUCCEEDED", status["message"]


# Google Cloud Storage (the emulator never checks credentials) ----------------------------------


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("gcs")
    server = start_gcs(workdir)
    try:
        fs = pafs.GcsFileSystem(anonymous=True, endpoint_override=server.address, scheme="http", project_id="test")
        upload_tables(fs, workdir)
        yield server
    finally:
        stop(server.pid)


@pytest.mark.parametrize("name, path", [("rows.csv", "rows.csv"), ("part-*.parquet", "part-*.parquet")])
def test_gcs_rows_are_read_exactly_as_the_local_file_gives_them(gcs: Running, name: str, path: str) -> None:
    settings = {"endpoint_url": gcs.facts["endpoint_url"], "anonymous": True}
    remote = records(config(f"gs://data/tables/{path}", gcs=settings))
    assert enriched(remote) == enriched(local_records(gcs.log.parent, name))
    assert [r["id"] for r in remote] == list(range(1, 8))


def test_gcs_check_names_a_missing_bucket_object_and_endpoint(gcs: Running) -> None:
    settings = {"endpoint_url": gcs.facts["endpoint_url"], "anonymous": True}
    for path in ("gs://nobucket/tables/rows.csv", "gs://nobucket/tables/*.parquet"):
        status = check(config(path, gcs=settings))
        assert f"bucket 'nobucket' does not exist (at {gcs.facts['endpoint_url']})" in status["message"]
    status = check(config("gs://data/tables/missing.csv", gcs=settings))
    assert "object 'tables/missing.csv' does not exist in bucket 'data'" in status["message"]
    endpoint = f"http://127.0.0.1:{free_port()}"
    status = check(config("gs://data/tables/rows.csv", gcs={"endpoint_url": endpoint, "anonymous": True}))
    assert status["status"] == "FAILED"
    assert f"cannot connect to {endpoint}; check input.gcs.endpoint_url" in status["message"]


# Azure Blob Storage (Azurite) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("azurite")
    server = start_azurite(workdir)
    try:
        fs = pafs.AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                                  blob_storage_authority=server.address, blob_storage_scheme="http",
                                  dfs_storage_authority=server.address, dfs_storage_scheme="http")
        upload_tables(fs, workdir)
        yield server
    finally:
        stop(server.pid)


def azure(server: Running, **override: str) -> dict[str, str]:
    return {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY, "endpoint_url": server.facts["endpoint_url"],
            **override}


@pytest.mark.parametrize("path", ["az://data/tables/part-*.parquet",
                                  f"abfs://data@{AZURITE_ACCOUNT}.dfs.core.windows.net/tables/part-*.parquet"])
def test_azure_rows_are_read_exactly_as_the_local_file_gives_them(azurite: Running, path: str) -> None:
    remote = records(config(path, azure=azure(azurite)))
    assert enriched(remote) == enriched(local_records(azurite.log.parent, "part-*.parquet"))
    assert len(remote) == 7


def test_azure_check_names_a_wrong_key_and_a_missing_container(azurite: Running) -> None:
    wrong = "d3Jvbmcta2V5LWZvci10ZXN0cy0wMDAwMDAwMDAwMDA="
    status = check(config("az://data/tables/rows.csv", azure=azure(azurite, account_key=wrong)))
    assert status["status"] == "FAILED"
    assert f"authentication failed at {azurite.facts['endpoint_url']}: the credentials were refused; check " \
           "input.azure" in status["message"]
    assert wrong not in status["message"]
    status = check(config("az://nothere/rows.csv", azure=azure(azurite)))
    assert f"bucket 'nothere' does not exist (at {azurite.facts['endpoint_url']})" in status["message"]


# HTTPS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("https")
    write_tables(workdir / "local")
    server = start_https(workdir, workdir / "local", TOKEN)
    try:
        yield server
    finally:
        stop(server.pid)


def https_config(server: Running, name: str, **extra: Any) -> dict[str, Any]:
    cfg = config(f"https://{server.address}/{name}", https={"headers": {"Authorization": f"Bearer {TOKEN}"}},
                 **extra)
    cfg["tls"] = {"ca_bundle": server.facts["ca"]}
    return cfg


def stats(server: Running) -> dict[str, int]:
    trust = ssl.create_default_context(cafile=server.facts["ca"])
    response = httpx.get(f"https://{server.address}/_stats", verify=trust)
    return dict(response.json())


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl", "part-1.parquet"])
def test_https_rows_are_read_exactly_as_the_local_file_gives_them(https: Running, name: str) -> None:
    remote = records(https_config(https, name))
    assert enriched(remote) == enriched(local_records(https.log.parent, name))
    assert remote


def test_https_parquet_is_read_by_ranges_only(https: Running) -> None:
    before = stats(https)
    assert len(records(https_config(https, "part-2.parquet"))) == 3
    after = stats(https)
    assert after["whole"] == before["whole"]  # never downloaded whole
    assert after["ranged"] > before["ranged"]


def test_https_signed_url_reads_and_its_token_is_never_shown(https: Running) -> None:
    cfg = config(f"https://{https.address}/rows.csv?sig={TOKEN}")
    cfg["tls"] = {"ca_bundle": https.facts["ca"]}
    assert len(records(cfg)) == 7
    wrong = config(f"https://{https.address}/rows.csv?sig=not-the-token-55")
    wrong["tls"] = cfg["tls"]
    status = check(wrong)
    assert status["status"] == "FAILED"
    assert "refused the credentials (401)" in status["message"]
    assert "not-the-token-55" not in status["message"]


@pytest.mark.parametrize("change, expected", [
    ({"https": {"headers": {"Authorization": "Bearer wrong-token-123456"}}}, "refused the credentials (401)"),
    ({"tls": None}, "is not trusted"),
])
def test_https_check_names_refused_credentials_and_an_untrusted_certificate(https: Running, change: dict[str, Any],
                                                                            expected: str) -> None:
    cfg = https_config(https, "rows.csv")
    for key, value in change.items():
        if key == "tls":
            cfg.pop("tls")
        else:
            cfg["input"][key] = value
    status = check(cfg)
    assert status["status"] == "FAILED"
    assert expected in status["message"]
    assert "wrong-token-123456" not in status["message"] and TOKEN not in status["message"]


def test_https_check_names_a_missing_file(https: Running) -> None:
    status = check(https_config(https, "nothing.csv"))
    assert status["status"] == "FAILED"
    assert f"https://{https.address}/nothing.csv does not exist (404)" in status["message"]


# SFTP -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("sftp")
    write_tables(workdir / "local" / "tables")
    server = start_sftp(workdir, workdir / "local", SFTP_USER, SFTP_PASSWORD)
    try:
        yield server
    finally:
        stop(server.pid)


def sftp_config(server: Running, path: str, **settings: Any) -> dict[str, Any]:
    sftp_settings = {"username": SFTP_USER, "password": SFTP_PASSWORD,
                     "host_key_fingerprint": server.facts["fingerprint"], **settings}
    return config(f"sftp://{server.address}{path}", sftp={k: v for k, v in sftp_settings.items() if v is not None})


def test_sftp_rows_by_password_with_the_fingerprint(sftp: Running) -> None:
    remote = records(sftp_config(sftp, "/tables/part-*.parquet"))
    local = records(config(str(sftp.log.parent / "local" / "tables" / "part-*.parquet")))
    assert enriched(remote) == enriched(local)
    assert len(remote) == 7


def test_sftp_rows_by_key_with_known_hosts(sftp: Running, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sftp.facts["known_hosts_line"])
    key = Path(sftp.facts["client_key"]).read_text()
    cfg = sftp_config(sftp, "/tables/rows.csv", password=None, host_key_fingerprint=None, private_key=key,
                      known_hosts=str(known))
    assert enriched(records(cfg)) == enriched(local_records(sftp.log.parent, "tables/rows.csv"))


def test_sftp_unknown_host_key_is_refused_naming_its_fingerprint(sftp: Running, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    status = check(sftp_config(sftp, "/tables/rows.csv", host_key_fingerprint=None, known_hosts=str(empty)))
    assert status["status"] == "FAILED"
    assert f"is not in {empty} (its host key is {sftp.facts['fingerprint']})" in status["message"]


def test_sftp_wrong_fingerprint_and_wrong_password_are_refused(sftp: Running) -> None:
    other = "SHA256:" + "A" * 43
    status = check(sftp_config(sftp, "/tables/rows.csv", host_key_fingerprint=other))
    assert status["status"] == "FAILED"
    assert f"presented host key {sftp.facts['fingerprint']}, not {other}" in status["message"]
    status = check(sftp_config(sftp, "/tables/rows.csv", password="wrong-password-77"))
    assert status["status"] == "FAILED"
    assert f"refused the login of user '{SFTP_USER}' (authentication failed)" in status["message"]
    assert "wrong-password-77" not in status["message"]


def test_sftp_missing_file_and_unreachable_host(sftp: Running) -> None:
    status = check(sftp_config(sftp, "/tables/none.csv"))
    assert "/tables/none.csv does not exist" in status["message"]
    port = free_port()
    status = check(config(f"sftp://127.0.0.1:{port}/x.csv", sftp={"password": "p"}))
    assert status["status"] == "FAILED"
    assert f"cannot connect to sftp://127.0.0.1:{port}" in status["message"]
