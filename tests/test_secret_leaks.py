"""No credential in any output: every secret a config can carry gets a marker of its own, the test
server echoes each request's URL and headers back in an error body (raw, JSON-escaped and
percent-encoded), and every output of every command is searched for every marker in every form.

The configs, one per way of authenticating (a request carries one Authorization header):

- ``key``: api_key, a secret header, a key in the URL's query;
- ``userinfo``: ``user:password@`` in the URL (sent as Basic auth), a header, a query key;
- ``bedrock``: AWS access key id, secret key and session token (SigV4), a header, a query key;
- ``vertex``: service-account credentials (private key, its id), the OAuth token the test server
  hands out for them (derived at run time: a new one per fetch, so a token an earlier test
  taught the process masks nothing), a header, a query key.

The outputs: ``check``, ``discover``, ``read`` (RECORDs with ``_error``, LOG, STATE, the TRACE
naming the first errors), ``read --dry-run``, ``run`` into Parquet, CSV, JSONL and stdout (and
its stderr, and ``run --dry-run``), the answer cache file, and the scale-out workers (in process
here; on Spark and Ray in .venv-scale under the ``scale`` marker).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.cli import run as cli_run
from connector.scaleout import BatchEnricher
from connector.secrets import MASK
from tests.conftest import ROOT, catalog_for
from tests.fake_openai import spawn

ECHO = "[[fake:echo-request]]"
# Characters that percent-encoding, JSON and Basic auth each change, in every marker.
TOKEN = "ya29.MARK-vertex/token+derived=1"
USER, PASSWORD = "MARK-user/name+1", "MARK-pass/word+2=x"
PRIVATE_KEY_ID = "MARKpkid0123456789"


@dataclass
class Case:
    name: str
    raw: dict[str, Any]
    markers: dict[str, str] = field(default_factory=dict)


def _forms(marker: str) -> set[str]:
    return {marker, quote(marker, safe=""), quote(marker, safe="").lower(), quote_plus(marker),
            json.dumps(marker)[1:-1], json.dumps(json.dumps(marker))[3:-3]}


def assert_no_marker(where: str, text: str | bytes, case: Case) -> None:
    data = text if isinstance(text, str) else text.decode("utf-8", "replace")
    for what, marker in case.markers.items():
        for form in _forms(marker):
            assert form not in data, f"{case.name}: {what} ({form!r}) appears in {where}"


def _service_account(token_uri: str) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "proj", "private_key_id": PRIVATE_KEY_ID,
            "private_key": pem, "client_email": "enricher@proj.iam.gserviceaccount.com",
            "client_id": "1234", "token_uri": token_uri}
    return json.dumps(info), pem


def cases(base: str) -> list[Case]:
    """``base``: the test server's http://127.0.0.1:<port>/v1."""
    common = {"model": "m", "prompt": "Review: {{review}}", "max_retries": 0, "timeout": 20}

    def query(marker: str) -> str:
        return "?key=" + quote(marker, safe="")

    key_case = Case("key", {**common, "url": base + query("MARK-query/key+k1"), "api_key": "sk-MARK/api+key=1",
                            "headers": {"X-Tenant": "MARK-header/value+h1"}},
                    {"api_key": "sk-MARK/api+key=1", "query": "MARK-query/key+k1", "header": "MARK-header/value+h1"})
    origin, path = base.split("://", 1)[1].split("/", 1)
    userinfo = f"http://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{origin}/{path}"
    user_case = Case("userinfo", {**common, "url": userinfo + query("MARK-query/key+k2"),
                                  "headers": [{"name": "X-Tenant", "value": "MARK-header/value+h2"}]},
                     {"password": PASSWORD, "user": USER, "basic": base64.b64encode(f"{USER}:{PASSWORD}".encode())
                      .decode(), "query": "MARK-query/key+k2", "header": "MARK-header/value+h2"})
    bedrock = {"region": "us-east-1", "access_key_id": "AKIAMARKBEDROCK0001",
               "secret_access_key": "MARK/bedrock+secret=key3", "session_token": "MARK-session/token+3"}
    bedrock_case = Case("bedrock", {**common, "api_compatibility": "amazon_bedrock", "url": base + query("MARK-q/k3"),
                                    "bedrock": bedrock, "headers": {"X-Tenant": "MARK-header/value+h3"}},
                        {"access_key_id": bedrock["access_key_id"], "secret_key": bedrock["secret_access_key"],
                         "session_token": bedrock["session_token"], "query": "MARK-q/k3",
                         "header": "MARK-header/value+h3"})
    credentials, pem = _service_account(base.removesuffix("/v1") + "/token")
    body_line = pem.splitlines()[5]  # a line of the key's body
    vertex_case = Case("vertex", {**common, "api_compatibility": "google_vertex", "url": base + query("MARK-q/k4"),
                                  "vertex": {"project": "proj", "location": "us-central1",
                                             "credentials_json": credentials},
                                  "headers": {"X-Tenant": "MARK-header/value+h4"}},
                       {"private_key": body_line, "private_key_id": PRIVATE_KEY_ID, "token": TOKEN,
                        "query": "MARK-q/k4", "header": "MARK-header/value+h4"})
    return [key_case, user_case, bedrock_case, vertex_case]


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with spawn("--oauth-token", TOKEN) as (base, _pid):
        yield base


def cli(*argv: str) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = cli_run(list(argv), out, err, io.BytesIO())
    return code, out.getvalue(), err.getvalue()


def write(folder: Path, name: str, value: Any) -> str:
    (folder / name).write_text(json.dumps(value))
    return str(folder / name)


ROWS = [{"review": f"{ECHO} echoed one"}, {"review": "fine"}, {"review": f"{ECHO} echoed two"}]


@pytest.mark.parametrize("which", ["key", "userinfo", "bedrock", "vertex"])
def test_no_secret_in_any_command_output(echo_server: str, tmp_path: Path, which: str) -> None:
    case = next(c for c in cases(echo_server) if c.name == which)
    cache = tmp_path / "answers.sqlite"
    raw = {**case.raw, "input": {"rows": ROWS}, "cache": {"path": str(cache)}}
    config = write(tmp_path, "config.json", raw)
    failing = write(tmp_path, "failing.json", {**raw, "input": {"rows": [ROWS[0], ROWS[2]]}})
    catalog = write(tmp_path, "catalog.json", catalog_for())
    outputs: dict[str, str | bytes] = {}

    code, out, err = cli("check", "--config", config)
    status = json.loads(out)["connectionStatus"]
    assert code == 0 and status["status"] == "FAILED" and "echo: POST" in status["message"], status
    outputs["check"] = out + err.encode()
    code, out, err = cli("discover", "--config", config)
    assert code == 0, out
    outputs["discover"] = out + err.encode()

    code, out, err = cli("read", "--config", config, "--catalog", catalog)
    messages = [json.loads(line) for line in out.splitlines()]
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert code == 0 and [r["_status"] for r in records] == ["error", "ok", "error"], out
    assert "echo: POST" in records[0]["_error"] and MASK in records[0]["_error"]
    assert any(m["type"] == "STATE" for m in messages)
    outputs["read"] = out + err.encode()
    code, out, err = cli("read", "--config", failing, "--catalog", catalog)
    traces = [json.loads(line)["trace"] for line in out.splitlines() if b'"TRACE"' in line]
    assert code == 1 and any("first errors" in t.get("error", {}).get("message", "") for t in traces), out
    outputs["read, every row failing"] = out + err.encode()
    code, out, err = cli("read", "--config", config, "--catalog", catalog, "--dry-run")
    assert code == 0 and b"dry run request 1" in out, out
    outputs["read --dry-run"] = out + err.encode()

    for fmt in ("parquet", "csv", "jsonl"):
        target = tmp_path / f"out.{fmt}"
        code, out, err = cli("run", "--config", config, "--output", str(target))
        assert code == 0, err
        outputs[f"run --output {target.name}"] = target.read_bytes()
        outputs[f"run --output {target.name} (stdout, stderr)"] = out + err.encode()
    text = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert MASK in str(text) and "echo: POST" in str(text)  # the echo happened, masked, in the file too
    code, out, err = cli("run", "--config", config, "--output", "-")
    assert code == 0 and out.count(b"\n") == 3, err
    outputs["run --output -"] = out + err.encode()
    code, out, err = cli("run", "--config", failing, "--output", str(tmp_path / "never.jsonl"))
    assert code == 1 and "first errors" in err, err
    outputs["run, every row failing (stderr)"] = out + err.encode()
    code, out, err = cli("run", "--config", config, "--dry-run")
    assert code == 0, err
    outputs["run --dry-run"] = out + err.encode()

    assert cache.is_file()
    outputs["the answer cache"] = b"".join(p.read_bytes() for p in tmp_path.glob("answers.sqlite*"))

    for where, text in outputs.items():
        assert_no_marker(where, text, case)


@pytest.mark.parametrize("which", ["key", "userinfo", "bedrock", "vertex"])
def test_a_secret_echoed_in_an_answer_is_masked_in_records_files_and_the_cache(echo_server: str, tmp_path: Path,
                                                                                which: str) -> None:
    """Before: an endpoint that answered 200 with the request's headers put the key, unmasked, into the
    record's answer, the run's output files and the answer cache."""
    case = next(c for c in cases(echo_server) if c.name == which)
    cache = tmp_path / "answers.sqlite"
    rows = [{"review": "[[fake:echo-answer]] one"}, {"review": "fine"}]
    config = write(tmp_path, "config.json", {**case.raw, "input": {"rows": rows}, "cache": {"path": str(cache)}})
    catalog = write(tmp_path, "catalog.json", catalog_for())
    outputs: dict[str, str | bytes] = {}
    for attempt in ("bought", "from the cache"):
        code, out, err = cli("read", "--config", config, "--catalog", catalog)
        records = [json.loads(line)["record"]["data"] for line in out.splitlines() if b'"RECORD"' in line]
        assert code == 0 and [r["_status"] for r in records] == ["ok", "ok"], out
        assert "echo: POST" in records[0]["answer"] and MASK in records[0]["answer"], records[0]["answer"]
        assert records[0]["_cached"] is (attempt == "from the cache")
        outputs[f"read ({attempt})"] = out + err.encode()
    for fmt in ("parquet", "jsonl"):
        target = tmp_path / f"out.{fmt}"
        code, out, err = cli("run", "--config", config, "--output", str(target))
        assert code == 0, err
        outputs[f"run --output {target.name}"] = target.read_bytes()
    outputs["the answer cache"] = b"".join(p.read_bytes() for p in tmp_path.glob("answers.sqlite*"))
    for where, text in outputs.items():
        assert_no_marker(where, text, case)


@pytest.mark.parametrize("which", ["key", "userinfo", "bedrock", "vertex"])
def test_no_secret_in_what_a_scale_out_worker_returns(echo_server: str, which: str) -> None:
    """What a Spark task or Ray actor runs, in process: BatchEnricher."""
    case = next(c for c in cases(echo_server) if c.name == which)
    schema = pa.schema([("review", pa.string())])
    enricher = BatchEnricher({**case.raw, "cache": {"enabled": False}}, schema, workers=2, concurrency=2)
    try:
        batch = enricher.enrich(pa.RecordBatch.from_pylist(ROWS, schema=schema))
    finally:
        enricher.close()
    rows = batch.to_pylist()
    assert [r["_status"] for r in rows] == ["error", "ok", "error"]
    assert MASK in rows[0]["_error"]
    assert_no_marker("a worker's batch", json.dumps(rows, default=str), case)


SCALE_PYTHON = ROOT / ".venv-scale" / "bin" / "python"


@pytest.mark.scale
@pytest.mark.parametrize(("job", "which"), [("spark_job.py", "key"), ("ray_job.py", "userinfo")])
def test_no_secret_in_spark_or_ray_output(echo_server: str, tmp_path: Path, job: str, which: str) -> None:
    """Every request echoed (the header asks for it), in Spark's and Ray's own worker processes.
    (.venv-scale has no google-auth or botocore: the Vertex and Bedrock cases run in process above.)"""
    if not SCALE_PYTHON.exists():
        pytest.fail(f"{SCALE_PYTHON} is missing: run `make scale`", pytrace=False)
    case = next(c for c in cases(echo_server) if c.name == which)
    headers = case.raw["headers"]
    headers = [*headers, {"name": "x-fake", "value": "echo-request"}] if isinstance(headers, list) \
        else {**headers, "x-fake": "echo-request"}
    config = write(tmp_path, "config.json", {**case.raw, "headers": headers, "cache": {"enabled": False}})
    out = tmp_path / "out.json"
    proc = subprocess.run([str(SCALE_PYTHON), str(ROOT / "tests" / "scale" / job), config, str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 60 and all(r["_status"] == "error" and MASK in r["_error"] for r in rows)
    assert_no_marker(f"{job}'s rows", out.read_text(), case)
    assert_no_marker(f"{job}'s stdout and stderr", proc.stdout + proc.stderr, case)
