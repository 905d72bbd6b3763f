"""The peer venv ``.venv-bench``: created and filled on first use, reused after that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venv-bench"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
# Peers and tools that are not connector dependencies. uvloop makes the mock cheap;
# py-spy profiles the connector process from outside; psutil is not needed (we read /proc).
# tenacity: bench/retry_wrapper.py measures what it would cost every row (not a connector dependency).
REQUIREMENTS = ["openai", "litellm", "aiohttp", "orjson", "pyarrow", "uvloop", "matplotlib", "py-spy", "tenacity"]
# The rate-limit stage's own venv (bench/ratelimits.py): Curator pins older litellm and aiohttp than the
# matrix's peers would get, so it lives apart. tiktoken is Curator's (and the cookbook script's) tokenizer;
# its cl100k_base file comes from litellm's bundled copy (TIKTOKEN_CACHE_DIR), since nothing is downloaded.
CURATOR_VENV = ROOT / ".venv-curator"
CURATOR_REQUIREMENTS = ["bespokelabs-curator", "aiohttp", "tiktoken"]


def ensure_bench_venv(log: object = print) -> Path:
    """Create .venv-bench and install REQUIREMENTS unless its stamp already lists them."""
    return ensure_venv(BENCH_VENV, REQUIREMENTS, log)


def ensure_curator_venv(log: object = print) -> Path:
    """Create .venv-curator (Curator, the rate-limit mock and the cookbook script's needs) on first use."""
    return ensure_venv(CURATOR_VENV, CURATOR_REQUIREMENTS, log)


def curator_env(python: Path, work: Path) -> dict[str, str]:
    """The environment Curator (and the cookbook script) run in, offline: tiktoken's cl100k_base from the copy
    litellm bundles in that venv (``TIKTOKEN_CACHE_DIR``; tiktoken would download it), no telemetry, no
    model-price download, no Hugging Face hub, a fresh Curator cache under ``work`` (every row a miss)."""
    import os
    import tempfile

    tokenizers = next((python.parent.parent / "lib").glob("python3*/site-packages/litellm/litellm_core_utils"
                                                          "/tokenizers"))
    return {**os.environ, "TIKTOKEN_CACHE_DIR": str(tokenizers), "OPENAI_API_KEY": "sk-bench",
            "TELEMETRY_ENABLED": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_DATASETS_OFFLINE": "1",
            "CURATOR_CACHE_DIR": tempfile.mkdtemp(prefix="curator-", dir=work), "HF_HOME": str(work / "hf")}


def ensure_venv(venv: Path, requirements: list[str], log: object = print) -> Path:
    """Create ``venv`` and install ``requirements`` unless its stamp already lists them; its python."""
    python, stamp = venv / "bin" / "python", venv / ".installed"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"creating {venv.name} with {', '.join(requirements)} (first use; a minute or two)")  # type: ignore[operator]
    if not python.exists():
        # The base interpreter, not .venv's: a venv made from inside a venv is still a plain venv.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(wanted)
    return python


def versions() -> dict[str, str]:
    """Installed versions of the peers, for the report (Curator's from .venv-curator, once it exists)."""
    found = _versions(BENCH_PYTHON, ("aiohttp", "openai", "litellm", "httpx", "uvloop"))
    curator = CURATOR_VENV / "bin" / "python"
    if curator.exists():
        found.update(_versions(curator, ("bespokelabs-curator",)))
    return found


def _versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    import json

    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))
