"""The container image: the project's Dockerfile built unchanged and run with podman.

``scripts/container_image.sh build`` (also ``make container``) installs rootful podman from
Debian packages, builds the Dockerfile and prints the image's name; the layer cache makes a
rebuild seconds. No image registry is reachable on the machines this runs on, so the base is
a STAND-IN for python:3.11-slim-bookworm: Debian bookworm's own Python 3.11 in a venv at
/usr/local, passed as the Dockerfile's BASE_IMAGE build argument (its default is the official
image pinned by digest). What is tested is therefore everything the Dockerfile does on top of
its base: the locked install, the user, the entrypoint, the labels, the cache folder.

Every ``docker run`` line of docs/CONTAINER.md runs against the test server with podman: the
same flags, plus host networking (podman 4.3 does not know ``host-gateway``, so the host is
127.0.0.1 there). Marked ``container``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Server

pytestmark = pytest.mark.container

SCRIPT = ROOT / "scripts" / "container_image.sh"
DOCS = ROOT / "docs" / "CONTAINER.md"
ENTRYPOINT = "source-openai-compatible"
DOC_IMAGE = "source-openai-compatible:0.1.0"
ROWS = 10


def _version() -> str:
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found
    return found[1]


def podman(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """podman with the storage and settings scripts/container_image.sh set up."""
    return subprocess.run([str(SCRIPT), "podman", *args], capture_output=True, text=True,
                          input=stdin, timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from the current checkout (cached layers make a rebuild seconds)."""
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.fail("podman is missing and installing it needs root: run `sudo make container`",
                    pytrace=False)
    built = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True, timeout=3600)
    assert built.returncode == 0, f"the image did not build:\n{built.stderr[-4000:]}"
    name = built.stdout.strip().splitlines()[-1].removeprefix("IMAGE=")
    return name


def _inspect(name: str) -> dict[str, Any]:
    proc = podman("image", "inspect", name, "--format", "{{json .Config}}")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_the_image_follows_airbytes_python_connector_conventions(image: str) -> None:
    config = _inspect(image)
    env = dict(item.split("=", 1) for item in config["Env"])
    labels = config["Labels"]
    assert config["Entrypoint"] == [ENTRYPOINT]
    assert env["AIRBYTE_ENTRYPOINT"] == ENTRYPOINT
    assert labels["io.airbyte.name"] == "airbyte/source-openai-compatible"
    assert labels["io.airbyte.version"] == _version()
    assert config["WorkingDir"] == "/airbyte/integration_code"
    # Not root, by name and in fact; the answer cache folder is the user's own.
    assert config["User"] == "airbyte"
    who = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                 'id -u; stat -c %u "$XDG_CACHE_HOME"; command -v "$AIRBYTE_ENTRYPOINT"')
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == ["1000", "1000", "/usr/local/bin/source-openai-compatible"]


def _lock() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_the_image_installs_exactly_the_locked_versions(image: str) -> None:
    frozen = podman("run", "--rm", "--entrypoint", "pip", image, "freeze", "--disable-pip-version-check")
    assert frozen.returncode == 0, frozen.stderr
    installed = {line for line in frozen.stdout.splitlines() if line}
    ours = {line for line in installed if line.startswith("airbyte-source-openai-compatible")}
    assert len(ours) == 1, installed
    assert installed - ours == _lock()


@dataclass
class Host:
    """The folders the documented `docker run` lines mount, with their inputs."""

    dir: Path
    volume: str
    server: Server


@pytest.fixture
def host(fake_server: Server, tmp_path: Path, image: str) -> Iterator[Host]:
    port = fake_server.base_url.split(":")[2].split("/")[0]
    secrets, data = tmp_path / "secrets", tmp_path / "data"
    secrets.mkdir()
    data.mkdir()
    sample = (ROOT / "sample_configs" / "product_reviews.csv").read_text().splitlines(keepends=True)
    (data / "reviews.csv").write_text("".join(sample[: ROWS + 1]))
    (data / "rows.jsonl").write_text('{"review_text": "Great kettle."}\n{"review_text": "Leaks."}\n')
    # A prompt of its own: the answers this test caches are no other test's.
    nonce = uuid.uuid4().hex[:8]
    config = {"url": f"http://host.docker.internal:{port}/v1", "api_key": fake_server.api_key,
              "model": "fake-model", "prompt": f"[{nonce}] Sentiment of: {{{{review_text}}}}",
              "input": {"path": "/data/reviews.csv", "primary_key": "review_id"}, "concurrency": 4}
    (secrets / "config.json").write_text(json.dumps(config))
    (secrets / "pipe.json").write_text(json.dumps({**config, "input": {"path": "-"}}))
    shutil.copy(ROOT / "sample_configs" / "catalog.json", secrets / "catalog.json")
    # The container runs as uid 1000: the mounted folders must be readable by it.
    for path in (tmp_path, secrets, data):
        path.chmod(0o755)
    for path in [*secrets.iterdir(), *data.iterdir()]:
        path.chmod(0o644)
    volume = f"soc-test-answers-{nonce}"
    yield Host(tmp_path, volume, fake_server)
    podman("volume", "rm", "-f", volume)


def _documented_runs() -> list[list[str]]:
    text = DOCS.read_text()
    block = text.split("<!-- docker-run:start -->", 1)[1].split("<!-- docker-run:end -->", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("docker ")]
    assert lines[0] == f"docker build -t {DOC_IMAGE} ."
    return [shlex.split(line) for line in lines[1:]]


def _as_podman(words: list[str], image: str, host: Host) -> tuple[list[str], str | None]:
    """A documented `docker run` line as podman runs it here: same flags, host networking."""
    assert words[:2] == ["docker", "run"], words
    stdin = None
    if "<" in words:
        at = words.index("<")
        stdin = (host.dir / words[at + 1]).read_text()
        words = words[:at]
    args = ["run", "--network=host"]
    for word in words[2:]:
        word = word.replace("$PWD", str(host.dir))
        if word == "--add-host=host.docker.internal:host-gateway":
            word = "--add-host=host.docker.internal:127.0.0.1"
        elif word == DOC_IMAGE:
            word = image
        elif word.startswith("answers:"):
            word = host.volume + word.removeprefix("answers")
        args.append(word)
    return args, stdin


def _run(args: list[str], stdin: str | None) -> list[dict[str, Any]]:
    proc = podman(*args, stdin=stdin)
    assert proc.returncode == 0, f"podman {shlex.join(args)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _answers(messages: list[dict[str, Any]]) -> list[str]:
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert all(r["_status"] == "ok" for r in records), records
    return [r["answer"] for r in records]


def test_every_documented_docker_run_works_in_the_image(image: str, host: Host) -> None:
    runs = [_as_podman(words, image, host) for words in _documented_runs()]
    assert [args[args.index(image) + 1] for args, _ in runs] == ["spec", "check", "discover", "read", "read"]
    spec, check, discover, read, piped = (_run(args, stdin) for args, stdin in runs)

    assert [m["type"] for m in spec] == ["SPEC"]
    (status,) = [m["connectionStatus"] for m in check if m["type"] == "CONNECTION_STATUS"]
    assert status["status"] == "SUCCEEDED", status
    assert [m["catalog"]["streams"][0]["name"] for m in discover if m["type"] == "CATALOG"] == ["enriched_rows"]
    answers = _answers(read)
    assert len(answers) == ROWS and all(a.startswith("echo: [") for a in answers)
    assert [a.split("] ", 1)[1] for a in _answers(piped)] == [
        "Sentiment of: Great kettle.", "Sentiment of: Leaks."]
    everything = json.dumps([spec, check, discover, read, piped])
    assert host.server.api_key not in everything


def test_the_answer_cache_lives_on_the_volume(image: str, host: Host) -> None:
    runs = [_as_podman(words, image, host) for words in _documented_runs()]
    (read_args, _), = [(args, stdin) for args, stdin in runs if any(a.startswith(host.volume) for a in args)]
    first = _answers(_run(read_args, None))
    asked = host.server.stats()["chat"]
    # A new container with the same volume: every answer comes from the cache, none is asked again.
    again = _answers(_run(read_args, None))
    assert again == first
    assert host.server.stats()["chat"] == asked
    mount = podman("volume", "inspect", host.volume, "--format", "{{.Mountpoint}}")
    assert mount.returncode == 0, mount.stderr
    cache = Path(mount.stdout.strip()) / "source-openai-compatible" / "answers.sqlite"
    assert cache.is_file() and cache.stat().st_uid == 1000
