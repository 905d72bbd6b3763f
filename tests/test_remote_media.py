"""Media cells naming objects in S3 (moto's server; gs:// and az:// too, against Google's storage emulator and
Azurite), each started here on 127.0.0.1 and stopped by PID: read
through the input's store settings (``input.s3``) beside a local input, each API shape's byte limit
holding before a download completes, a missing object that row's ``bad_input`` naming it, and no
credential in any message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.media_files import StoreMedia
from tests.servers import stop
from tests.storage_servers import AZURITE_ACCOUNT, AZURITE_KEY, Running, moto_fs, start_azurite, start_gcs, start_moto
from tests.test_media import Endpoint, b64, pdf, png
from tests.test_remote_inputs import azure, s3

pytestmark = pytest.mark.storage

PHOTO = png(24, 12)
BIG = png(8, 8, padding=4 * 1024 * 1024)  # 4 MB: over Anthropic's 5 MB of base64 (3.75 MB of bytes)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    server = start_moto(tmp_path_factory.mktemp("moto-media"))
    try:
        fs = moto_fs(server)
        fs.create_dir("media")
        for key, data in (("photos/a.png", PHOTO), ("photos/big.png", BIG), ("invoices/one.pdf", pdf(3))):
            with fs.open_output_stream(f"media/{key}") as out:
                out.write(data)
        yield server
    finally:
        stop(server.pid)


def read_rows(moto: Running, shape: str, rows: list[dict[str, Any]], tmp_path: Path,
              **s3_override: str) -> tuple[Endpoint, list[dict[str, Any]], str]:
    """A read of a local Parquet file whose cells name S3 objects; the endpoint, the records, every message."""
    return read_stored(shape, rows, tmp_path, {"s3": s3(moto, **s3_override)})


def read_stored(shape: str, rows: list[dict[str, Any]], tmp_path: Path,
                stores: dict[str, Any]) -> tuple[Endpoint, list[dict[str, Any]], str]:
    """A read of a local Parquet file whose cells name objects in the stores ``stores`` (input's sections)."""
    from tests.conftest import read_through

    table = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    url = "http://media.test/v1beta" if shape == "gemini_generate_content" else "http://media.test/v1"
    config = {"url": url, "api_key": "sk-remote-media-0123456789", "model": "m", "api_compatibility": shape,
              "prompt": "Describe {{sku}}: {{photo}}", "media_columns": {"photo": "image"},
              "input": {"path": str(table), **stores}, "cache": {"enabled": False},
              "max_retries": 0, "on_row_error": "emit"}
    endpoint = Endpoint(shape)
    messages, error = read_through(config, endpoint)
    assert error is None or "every row failed" in str(error), error
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    return endpoint, records, json.dumps(messages) + str(error)


def test_an_s3_object_is_read_with_the_inputs_store_settings_and_sent_inline(moto: Running, tmp_path: Path) -> None:
    rows = [{"sku": "a", "photo": "s3://media/photos/a.png"}, {"sku": "m", "photo": "s3://media/photos/missing.png"},
            {"sku": "b", "photo": "s3://media/photos/big.png"}, {"sku": "d", "photo": "s3://media/invoices/one.pdf"}]
    endpoint, records, everything = read_rows(moto, "anthropic_messages", rows, tmp_path)
    assert [r["_status"] for r in records] == ["ok", "error", "error", "error"]
    assert endpoint.parts()[0][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": b64(PHOTO)}}
    assert len(endpoint.bodies) == 1  # nothing was sent for the three refused rows
    missing, big, pdf_row = records[1:]
    assert missing["_error_class"] == "bad_input"
    assert missing["_error"] == (f"column 'photo': object 'photos/missing.png' does not exist in bucket 'media' (at "
                                 f"{moto.facts['endpoint_url']}); check the key")
    assert big["_error_class"] == "bad_input"
    assert big["_error"] == ("column 'photo': 's3://media/photos/big.png' is over 3.8 MB, the most this API shape "
                             "takes per image (it holds 4.0 MB); nothing was downloaded")
    assert pdf_row["_error_class"] == "bad_input" and "declared image but holds application/pdf" in pdf_row["_error"]
    assert moto.facts["secret_access_key"] not in everything


def test_the_limit_is_the_shapes_a_larger_object_goes_where_the_shape_takes_it(moto: Running, tmp_path: Path) -> None:
    rows = [{"sku": "b", "photo": "s3://media/photos/big.png"}]
    endpoint, records, _ = read_rows(moto, "openai_chat_completions", rows, tmp_path)  # 20 MB per image
    assert records[0]["_status"] == "ok"
    assert endpoint.parts()[0][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(BIG)}"}}


def test_a_download_stops_past_the_limit(moto: Running) -> None:
    """When the store does not say the size first, the read still stops one byte past the limit."""
    store = StoreMedia(InputConfig.model_validate({"rows": [{}], "s3": s3(moto)}))
    assert store.size("s3://media/photos/big.png", "photo") == len(BIG)
    assert store.read("s3://media/photos/big.png", "photo", 1000) == BIG[:1001]
    assert store.read("s3://media/photos/a.png", "photo", 1000) == PHOTO


def test_refused_credentials_are_named_without_the_secret(moto: Running, tmp_path: Path) -> None:
    wrong = "wrong-secret-key-5b1e9d"
    rows = [{"sku": "a", "photo": "s3://media/photos/a.png"}]
    endpoint, records, everything = read_rows(moto, "openai_chat_completions", rows, tmp_path,
                                              secret_access_key=wrong)
    assert endpoint.bodies == [] and records[0]["_error_class"] == "bad_input"
    assert records[0]["_error"].startswith("column 'photo': authentication failed at")
    assert "check input.s3.secret_access_key" in records[0]["_error"]
    assert wrong not in everything and moto.facts["secret_access_key"] not in everything
    with pytest.raises(InputError, match="column 'photo': bucket 'nowhere' does not exist"):
        StoreMedia(InputConfig.model_validate({"rows": [{}], "s3": s3(moto)})).size("s3://nowhere/a.png", "photo")


@pytest.fixture(scope="module")
def gcs_and_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Running]]:
    """Google's storage emulator and Azurite, each holding media/photos/a.png."""
    import pyarrow.fs as pafs

    gcs = start_gcs(tmp_path_factory.mktemp("gcs-media"))
    try:
        blob = start_azurite(tmp_path_factory.mktemp("azurite-media"))
        try:
            for fs in (pafs.GcsFileSystem(anonymous=True, endpoint_override=gcs.address, scheme="http",
                                          project_id="test"),
                       pafs.AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                                            blob_storage_authority=blob.address, blob_storage_scheme="http",
                                            dfs_storage_authority=blob.address, dfs_storage_scheme="http")):
                fs.create_dir("media")
                with fs.open_output_stream("media/photos/a.png") as out:
                    out.write(PHOTO)
            yield gcs, blob
        finally:
            stop(blob.pid)
    finally:
        stop(gcs.pid)


def test_gs_and_az_objects_are_read_with_input_gcs_and_input_azure(gcs_and_azurite: tuple[Running, Running],
                                                                   tmp_path: Path) -> None:
    gcs, blob = gcs_and_azurite
    rows = [{"sku": "g", "photo": "gs://media/photos/a.png"}, {"sku": "z", "photo": "az://media/photos/a.png"},
            {"sku": "m", "photo": "gs://media/photos/missing.png"}]
    stores = {"gcs": {"endpoint_url": gcs.facts["endpoint_url"], "anonymous": True}, "azure": azure(blob)}
    endpoint, records, everything = read_stored("openai_chat_completions", rows, tmp_path, stores)
    assert [r["_status"] for r in records] == ["ok", "ok", "error"]
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PHOTO)}"}}
    assert [parts[1] for parts in endpoint.parts()] == [image, image]
    assert records[2]["_error"] == (f"column 'photo': object 'photos/missing.png' does not exist in bucket 'media' "
                                    f"(at {gcs.facts['endpoint_url']}); check the key")
    assert AZURITE_KEY not in everything
