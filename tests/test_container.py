"""The container image, as far as it can be tested without a Docker engine (none runs here).

The Dockerfile is read and its conventions checked; then what its build stage does
is done in a fresh virtualenv: the files its COPY lines name (less .dockerignore's
patterns) are copied, and installed the way its ``RUN pip install`` does (no dev
extras). Every ``docker run`` line of docs/RUNNING.md's container section is then run
as the image would run it: ``$AIRBYTE_ENTRYPOINT`` with the same arguments, each
``-v host:container`` mount a folder, in the image's WORKDIR. Marked ``compat``:
the install takes a minute (pip's cache helps).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Server

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Image:
    """What the Dockerfile says."""

    bases: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # build-stage COPY sources, dest
    installs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""


def parse_dockerfile(text: str) -> Image:
    image = Image()
    for line in _logical_lines(text):
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            image.bases.append(rest.split()[0])
        elif op == "COPY" and not rest.startswith("--from"):
            *sources, dest = shlex.split(rest)
            image.copies.append((sources, dest))
        elif op == "RUN" and "pip install" in rest:
            image.installs.append(rest)
        elif op in ("ENV", "LABEL"):
            target = image.env if op == "ENV" else image.labels
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                target[key] = value
        elif op == "USER":
            image.user = rest.strip()
        elif op == "WORKDIR":
            image.workdir = rest.strip()
        elif op == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
    return image


def test_the_dockerfile_follows_airbytes_python_connector_conventions() -> None:
    image = parse_dockerfile(DOCKERFILE.read_text())
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)[1]
    assert all(re.fullmatch(r"python:3\.\d+-slim", base) for base in image.bases), image.bases
    assert image.labels["io.airbyte.name"] == "airbyte/source-openai-compatible"
    assert image.labels["io.airbyte.version"] == version
    assert image.env["AIRBYTE_ENTRYPOINT"] == "source-openai-compatible"
    assert image.entrypoint == shlex.split(image.env["AIRBYTE_ENTRYPOINT"])
    assert image.user not in (None, "root", "0")
    dockerignore = (ROOT / ".dockerignore").read_text()
    assert ".venv" in dockerignore and ".git" in dockerignore


def _ignored(path: Path, patterns: list[str]) -> bool:
    rel = str(path.relative_to(ROOT))
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(path.name, p.removeprefix("**/")) for p in patterns)


def _build_context(image: Image, into: Path) -> Path:
    """The build stage's /src: what the COPY lines take from the context, less .dockerignore."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    src = into / "src"
    src.mkdir()
    for sources, dest in image.copies:
        for source in sources:
            origin = ROOT / source
            inside = dest.removeprefix("/src").lstrip("/")  # relative to the build stage's WORKDIR /src
            target = src / inside / origin.name if dest.endswith("/") or len(sources) > 1 else src / inside
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=lambda d, names: [
                    n for n in names if _ignored(Path(d) / n, patterns)])
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, target)
    return src


@dataclass
class Installed:
    bin: Path
    image: Image


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    image = parse_dockerfile(DOCKERFILE.read_text())
    root = tmp_path_factory.mktemp("image")
    src = _build_context(image, root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (install,) = image.installs
    assert re.search(r"pip install (--no-cache-dir )?(--prefix=\S+ )?\.$", install), install
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "."], cwd=src, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Installed(venv / "bin", image)


def _docker_runs() -> list[list[str]]:
    readme = (ROOT / "docs" / "RUNNING.md").read_text()
    section = readme.split("<!-- docker-run:start -->", 1)[1].split("<!-- docker-run:end -->", 1)[0]
    return [shlex.split(line) for line in section.splitlines() if line.startswith("docker run")]


@dataclass
class Invocation:
    mounts: dict[str, str]  # container path -> host folder name
    interactive: bool
    args: list[str]
    stdin_file: str | None


def _parse_run(words: list[str]) -> Invocation:
    assert words[:2] == ["docker", "run"]
    rest = words[2:]
    if "<" in rest:
        at = rest.index("<")
        stdin_file, rest = rest[at + 1], rest[:at]
    else:
        stdin_file = None
    mounts: dict[str, str] = {}
    interactive = False
    i = 0
    while rest[i].startswith("-"):
        flag = rest[i]
        if flag in ("-v", "--volume"):
            host, container = rest[i + 1].split(":")[:2]
            mounts[container] = host.replace("$PWD/", "")
            i += 2
        elif flag == "-i":
            interactive, i = True, i + 1
        else:
            i += 1  # --rm, --add-host=...
    assert rest[i].startswith("source-openai-compatible:"), rest[i]  # the image
    return Invocation(mounts, interactive, rest[i + 1:], stdin_file)


def test_every_documented_docker_run_works_with_the_images_entrypoint(
    installed: Installed, fake_server: Server, tmp_path: Path
) -> None:
    runs = [_parse_run(words) for words in _docker_runs()]
    commands = [r.args[0] for r in runs]
    assert commands == ["spec", "check", "discover", "read", "read"]
    host = tmp_path / "host"
    (host / "secrets").mkdir(parents=True)
    (host / "data").mkdir()
    shutil.copy(ROOT / "sample_configs" / "product_reviews.csv", host / "data" / "reviews.csv")
    (host / "data" / "rows.jsonl").write_text('{"review_text": "Great kettle."}\n{"review_text": "Leaks."}\n')
    base = {"url": fake_server.base_url, "api_key": fake_server.api_key, "model": "fake-model",
            "prompt": "Sentiment of: {{review_text}}"}

    def container_path(path: str, inv: Invocation) -> str:
        for inside, outside in inv.mounts.items():
            if path == inside or path.startswith(inside + "/"):
                return str(host / outside) + path[len(inside):]
        return path

    # The files docs/RUNNING.md names, at their mounted paths (the config's input path is a container path).
    config_inv = runs[1]
    (host / "secrets" / "config.json").write_text(json.dumps(
        {**base, "input": {"path": container_path("/data/reviews.csv", config_inv)}}))
    (host / "secrets" / "pipe.json").write_text(json.dumps({**base, "input": {"path": "-"}}))
    shutil.copy(ROOT / "sample_configs" / "catalog.json", host / "secrets" / "catalog.json")

    image = installed.image
    entry = shlex.split(image.env["AIRBYTE_ENTRYPOINT"])
    workdir = tmp_path / image.workdir.lstrip("/")
    workdir.mkdir(parents=True)
    env = {**os.environ, **{k: v for k, v in image.env.items() if k != "XDG_CACHE_HOME"},
           "PATH": f"{installed.bin}{os.pathsep}{os.environ['PATH']}", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    outputs: list[list[dict[str, Any]]] = []
    for inv in runs:
        args = [container_path(a, inv) for a in inv.args]
        stdin = (host / inv.stdin_file).read_text() if inv.stdin_file else ""
        assert inv.interactive == bool(inv.stdin_file)
        proc = subprocess.run([*entry, *args], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=120, input=stdin)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        outputs.append([json.loads(line) for line in proc.stdout.splitlines()])
    spec, check, discover, read, piped = outputs
    assert spec[0]["type"] == "SPEC"
    assert check[0]["connectionStatus"]["status"] == "SUCCEEDED", check
    assert discover[-1]["type"] == "CATALOG"
    assert sum(m["type"] == "RECORD" for m in read) == 300
    assert [m["record"]["data"]["answer"] for m in piped if m["type"] == "RECORD"] == [
        "echo: Sentiment of: Great kettle.", "echo: Sentiment of: Leaks."]
    assert not any(fake_server.api_key in json.dumps(m) for out in outputs for m in out)


pytestmark = pytest.mark.compat
