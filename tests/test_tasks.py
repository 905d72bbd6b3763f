"""tasks: several requests per row in one pass (connector.config.task_settings, connector.pipeline.tasks), against the
fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.config.load import load_config
from connector.endpoint.transport import HttpxTransport
from connector.errors import ConfigError
from tests.conftest import Server, catalog_for, chat_reply, run_cli

MOOD_SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string"}, "score": {"type": "number"}},
               "required": ["sentiment", "score"]}
# Two independent tasks, one task using one of them, one using both.
FOUR = [{"name": "summary", "prompt": "Sum {{text}} {{flag}}"},
        {"name": "lang", "prompt": "Lang {{text}}"},
        {"name": "short", "prompt": "Short {{summary.answer}}"},
        {"name": "both", "prompt": "Both {{summary.answer}} / {{lang.answer}}", "system_prompt": "Be brief."}]


def config_for(server: Server, tmp_path: Path, tasks: list[dict[str, Any]], flags: list[str] | None = None,
               **extra: Any) -> str:
    texts, flags = ["one", "two", "three"], flags or ["-"] * 3
    rows = [{"text": text, "flag": flag} for text, flag in zip(texts, flags, strict=True)]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
                                "input": {"rows": rows}, "tasks": tasks, **extra}))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_for()))
    return str(path)


def read(config: str, tmp_path: Path) -> list[dict[str, Any]]:
    return read_run(config, tmp_path).records


def read_run(config: str, tmp_path: Path) -> Any:
    run = run_cli(["read", "--config", config, "--catalog", str(tmp_path / "catalog.json")])
    assert run.code == 0, run.stdout + run.stderr
    return run


def test_four_tasks_ask_rows_times_tasks_and_the_dependent_prompts_hold_the_answers(fake_server: Server,
                                                                                   tmp_path: Path) -> None:
    config = config_for(fake_server, tmp_path, FOUR, cache={"enabled": False})
    before = fake_server.stats().get("chat", 0)
    run = read_run(config, tmp_path)
    records = run.records
    assert fake_server.stats().get("chat", 0) - before == 3 * 4  # rows x tasks
    (summary,) = [m["log"]["message"] for m in run.of_type("LOG") if " rows in " in m["log"]["message"]]
    assert "rows by status: 3 ok" in summary and "rows retried: 0" in summary  # four requests are no retry
    first = records[0]
    assert first["summary_answer"] == "echo: Sum one -" and first["lang_answer"] == "echo: Lang one"
    assert first["short_answer"] == "echo: Short echo: Sum one -"
    assert first["both_answer"] == "echo: Both echo: Sum one - / echo: Lang one"
    assert [r["_row_number"] for r in records] == [1, 2, 3] and {r["_status"] for r in records} == {"ok"}
    for name in ("summary", "lang", "short", "both"):
        assert first[f"{name}_status"] == "ok" and first[f"{name}_attempts"] == 1
        assert first[f"{name}_prompt_tokens"] > 0 and first[f"{name}_error_class"] is None
    assert first["_prompt_tokens"] == sum(first[f"{n}_prompt_tokens"] for n in ("summary", "lang", "short", "both"))
    assert first["_attempts"] == 4


def test_the_answer_cache_works_per_task_request(fake_server: Server, tmp_path: Path) -> None:
    cache = {"enabled": True, "path": str(tmp_path / "cache.sqlite")}
    read(config_for(fake_server, tmp_path, FOUR, cache=cache), tmp_path)
    before = fake_server.stats().get("chat", 0)
    changed = [*FOUR[:3], {**FOUR[3], "prompt": "Both again {{summary.answer}} / {{lang.answer}}"}]
    records = read(config_for(fake_server, tmp_path, changed, cache=cache), tmp_path)
    assert fake_server.stats().get("chat", 0) - before == 3  # only the changed task's request, per row
    assert records[0]["summary_cached"] is True and records[0]["both_cached"] is False
    assert records[0]["both_answer"] == "echo: Both again echo: Sum one - / echo: Lang one"


def test_a_failing_upstream_task_skips_the_tasks_that_use_its_answer(fake_server: Server, tmp_path: Path) -> None:
    config = config_for(fake_server, tmp_path, FOUR, flags=["-", "[[fake:status-400]]", "-"],
                        cache={"enabled": False})
    before = fake_server.stats().get("chat", 0)
    records = read(config, tmp_path)
    assert fake_server.stats().get("chat", 0) - before == 3 * 4 - 2  # row 2: short and both are not asked
    bad = records[1]
    assert bad["summary_status"] == "error" and bad["summary_error_class"] == "bad_request"
    assert bad["lang_status"] == "ok" and bad["lang_answer"] == "echo: Lang two"
    assert bad["short_status"] == bad["both_status"] == "skipped_upstream"
    assert bad["short_answer"] is None and "task 'summary'" in bad["both_error"]
    assert bad["_status"] == "error" and bad["_error_class"] == "bad_request"
    assert bad["_error"].startswith("summary: error: ")
    assert records[0]["_status"] == records[2]["_status"] == "ok"


def test_a_task_with_its_own_model_and_output_schema(fake_server: Server, tmp_path: Path) -> None:
    tasks = [{"name": "summary", "prompt": "Sum {{text}}"},
             {"name": "mood", "prompt": "Mood of {{text}}", "model": "other-model", "output_schema": MOOD_SCHEMA}]
    config = config_for(fake_server, tmp_path, tasks, cache={"enabled": False})
    records = read(config, tmp_path)
    first = records[0]
    assert first["summary_answer"] == "echo: Sum one" and first["summary_model"] == "fake-model"
    assert first["mood_model"] == "other-model" and first["mood_status"] == "ok"
    assert first["mood_sentiment"] in ("positive", "negative") and isinstance(first["mood_score"], float)
    assert first["_model"] is None  # two models: each task's is in its own column
    run = run_cli(["discover", "--config", config])
    (catalog,) = run.of_type("CATALOG")
    properties = catalog["catalog"]["streams"][0]["json_schema"]["properties"]
    assert properties["mood_score"]["type"] == ["null", "number"] and "summary_answer" in properties
    assert "skipped_upstream" in properties["summary_status"]["enum"]


def test_check_probes_the_first_task_and_refuses_two_tasks_writing_one_column(fake_server: Server,
                                                                              tmp_path: Path) -> None:
    good = config_for(fake_server, tmp_path, FOUR)
    (status,) = run_cli(["check", "--config", good]).of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    clash = [{"name": "a_b", "prompt": "{{text}}"},
             {"name": "a", "prompt": "{{text}}",
              "output_schema": {"type": "object", "properties": {"b_answer": {"type": "string"}}}}]
    (status,) = run_cli(["check", "--config", config_for(fake_server, tmp_path, clash)]).of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "column 'a_b_answer'" in status["connectionStatus"]["message"]


def base(**extra: Any) -> dict[str, Any]:
    return {"url": "http://fake.local/v1", "model": "m", "input": {"rows": [{"text": "x"}]}, **extra}


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"tasks": [{"name": "a", "prompt": "{{b.answer}}"}, {"name": "b", "prompt": "{{a.answer}}"}]},
     "tasks: a, b wait for each other's answers (a cycle)"),
    ({"tasks": [{"name": "a", "prompt": "{{a.answer}}"}]}, "tasks.0.prompt: task 'a' uses its own answer"),
    ({"tasks": [{"name": "a", "prompt": "{{text}}"}, {"name": "a", "prompt": "{{text}}"}]},
     "tasks.1.name: 'a' names two tasks"),
    ({"prompt": "{{text}}", "tasks": [{"name": "a", "prompt": "{{text}}"}]}, "tasks: give each task its prompt"),
    ({"batch": {"enabled": True}, "cache": {"enabled": False}, "tasks": [{"name": "a", "prompt": "{{text}}"}]},
     "tasks: batch mode (batch.enabled) with tasks needs the answer cache"),
    ({"tasks": [{"name": "Bad-Name", "prompt": "{{text}}"}]}, "tasks.0.name"),
    ({"tasks": []}, "tasks: [] should be non-empty"),
])
def test_a_tasks_mistake_is_a_config_error_naming_the_field(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(base(**extra))
    assert fragment in caught.value.message


def test_a_task_reaching_into_an_unknown_task_is_refused_before_any_request(fake_server: Server,
                                                                            tmp_path: Path) -> None:
    config = config_for(fake_server, tmp_path, [{"name": "a", "prompt": "{{text}}"},
                                                {"name": "b", "prompt": "{{sumary.answer}}"}])
    before = fake_server.stats().get("chat", 0)
    run = run_cli(["read", "--config", config, "--catalog", str(tmp_path / "catalog.json")])
    (error,) = run.trace_errors
    assert run.code == 1 and error["failure_type"] == "config_error"
    assert error["message"].startswith("tasks (b): ") and "sumary" in error["message"]
    assert fake_server.stats().get("chat", 0) == before


def test_a_rows_independent_tasks_are_in_flight_together_and_a_dependent_one_after_them() -> None:
    """One row, concurrency 4: 'a' and 'b' each wait (up to 10 s) for the other to arrive before answering;
    'c', which uses both answers, arrives only once both are answered."""
    from connector.airbyte import commands

    arrived: list[str] = []
    both_in = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        arrived.append(text.split()[0])
        if {"a", "b"} <= set(arrived):
            both_in.set()
        if text.split()[0] in ("a", "b"):
            try:
                await asyncio.wait_for(both_in.wait(), 10)
            except asyncio.TimeoutError:
                return httpx.Response(500, json={"error": {"message": "asked one after the other"}})
        return httpx.Response(200, json=chat_reply(f"echo: {text}"))

    config = {**base(), "cache": {"enabled": False}, "concurrency": 4, "max_retries": 0,
              "tasks": [{"name": "a", "prompt": "a {{text}}"}, {"name": "b", "prompt": "b {{text}}"},
                        {"name": "c", "prompt": "c {{a.answer}} {{b.answer}}"}]}

    async def records() -> list[dict[str, Any]]:
        transport = lambda _limits: HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(handler)))  # noqa: E731
        return [m["record"]["data"] async for m in commands.read(config, catalog_for(), None, transport)
                if m["type"] == "RECORD"]

    (record,) = asyncio.run(records())
    assert record["a_status"] == record["b_status"] == record["c_status"] == "ok"
    assert sorted(arrived[:2]) == ["a", "b"] and arrived[2] == "c"
    assert record["c_answer"] == "echo: c echo: a x echo: b x"


def test_a_changed_task_prompt_is_a_changed_request_for_on_request_change(tmp_path: Path) -> None:
    from tests.test_request_change import config as one_prompt
    from tests.test_request_change import sync

    def with_tasks(rows: int, second: str, **extra: Any) -> dict[str, Any]:
        cfg = {k: v for k, v in one_prompt(rows, cache={"enabled": False}, **extra).items() if k != "prompt"}
        return {**cfg, "tasks": [{"name": "a", "prompt": "A {{text}}"}, {"name": "b", "prompt": second}]}

    _, _, state = sync(with_tasks(2, "B {{text}}"))
    records, warns, _ = sync(with_tasks(3, "B {{text}}"), state)
    assert [r["_row_number"] for r in records] == [3] and warns == []
    with pytest.raises(ConfigError, match=r"the request changed since the last sync of stream '\w+' \(tasks\)"):
        sync(with_tasks(3, "B again {{text}}", on_request_change="fail"), state)


def dry_run(config: str, tmp_path: Path) -> str:
    run = run_cli(["read", "--config", config, "--catalog", str(tmp_path / "catalog.json"), "--dry-run"])
    assert run.code == 0, run.stderr
    return "\n".join(m["log"]["message"] for m in run.of_type("LOG"))


def test_the_dry_run_reports_each_tasks_requests_tokens_and_cost_and_their_total(fake_server: Server,
                                                                                  tmp_path: Path) -> None:
    prices = {"*": {"input_per_million": 1000, "output_per_million": 2000}}
    config = config_for(fake_server, tmp_path, FOUR, cache={"path": str(tmp_path / "c.sqlite")}, prices=prices,
                        parameters={"max_tokens": 50})
    before = fake_server.stats().get("chat", 0)
    run = dry_run(config, tmp_path)
    assert fake_server.stats().get("chat", 0) == before  # nothing sent
    lines = run.splitlines()
    assert lines[1] == "rows: 3; requests: 12; skipped: none skipped"
    tasks = {line.split(":")[0][5:]: line for line in lines if line.startswith("task ")}
    assert list(tasks) == ["summary", "lang", "short", "both"]
    numbers = {name: [int(n.replace(",", "")) for n in re.findall(r"~([\d,]+),? ", line)[:2]]
               for name, line in tasks.items()}
    assert all(line.startswith(f"task {n}: 3 requests (0 in the answer cache)") for n, line in tasks.items())
    assert {out for _, out in numbers.values()} == {150}  # 3 x max_tokens
    total_in = int(re.search(r"input tokens: ~([\d,]+)", run)[1].replace(",", ""))  # type: ignore[index]
    assert total_in == sum(prompt for prompt, _ in numbers.values())
    # A prompt using an answer counts it as long as the answer may be: 50 tokens at 4 characters each.
    assert numbers["short"][0] >= 3 * 50 and numbers["both"][0] >= 3 * 100 > numbers["lang"][0]
    costs = [float(re.search(r", ~([\d.]+) as normal", line)[1]) for line in tasks.values()]  # type: ignore[index]
    total = float(re.search(r"estimated cost: ~([\d.]+)", run)[1])  # type: ignore[index]
    assert abs(sum(costs) - total) < 0.0005 and all(c > 0 for c in costs)
    # After a read, the answers are in the cache: the dependents' prompts are then the real ones, and free.
    read(config, tmp_path)
    again = dry_run(config, tmp_path)
    assert "already answered in the answer cache (free): 12 of the requests" in again
    assert "task both: 3 requests (3 in the answer cache)" in again


def test_check_probes_every_tasks_model_not_only_the_first(fake_server: Server, tmp_path: Path) -> None:
    tasks = [{"name": "summary", "prompt": "Sum {{text}}"}, {"name": "mood", "prompt": "Mood {{text}}",
                                                             "model": "other-model"},
             {"name": "short", "prompt": "Short {{summary.answer}}", "model": "other-model"}]
    (status,) = run_cli(["check", "--config", config_for(fake_server, tmp_path, tasks)]).of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert "the model of task(s) mood answered too" in status["connectionStatus"]["message"]
    missing = [*tasks[:2], {"name": "late", "prompt": "Late {{summary.answer}}", "model": "no-such-model"}]
    (status,) = run_cli(["check", "--config", config_for(fake_server, tmp_path, missing)]).of_type(
        "CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    message = status["connectionStatus"]["message"]
    assert message.startswith("task 'late': ") and "no-such-model" in message



def test_a_task_with_its_own_response_template_and_fallback_models(tmp_path: Path) -> None:
    from tests.test_reask_failed import CuttingServer  # refuses (400) prompts with "refused" to model m

    tasks = [{"name": "summary", "prompt": "Sum {{text}}",
              "response_template": {"columns": {"text": "choices.0.message.content",
                                                "why": "choices.0.finish_reason"}}},
             {"name": "mood", "prompt": "refused mood of {{summary.text}}", "fallback_models": ["m2"]},
             {"name": "plain", "prompt": "plain {{text}}"}]
    server = CuttingServer()
    rows = {"rows": [{"text": "x"}, {"text": "refused y"}]}  # row 2's plain task is refused too
    records, _ = server.read({**base(), "input": rows, "api_key": "sk-tasks", "cache": {"enabled": False},
                              "max_retries": 0, "fallback_on": ["bad_request"], "tasks": tasks})
    first, second = records
    assert first["summary_text"] == "echo: Sum x" and first["summary_why"] == "stop"
    assert "summary_answer" not in first  # its own columns instead of the config's
    assert first["mood_status"] == "ok" and first["mood_model"] == "m2"  # its own fallback answered
    assert first["mood_answer"] == "echo: refused mood of echo: Sum x"
    assert first["plain_status"] == "ok"
    # Row 2's text is refused: its summary and plain tasks have the config's fallbacks (none) and fail.
    assert second["plain_status"] == "error" and second["plain_error_class"] == "bad_request"
    assert second["summary_status"] == "error" and second["mood_status"] == "skipped_upstream"
    assert server.asked["plain refused y"] == 1


def test_a_task_may_keep_its_output_schemas_own_column_names(fake_server: Server, tmp_path: Path) -> None:
    own = {"name": "mood", "prompt": "Mood {{text}} [[fake:json-answer]]", "column_prefix": False,
           "output_schema": MOOD_SCHEMA}
    config = config_for(fake_server, tmp_path, [{"name": "summary", "prompt": "Sum {{text}}"}, own],
                        cache={"enabled": False})
    first = read(config, tmp_path)[0]
    answer = json.loads(first["answer"])  # the schema's own names, and the task's answer as "answer"
    assert first["sentiment"] == answer["sentiment"] and first["score"] == answer["score"]
    assert first["sentiment"] in ("positive", "negative")
    assert "mood_sentiment" not in first and first["mood_status"] == "ok"  # its metadata keeps the prefix
    assert first["summary_answer"] == "echo: Sum one"
    clash = config_for(fake_server, tmp_path, [{**own, "name": "one"}, {**own, "name": "two"}])
    (status,) = run_cli(["check", "--config", clash]).of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "task 'two' would write column 'answer'" in status["connectionStatus"]["message"]
    assert "or set its column_prefix true" in status["connectionStatus"]["message"]
