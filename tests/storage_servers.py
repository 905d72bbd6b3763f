"""The real storage servers the remote-input tests read from, each its own process on 127.0.0.1.

- :func:`start_moto`: moto's standalone S3 server (``.venv-storage``, ``make storage``), with
  ``INITIAL_NO_AUTH_ACTION_COUNT`` set and an IAM user made, so a wrong secret is refused
  (``SignatureDoesNotMatch``) as AWS refuses it;
- :func:`start_gcs`: ``gcp-storage-emulator`` (``.venv-storage``). It never checks credentials:
  the tests of ``gs://`` prove reading, listing and missing buckets, not refused credentials;
- :func:`start_azurite`: Azurite's blob service (npm, ``tests/storage/azurite``); a wrong account key
  is refused (``AuthorizationFailure``);
- :func:`start_https`: a stdlib HTTPS file server (tests/storage/https_server.py) with a
  certificate signed by a CA that openssl makes for the test;
- :func:`start_sftp`: asyncssh's SFTP server (tests/storage/sftp_server.py), password and key login.

Each is started on a free port and stopped by its PID (:func:`tests.servers.stop`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import chat_reply, mock_transport, read_through
from tests.servers import ROOT, ServerFailed, free_port

STORAGE_VENV = ROOT / ".venv-storage"
SCRIPTS = ROOT / "tests" / "storage"


@dataclass(frozen=True)
class Running:
    """A started server: where it listens, its PID, and what a test needs to reach it."""

    port: int
    pid: int
    log: Path
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _python() -> str:
    python = STORAGE_VENV / "bin" / "python"
    if not python.exists():
        raise ServerFailed(f"{python} is missing: run `make storage` first")
    return str(python)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(argv: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None,
           wait_s: float = 120, user: str | None = None) -> int:
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True, user=user)
    deadline = time.monotonic() + wait_s
    while not _listening(port):
        if proc.poll() is not None:
            raise ServerFailed(f"{argv[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise ServerFailed(f"{argv[0]} did not listen on {port} within {wait_s:g} s")
        time.sleep(0.2)
    return proc.pid


def start_moto(workdir: Path) -> Running:
    """moto's S3 server; ``facts`` holds the endpoint and the IAM user's keys."""
    port = free_port()
    python = _python()
    moto = str(Path(python).parent / "moto_server")
    # Two actions without auth: creating the user and its policy; the key is made with auth off
    # too (the third), then every request must be signed by a known key.
    pid = _start([moto, "-H", "127.0.0.1", "-p", str(port)], port, workdir / "moto.log",
                 {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    endpoint = f"http://127.0.0.1:{port}"
    made = subprocess.run([python, str(SCRIPTS / "moto_user.py"), endpoint], capture_output=True, text=True,
                          timeout=120)
    if made.returncode != 0:
        raise ServerFailed(f"making moto's IAM user failed:\n{made.stderr[-3000:]}")
    return Running(port, pid, workdir / "moto.log", {"endpoint_url": endpoint, **json.loads(made.stdout)})


def moto_fs(server: Running) -> Any:
    """A ``pyarrow.fs.S3FileSystem`` on moto's server as its IAM user (it may create buckets)."""
    import pyarrow.fs as pafs

    facts = server.facts
    return pafs.S3FileSystem(access_key=facts["access_key_id"], secret_key=facts["secret_access_key"],
                             endpoint_override=server.address, scheme="http", region="us-east-1",
                             allow_bucket_creation=True)


def start_gcs(workdir: Path) -> Running:
    """gcp-storage-emulator, in memory; ``facts["endpoint_url"]`` is where it answers."""
    port = free_port()
    emulator = str(Path(_python()).parent / "gcp-storage-emulator")
    pid = _start([emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"], port,
                 workdir / "gcs.log")
    return Running(port, pid, workdir / "gcs.log", {"endpoint_url": f"http://127.0.0.1:{port}"})


AZURITE = ROOT / "tests" / "storage" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's one account and its published development key (not a secret: every Azurite has it).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def start_azurite(workdir: Path) -> Running:
    """Azurite's blob service, in memory; ``facts["endpoint_url"]`` is where it answers."""
    if not AZURITE.exists():
        raise ServerFailed(f"{AZURITE} is missing: run `make storage` first")
    port = free_port()
    pid = _start([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                  "--skipApiVersionCheck"], port, workdir / "azurite.log")
    return Running(port, pid, workdir / "azurite.log", {"endpoint_url": f"http://127.0.0.1:{port}"})


def make_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl): (ca.pem, cert.pem, key.pem)."""
    ca_key, ca, key, csr, cert = (workdir / n for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                         "server.pem"))
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=connector test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for step in steps:
        subprocess.run([str(s) for s in step], check=True, capture_output=True, timeout=60)
    return ca, cert, key


def start_https(workdir: Path, root: Path, token: str) -> Running:
    """The HTTPS file server over ``root``; ``facts["ca"]`` is the CA file that trusts it."""
    ca, cert, key = make_ca(workdir)
    port = free_port()
    pid = _start(["python3", str(SCRIPTS / "https_server.py"), str(port), str(root), str(cert), str(key), token],
                 port, workdir / "https.log")
    return Running(port, pid, workdir / "https.log", {"ca": str(ca)})


def _keygen(path: Path) -> str:
    """An Ed25519 key pair (ssh-keygen); the public key's SHA256 fingerprint."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=60)
    shown = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True)
    return shown.stdout.split()[1]


def start_sftp(workdir: Path, root: Path, user: str, password: str) -> Running:
    """asyncssh's SFTP server over ``root``; ``facts``: the host key's fingerprint and line for known_hosts,
    a client key (``client_key``: its private key file) that may log in."""
    host_key, client_key = workdir / "host_key", workdir / "client_key"
    host_fingerprint = _keygen(host_key)
    _keygen(client_key)
    port = free_port()
    pid = _start([_python(), str(SCRIPTS / "sftp_server.py"), str(port), str(root), str(host_key), user, password,
                  f"{client_key}.pub"], port, workdir / "sftp.log")
    public = (workdir / "host_key.pub").read_text().split()
    return Running(port, pid, workdir / "sftp.log", {
        "fingerprint": host_fingerprint,
        "known_hosts_line": f"[127.0.0.1]:{port} {public[0]} {public[1]}\n",
        "client_key": str(client_key),
    })


def start_postgres(password: str) -> Running:
    """PostgreSQL (Debian's initdb/postgres on PATH) in a fresh data directory, user ``postgres`` with
    ``password`` (scram-sha-256), listening on 127.0.0.1 only. PostgreSQL refuses to run as root, so
    when the tests run as root the server runs as ``nobody``, in a directory that user owns."""
    import pwd
    import tempfile

    as_root = os.geteuid() == 0
    user = "nobody" if as_root else None
    workdir = Path(tempfile.mkdtemp(prefix="connector-pg-"))
    workdir.chmod(0o755)
    (workdir / "pwfile").write_text(password + "\n")
    if as_root:
        entry = pwd.getpwnam("nobody")
        for path in (workdir, workdir / "pwfile"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    subprocess.run(["initdb", "-D", str(workdir / "data"), "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={workdir / 'pwfile'}"], check=True, capture_output=True, timeout=300, user=user)
    port = free_port()
    log = workdir / "postgres.log"
    pid = _start(["postgres", "-D", str(workdir / "data"), "-p", str(port), "-k", str(workdir),
                  "-c", "listen_addresses=127.0.0.1"], port, log, user=user)
    return Running(port, pid, log, {"workdir": str(workdir)})


def running_postgres(password: str) -> Iterator[Running]:
    """:func:`start_postgres` for a fixture: stopped by PID and its directory removed afterwards."""
    import shutil

    from tests.servers import stop

    server = start_postgres(password)
    try:
        yield server
    finally:
        stop(server.pid)
        shutil.rmtree(server.facts["workdir"], ignore_errors=True)


# Driving the connector against them: an endpoint that echoes the prompt, check and read in process.


def echo(request: httpx.Request) -> httpx.Response:
    """The endpoint: lists model m, answers each prompt with itself."""
    if request.url.path.endswith("/models"):
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
    body = json.loads(request.content)
    return httpx.Response(200, json=chat_reply(body["messages"][-1]["content"]))


def check(cfg: dict[str, Any]) -> dict[str, Any]:
    """``check``'s connectionStatus."""
    from connector.airbyte import commands

    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(cfg, mock_transport(echo))]

    (message,) = asyncio.run(collect())
    return dict(message["connectionStatus"])


def records(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a ``read`` that must end well."""
    messages, error = read_through(cfg, echo)
    assert error is None, error
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
