"""The published package, as Airbyte's Python tools install it.

PyAirbyte and Meltano's tap-airbyte install a Python connector from the package index as
``airbyte-source-<name>`` and run its console script ``source-<name>``. The wheel is built
from the files the Dockerfile copies, installed with pip into a fresh virtualenv, and given to
PyAirbyte as ``get_source("source-openai-compatible", pip_url=<the wheel>)``, offline (no
connector registry; the dependencies come from the package index). Marked ``compat``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomllib

from tests.conftest import ROOT, Server
from tests.test_compat import COMPAT_PYTHON, INPUT_ROWS, N_ROWS, STREAM, _config, _last_json, _run_compat

pytestmark = pytest.mark.compat

DISTRIBUTION = "airbyte-source-openai-compatible"
SCRIPT = "source-openai-compatible"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# pip's and uv's download caches, fixed at import: each test moves XDG_CACHE_HOME (conftest),
# and the installs below would otherwise download every dependency again.
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CACHES = {"PIP_CACHE_DIR": str(USER_CACHE / "pip"), "UV_CACHE_DIR": str(USER_CACHE / "uv")}


@dataclass
class Wheel:
    path: Path
    build_log: str


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """The wheel, built (verbosely, to see the build backend's warnings) from a clean copy."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "connector", src / "connector",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(work / "dist"),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (work / "dist").glob("*.whl")
    return Wheel(built, proc.stdout + proc.stderr)


def test_the_wheel_is_what_airbyte_tools_look_for(wheel: Wheel) -> None:
    assert wheel.path.name.startswith("airbyte_source_openai_compatible-")
    with zipfile.ZipFile(wheel.path) as zf:
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(info).decode())
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["License-Expression"] == "MIT"
    assert f"{SCRIPT} = connector.cli:main" in entry_points
    # The license as a table made setuptools warn on every build and install.
    warnings = [line.strip() for line in wheel.build_log.splitlines()
                if "Deprecat" in line or "BuildBackendWarning" in line]
    assert not warnings, "\n".join(warnings)


@pytest.fixture(scope="module")
def input_and_config(fake_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("package")
    pq.write_table(pa.table(INPUT_ROWS), work / "reviews.parquet")
    config = work / "config.json"
    config.write_text(json.dumps(_config(fake_server, work / "reviews.parquet", fake_server.api_key)))
    return config


def test_pip_install_of_the_wheel_in_a_fresh_venv_gives_a_working_connector(
        wheel: Wheel, input_and_config: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel.path)],
                         capture_output=True, text=True, timeout=900, env={**os.environ, **CACHES})
    assert pip.returncode == 0, pip.stderr[-3000:]

    spec = subprocess.run([str(env_dir / "bin" / SCRIPT), "spec"], capture_output=True, text=True, timeout=60)
    assert spec.returncode == 0, spec.stderr
    assert [json.loads(line)["type"] for line in spec.stdout.splitlines()] == ["SPEC"]
    check = subprocess.run([str(env_dir / "bin" / SCRIPT), "check", "--config", str(input_and_config)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    (status,) = [json.loads(line)["connectionStatus"] for line in check.stdout.splitlines()
                 if '"CONNECTION_STATUS"' in line]
    assert status["status"] == "SUCCEEDED", status


def test_pyairbyte_get_source_with_the_wheel_as_pip_url(wheel: Wheel, input_and_config: Path,
                                                         tmp_path: Path) -> None:
    # PyAirbyte installs with the `uv` of its own environment, found on PATH as in an activated venv.
    path = f"{COMPAT_PYTHON.parent}{os.pathsep}{os.environ['PATH']}"
    proc = _run_compat("pyairbyte_roundtrip.py", [str(input_and_config), "--pip-url", str(wheel.path)], tmp_path,
                       extra_env={**CACHES, "PATH": path}, timeout=900)
    summary = _last_json(proc, "pyairbyte_roundtrip.py")
    assert summary["error"] is None, f"{summary['error']}\n{summary.get('traceback', '')}\n{proc.stderr[-3000:]}"
    # PyAirbyte made its own virtualenv, installed the wheel there and ran its console script.
    installed = summary["installed"]
    assert installed["version"] == VERSION
    assert installed["executable"] == str(tmp_path / "install" / f".venv-{SCRIPT}" / "bin" / SCRIPT)
    assert summary["check"] == {"ok": True, "error": None}
    assert summary["read"][STREAM]["count"] == N_ROWS
    assert summary["read"][STREAM]["rows"][0]["answer"].startswith("echo: Item 101")
