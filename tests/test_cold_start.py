"""The cold start: each command imports only what it needs (docs/BENCHMARKS.md, cold start).

A platform runs ``spec``, ``check`` and ``discover`` in a fresh process each time, so what
they import is their start-up time. These tests run the real command in a subprocess and
look at what it loaded by the time it exited, not at a clock: a heavy import put back on one
of these paths fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from connector.airbyte.protocol import spec
from connector.config.specification import specification
from tests.conftest import ROOT, Server
from tests.fake_openai import spawn
from tests.test_check import _self_signed

# Runs ``python -m connector ARGS`` and, at exit, prints on stderr the modules it imported, how
# many garbage collections started once the command's module (connector.airbyte.commands) was
# being imported, and how often the system's CA certificates were loaded
# (ssl.create_default_context and aiohttp do it through SSLContext.set_default_verify_paths).
_WRAPPER = """
import atexit, gc, runpy, ssl, sys
loads, collections = [], []
real = ssl.SSLContext.set_default_verify_paths
def counting(self):
    loads.append(1)
    return real(self)
ssl.SSLContext.set_default_verify_paths = counting
def collected(phase, info):
    if phase == "start" and "connector.airbyte.commands" in sys.modules:
        collections.append(info["generation"])
gc.callbacks.append(collected)
def report():
    sys.stderr.write("\\nCOLD " + " ".join(sorted(sys.modules)) + f" GC={len(collections)} CA_LOADS={len(loads)}\\n")
atexit.register(report)
sys.argv = ["connector", *sys.argv[1:]]
runpy.run_module("connector", run_name="__main__", alter_sys=True)
"""


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], set[str], int, int]:
    """The command's messages, the modules it imported, its CA certificate loads and the garbage
    collections from the import of its command module on."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stderr.rsplit("\nCOLD ", 1)[1].split()
    loads = int(report.pop().removeprefix("CA_LOADS="))
    collections = int(report.pop().removeprefix("GC="))
    return [json.loads(line) for line in done.stdout.splitlines()], set(report), loads, collections


def _cold(*args: str, env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], set[str], int]:
    """The command's messages, the modules it imported and its CA certificate loads."""
    messages, modules, loads, _ = _run(*args, env=env)
    return messages, modules, loads


def _top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def _config(tmp_path: Path, url: str, api_key: str | None = None) -> str:
    csv = tmp_path / "small.csv"
    csv.write_text("id,text\n1,good\n2,bad\n3,fine\n4,poor\n5,great\n")
    config = {"url": url, "model": "fake-model", "prompt": "Rate: {{text}}", "input": {"path": str(csv)},
              "cache": {"enabled": False}, "timeout": 20}
    if api_key:
        config["api_key"] = api_key
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_spec_prints_the_models_specification_without_pydantic_or_asyncio() -> None:
    messages, modules, loads = _cold("spec")
    assert messages == [json.loads(json.dumps(spec(specification())))]
    assert not _top_level(modules) & {"pydantic", "pydantic_core", "asyncio", "aiohttp", "pyarrow", "orjson"}
    assert loads == 0


def test_check_and_discover_of_an_http_endpoint_load_no_ca_certificates(tmp_path: Path,
                                                                        fake_server: Server) -> None:
    config = _config(tmp_path, fake_server.base_url, fake_server.api_key)
    (status,), _, check_loads = _cold("check", "--config", config)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    catalog, _, discover_loads = _cold("discover", "--config", config)
    assert catalog[-1]["type"] == "CATALOG"
    assert [check_loads, discover_loads] == [0, 0]


def test_check_and_discover_talk_without_aiohttp(tmp_path: Path, fake_server: Server) -> None:
    """Their one or two requests go through the connector's own HTTP/1.1 transport (asyncio streams):
    no HTTP library's import is paid by a command that sends so few; discover still lists the models."""
    config = _config(tmp_path, fake_server.base_url, fake_server.api_key)
    (status,), checked, _ = _cold("check", "--config", config)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert "model(s) listed" in status["connectionStatus"]["message"]  # its GET /models answered too
    catalog, discovered, _ = _cold("discover", "--config", config)
    assert [s["name"] for s in catalog[-1]["catalog"]["streams"]] == ["enriched_rows", "models"]
    assert not (_top_level(checked) | _top_level(discovered)) & {"aiohttp", "httpx", "multidict", "yarl"}
    assert "pyarrow.parquet" not in discovered  # a CSV input loads no Parquet reader
    assert "connector.pipeline.progress" not in checked | discovered  # read's progress display


def test_check_and_discover_of_a_valid_config_import_neither_jsonschema_nor_pyarrow_compute(
        tmp_path: Path, fake_server: Server) -> None:
    """A config the schema precheck vouches for is not shown to jsonschema, and a 5-row CSV's types are
    inferred with pyarrow's kernels without pyarrow.compute's wrappers (each ~30 ms to import here)."""
    config = _config(tmp_path, fake_server.base_url, fake_server.api_key)
    (status,), checked, _ = _cold("check", "--config", config)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    catalog, discovered, _ = _cold("discover", "--config", config)
    assert catalog[-1]["type"] == "CATALOG"
    assert "pyarrow.csv" in checked & discovered  # the CSV was read
    assert not (checked | discovered) & {"jsonschema", "pyarrow.compute"}
    assert "dateutil" not in checked | discovered  # what pyarrow tries first when it infers a list's type


def test_check_and_discover_import_none_of_reads_machinery(tmp_path: Path, fake_server: Server) -> None:
    """The run's preparation beyond the endpoint client (answer cache, run loop, enricher, cursor and
    file syncs) is read's: check and discover import connector.pipeline.connect alone."""
    config = _config(tmp_path, fake_server.base_url, fake_server.api_key)
    _, checked, _ = _cold("check", "--config", config)
    _, discovered, _ = _cold("discover", "--config", config)
    assert "connector.pipeline.connect" in checked & discovered
    assert not (checked | discovered) & {"connector.pipeline.prepare", "connector.pipeline.run_loop",
                                          "connector.answers.cache", "connector.pipeline.enrich", "sqlite3"}
    # nor, for a file without input.cursor or input.primary_key, standard input's table, the cursor's, the key check
    assert not (checked | discovered) & {"connector.rows.stdin", "connector.rows.cursor_table", "connector.rows.keys"}
    # nor, without input.incremental, the file history that picks the files to read
    assert "connector.rows.file_history" not in checked | discovered


def test_an_https_endpoint_is_still_verified_against_the_system_certificates(tmp_path: Path) -> None:
    """The CA paths skipped at aiohttp's import are loaded for https: SSL_CERT_FILE (the system
    store's override) naming the server's certificate is what makes it trusted."""
    cert, key = _self_signed(tmp_path)
    with spawn("--tls-cert", str(cert), "--tls-key", str(key)) as (base, _pid):
        config = _config(tmp_path, base)
        system = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        (trusted,), _, loads = _cold("check", "--config", config, env={**system, "SSL_CERT_FILE": str(cert)})
        (untrusted,), _, _ = _cold("check", "--config", config, env=system)
    assert trusted["connectionStatus"]["status"] == "SUCCEEDED", trusted
    assert loads >= 1
    assert untrusted["connectionStatus"]["status"] == "FAILED"
    assert "TLS" in untrusted["connectionStatus"]["message"]


def test_check_and_discover_run_no_garbage_collection(tmp_path: Path, fake_server: Server) -> None:
    """The collector's walks over what their imports make find nothing to free: at a young threshold of
    50,000 they were ~15 ms of a ~250 ms check or discover; at the process's 200,000 none starts."""
    config = _config(tmp_path, fake_server.base_url, fake_server.api_key)
    (status,), _, _, check_collections = _run("check", "--config", config)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    catalog, _, _, discover_collections = _run("discover", "--config", config)
    assert catalog[-1]["type"] == "CATALOG"
    assert [check_collections, discover_collections] == [0, 0]


def test_no_config_default_is_made_by_a_builtin_with_a_text_signature() -> None:
    """pydantic reads each default factory's signature at the first validation; a builtin's, such as
    ``list``'s, is parsed from its text by tokenize's patterns, compiled on first use (~1.6 ms of every
    check and discover)."""
    from pydantic import BaseModel

    import connector.config.model  # noqa: F401  (defines every config model)

    models, seen = [BaseModel], []
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        if model.__module__.startswith("connector."):
            seen.append(model)
    factories = {f"{model.__name__}.{name}": field.default_factory for model in seen
                 for name, field in model.model_fields.items() if field.default_factory is not None}
    assert "RunSettings.fallback_models" in factories
    assert [name for name, factory in factories.items() if getattr(factory, "__text_signature__", None)] == []
