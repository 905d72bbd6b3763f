"""Words that cannot be misread: the run summary, ``_model`` of a row every model failed, the bar."""

from __future__ import annotations

import io
from typing import Any

import pytest

from connector.answers.records import Tally
from connector.pipeline.progress import Snapshot
from connector.pipeline.progress_bar import PlainBar, RichBar, layout, render_plain
from tests.conftest import Server, catalog_for, run_connector


def read(write_json, server: Server, rows: list[dict[str, Any]], **extra: Any) -> Any:
    config = {"url": server.base_url, "api_key": server.api_key, "model": "fake-model", "prompt": "Say {{text}}",
              "input": {"rows": rows}, "max_retries": 0, **extra}
    return run_connector(["read", "--config", write_json("c.json", config),
                          "--catalog", write_json("cat.json", catalog_for())])


def summary_of(run: Any) -> str:
    return str([m["log"]["message"] for m in run.of_type("LOG") if "rows by status" in m["log"]["message"]][-1])


def test_the_summary_names_each_count(fake_server: Server, write_json) -> None:
    run = read(write_json, fake_server, [{"text": "a"}, {"text": "[[fake:status-500]]"}, {"text": "b"}])
    summary = summary_of(run)
    assert ("rows by status: 2 ok, 1 error; left out by on_row_error skip: 0; answers from cache: 0; "
            "rows retried: 0; tokens in ") in summary
    assert "failed and skipped" not in summary


def test_rows_left_out_by_skip_are_named_as_such(fake_server: Server, write_json) -> None:
    run = read(write_json, fake_server, [{"text": "a"}, {"text": "[[fake:status-500]]"}], on_row_error="skip")
    assert "rows by status: 1 ok, 1 error; left out by on_row_error skip: 1;" in summary_of(run)
    assert [r["_row_number"] for r in run.records] == [1]


def test_model_is_the_last_model_tried_when_every_model_failed(fake_server: Server, write_json) -> None:
    run = read(write_json, fake_server, [{"text": "[[fake:status-500]]"}, {"text": "fine"}],
               fallback_models=["other-model"])
    failed, answered = run.records
    assert failed["_status"] == "error" and failed["_error_class"] == "server"
    assert failed["_model"] == "other-model"
    assert answered["_model"] == "fake-model"


def test_model_is_the_primary_when_no_fallback_was_allowed(fake_server: Server, write_json) -> None:
    run = read(write_json, fake_server, [{"text": "[[fake:status-400]]"}], fallback_models=["other-model"])
    (failed,) = run.records
    assert failed["_error_class"] == "bad_request" and failed["_model"] == "fake-model"


# The terminal bar -------------------------------------------------------------------------

SNAP = Snapshot("enriched_rows", rows=1200, total=3400, estimated=True, elapsed=30.0, prompt_tokens=100_000,
                completion_tokens=23_456, errors=2, cost=None)


def test_an_estimated_total_is_marked_on_the_number_not_as_a_label() -> None:
    line = render_plain(SNAP, 200)
    assert "1,200/~3,400 rows" in line and "(~total)" not in line
    out = io.StringIO()
    bar = RichBar(out, width=200)
    bar.start("enriched_rows", 3400, True)
    tally = Tally()
    tally.by_status["ok"] = 3400
    bar.finish(tally)
    assert "(~total)" not in out.getvalue() and "3,400/~3,400 rows" in out.getvalue()


@pytest.mark.parametrize("width", [120, 80, 60, 40, 24])
def test_the_line_fits_the_terminal_and_keeps_the_count(width: int) -> None:
    line = render_plain(SNAP, width)
    assert len(line) < width, line
    assert "1,200/~3,400 rows" in line
    shape = layout(SNAP, width)
    assert shape.bar == 0 or shape.bar >= 12  # a bar is readable or left out, never 5 cells


def test_a_narrow_terminal_drops_detail_before_the_bar() -> None:
    assert render_plain(SNAP, 120).endswith("tokens 123,456  errors 2  ETA 55s")
    assert render_plain(SNAP, 80) == "enriched_rows [#####...........]  35%  1,200/~3,400 rows  40.0 rows/s  ETA 55s"
    assert render_plain(SNAP, 50) == "[####........]  35%  1,200/~3,400 rows  ETA 55s"


@pytest.mark.parametrize("width", [100, 60, 30])
def test_both_bars_draw_one_line_no_wider_than_the_terminal(width: int) -> None:
    tally = Tally()
    tally.by_status["ok"] = 1200
    plain_out, rich_out = io.StringIO(), io.StringIO()
    plain = PlainBar(plain_out, width=lambda: width)
    rich = RichBar(rich_out, width=width)
    for bar in (plain, rich):
        bar.start("enriched_rows", 3400, True)
        bar.finish(tally)
    drawn = plain_out.getvalue().rsplit("\r", 1)[-1].removesuffix("\x1b[K\n")
    assert len(drawn) < width
    rich_lines = [line for line in rich_out.getvalue().splitlines() if line.strip()]
    assert rich_lines and all(len(line) <= width for line in rich_lines)
    assert "1,200/~3,400" in rich_lines[-1]
