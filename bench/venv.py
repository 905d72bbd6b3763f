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
_STAMP = BENCH_VENV / ".installed"


def ensure_bench_venv(log: object = print) -> Path:
    """Create .venv-bench and install REQUIREMENTS unless its stamp already lists them."""
    wanted = "\n".join(REQUIREMENTS)
    if BENCH_PYTHON.exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return BENCH_PYTHON
    log(f"creating {BENCH_VENV.name} with {', '.join(REQUIREMENTS)} (first use; a minute or two)")  # type: ignore[operator]
    if not BENCH_PYTHON.exists():
        # The base interpreter, not .venv's: a venv made from inside a venv is still a plain venv.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(BENCH_VENV)], check=True)
    pip = [str(BENCH_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    _STAMP.write_text(wanted)
    return BENCH_PYTHON


def versions() -> dict[str, str]:
    """Installed versions of the peers, for the report."""
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for name in ('aiohttp', 'openai', 'litellm', 'httpx', 'uvloop'):\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    import json

    done = subprocess.run([str(BENCH_PYTHON), "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))
