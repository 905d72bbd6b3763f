"""Throughput against concurrency, connector vs raw aiohttp (runs in .venv-bench: matplotlib).

    python -m bench.plot bench/results/sweep.json docs/throughput_vs_concurrency.png
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        result = json.load(f)
    points = result["data"]["points"]
    conc = [p["concurrency"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(conc, [c / (result["data"]["latency_ms"] / 1000) for c in conc], ":", color="grey",
            label="ideal (in flight / latency)")
    ax.plot(conc, [p["aiohttp"]["rows_per_s"] for p in points], "o-", label="raw aiohttp loop")
    ax.plot(conc, [p["connector"]["rows_per_s"] for p in points], "s-", label="connector read")
    ax.set_xscale("log", base=2)
    ax.set_xticks(conc)
    ax.set_xticklabels([str(c) for c in conc])
    top = max(max(p["aiohttp"]["rows_per_s"], p["connector"]["rows_per_s"]) for p in points)
    ax.set_ylim(0, top * 1.3)
    ax.set_xlabel("requests in flight")
    ax.set_ylabel("rows/s (steady state, median)")
    ax.set_title(f"{result['data']['rows']:,} rows, mock latency {result['data']['latency_ms']} ms, client on one core")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, f"{result.get('date', '')}  {result.get('command', '')}", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(target)


if __name__ == "__main__":
    main()
