"""The "ways to run it" examples of docs/RUNNING.md, run for real so they cannot drift.

    python -m tests.readme_examples          # run them, rewrite their blocks in docs/RUNNING.md
    python -m tests.readme_examples --check  # exit 1 when docs/RUNNING.md differs (what the test does)

Each example is a shell command exactly as the README shows it, run with bash in
a fresh workspace (the files below, the console script on PATH, an empty answer
cache) against the test server (tests/fake_openai.py: it answers ``echo: <prompt>``
after 100 ms, and counts tokens as characters / 4). The block between
``<!-- example:NAME:start -->`` and ``<!-- example:NAME:end -->`` is the command
and its real output. The server's address is shown as http://localhost:8000/v1.
When comparing, values that differ from run to run (timings, rates, timestamps)
are masked; everything else must match.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "docs" / "RUNNING.md"
SHOWN_URL = "http://localhost:8000/v1"
KEY = "sk-fake-test-key-0123456789"


@dataclass(frozen=True)
class Example:
    name: str
    command: str
    show: Callable[[str, str], str]  # (stdout, stderr) -> the output shown
    stdin: str | None = None


def _stdout(out: str, err: str) -> str:
    return out


def _stderr(out: str, err: str) -> str:
    return err


def _airbyte_read(out: str, err: str) -> str:
    """Every line but the records, and only the first of the progress lines."""
    shown, progress = [], False
    for line in out.splitlines():
        if '"type":"RECORD"' in line:
            continue
        if "rows/s, tokens in" in line:
            if progress:
                continue
            progress = True
        shown.append(line)
    return "\n".join(shown) + "\n"


EXAMPLES = [
    Example("dry-run", "source-openai-compatible run --config config.json --dry-run", _stdout),
    Example("run-parquet", "source-openai-compatible run --config config.json --output enriched.parquet", _stderr),
    Example("parquet-schema", "python -c \"import pyarrow.parquet as pq; print(pq.read_schema('enriched.parquet'))\"",
            _stdout),
    Example("read-progress", "source-openai-compatible read --config config.json --catalog catalog.json "
            "--progress-every 0.5 | grep -v '\"RECORD\"'", _airbyte_read),
    Example("read-dry-run", "source-openai-compatible read --config config.json --catalog catalog.json --dry-run "
            "| head -n 5", _stdout),
    Example("piped", "source-openai-compatible read --config config.json --catalog catalog.json \\\n"
            "  | source-openai-compatible read --config summarise.json --catalog catalog.json \\\n"
            "  | grep -m 1 '\"RECORD\"' | python -m json.tool --indent 1", _stdout),
]

CONFIG = {
    "url": "{url}",
    "api_key": KEY,
    "model": "fake-model",
    "prompt": "Classify the sentiment of this review as positive, negative or neutral: {{review_text}}",
    "input": {"path": "reviews.csv"},
    "parameters": {"max_tokens": 8},
    "prices": {"fake-model": {"input_per_million": 0.15, "output_per_million": 0.6}},
    "concurrency": 4,
}
SUMMARISE = {
    "url": "{url}",
    "api_key": KEY,
    "model": "fake-model",
    "prompt": "Summarise in five words: {{review_text}}",
    "input": {"path": "-", "columns": {"review_id": "string", "review_text": "string", "answer": "string"}},
    "response_template": {"columns": {"summary": "choices.0.message.content"}},
}
FILES: dict[str, Any] = {"config.json": CONFIG, "summarise.json": SUMMARISE}
ROWS = 40


def workspace(directory: Path, url: str) -> None:
    """The files the examples use."""
    for name, content in FILES.items():
        (directory / name).write_text(json.dumps(content, indent=2).replace("{url}", url) + "\n")
    shutil.copy(ROOT / "sample_configs" / "catalog.json", directory / "catalog.json")
    with open(ROOT / "sample_configs" / "product_reviews.csv", newline="") as f:
        rows = list(csv.reader(f))[: ROWS + 1]
    with open(directory / "reviews.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def run_example(example: Example, directory: Path, url: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "XDG_CACHE_HOME": str(directory / f"cache-{example.name}"), "COLUMNS": "100"}
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", example.command], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120, input=example.stdin or "")
    if proc.returncode not in (0, 141):  # 141: head/grep closed the pipe early
        raise RuntimeError(f"example {example.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return example.show(proc.stdout, proc.stderr).replace(url, SHOWN_URL)


def block(example: Example, output: str) -> str:
    commands = "\n".join(f"$ {line}" if not line.startswith("  ") else line
                         for line in example.command.splitlines())
    return f"```console\n{commands}\n{output.rstrip()}\n```"


def file_block(name: str) -> str:
    text = json.dumps(FILES[name], indent=2).replace("{url}", SHOWN_URL)
    return f"`{name}`:\n\n```json\n{text}\n```"


def render_all(url: str) -> dict[str, str]:
    """NAME -> the README block, for every example and every workspace file."""
    out = {f"file-{name}": file_block(name) for name in FILES}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        workspace(directory, url)
        for example in EXAMPLES:
            out[example.name] = block(example, run_example(example, directory, url))
    return out


_MARK = re.compile(r"<!-- example:([\w.-]+):start -->\n(.*?)<!-- example:\1:end -->", re.DOTALL)


def blocks_in(readme: str) -> dict[str, str]:
    return {m.group(1): m.group(2).removesuffix("\n") for m in _MARK.finditer(readme)}


def replace_blocks(readme: str, blocks: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        body = blocks.get(name, match.group(2).removesuffix("\n"))
        return f"<!-- example:{name}:start -->\n{body}\n<!-- example:{name}:end -->"

    return _MARK.sub(sub, readme)


# Values that differ between two honest runs.
_VOLATILE = [
    (re.compile(r'"emitted_at":\s?[\d.]+'), '"emitted_at":T'),
    (re.compile(r'"(_latency_ms|_ttft_ms)":\s?[\d.]+'), r'"\1":T'),
    (re.compile(r"\d+(\.\d+)? s \([\d.]+ rows/s\)"), "T s (T rows/s)"),
    (re.compile(r"[\d,]+ of ([\d,~]+) rows \(\d+%\), [\d.]+ rows/s, tokens in [\d,]+ out [\d,]+, \d+ errors?, "
                r"cost [\d.]+(, ETA \w+)?"), r"N of \1 rows, progress"),
    (re.compile(r"\d+ ms"), "T ms"),
    (re.compile(r'"mtime_ns":\s?\d+'), '"mtime_ns":T'),  # the example's input file is written by each run
]


def normalise(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai import spawn

    with spawn("--api-key", KEY, "--models", "fake-model", "--latency-ms", "100") as (url, _pid):
        fresh = render_all(url)
    readme = README.read_text()
    missing = sorted(set(fresh) - set(blocks_in(readme)))
    if "--check" in sys.argv:
        stale = [n for n, text in fresh.items() if normalise(blocks_in(readme).get(n, "")) != normalise(text)]
        if stale or missing:
            print(f"docs/RUNNING.md examples differ from a fresh run: {', '.join(stale or missing)}; "
                  "run `python -m tests.readme_examples`")
            return 1
        return 0
    if missing:
        print(f"docs/RUNNING.md has no block for: {', '.join(missing)}")
    README.write_text(replace_blocks(readme, fresh))
    print(f"rewrote {len(fresh) - len(missing)} example blocks in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
