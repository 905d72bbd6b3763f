"""--dry-run: every request rendered, none sent; rows, tokens and cost reported; secrets masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.airbyte import commands
from connector.errors import StateError
from tests.conftest import FAKE_KEY, Server, catalog_for, run_cli


def config_for(server: Server, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Say {{text}}", "input": {"rows": rows}, **extra}


def logs(messages: list[dict[str, Any]]) -> list[str]:
    return [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def test_read_dry_run_sends_nothing_and_reports_counts_tokens_and_cost(
    fake_server: Server, write_json, tmp_path: Path
) -> None:
    rows = [{"text": "a" * 40}, {"text": None}, {"text": "b" * 80}]
    config = config_for(fake_server, rows, null_policy="skip", parameters={"max_tokens": 10},
                        headers={"X-Tenant-Token": "tenant-secret-42"},
                        prices={"fake-model": {"input_per_million": 1000, "output_per_million": 2000}})
    before = fake_server.stats().get("chat", 0)
    run = run_cli(["read", "--config", write_json("c.json", config), "--catalog", write_json("k.json", catalog_for()),
                   "--dry-run"])
    assert run.code == 0, run.stderr
    assert fake_server.stats().get("chat", 0) == before
    assert {m["type"] for m in run.messages} == {"LOG"}  # no record, no state: nothing happened
    text = logs(run.messages)
    assert text[0] == "dry run of enriched_rows: no request was sent"
    assert text[1] == "rows: 3; requests: 2; skipped: 1 skipped_null"
    # the messages' JSON (and an empty system text, '""'), at 4 characters a token
    body_chars = [len(json.dumps([{"role": "user", "content": f"Say {t}"}], separators=(",", ":"))) + 2
                  for t in ("a" * 40, "b" * 80)]
    tokens = sum(n // 4 + 1 for n in body_chars)
    assert text[2].startswith(f"input tokens: ~{tokens:,} (offline estimate")
    assert text[3] == "output tokens: ~20 (max_tokens of each request: an upper bound)"
    cost = (tokens * 1000 + 20 * 2000) / 1_000_000
    assert text[4] == (f"estimated cost: ~{cost:.4f} as normal requests, ~{cost:.4f} through the provider's batch "
                       "API (prices of fake-model from config prices; answers in the cache cost 0; every input "
                       "token at the input price: prompt-cache hits can only lower it)")
    assert text[5].startswith("no batch price for: fake-model (its batch cost is shown at the normal price)")
    samples = [t for t in text if t.startswith("dry run request")]
    assert len(samples) == 2 and samples[0].startswith("dry run request 1 (row 1): POST " + fake_server.base_url)
    assert "Authorization: Bearer ****" in samples[0] and "X-Tenant-Token: ****" in samples[0]
    assert FAKE_KEY not in run.stdout and "tenant-secret-42" not in run.stdout
    assert '"max_tokens":10' in samples[0]


def test_dry_run_counts_answers_already_in_the_cache_as_free(fake_server: Server, write_json,
                                                            tmp_path: Path) -> None:
    rows = [{"text": f"cached-{tmp_path.name}-{i}"} for i in range(4)]
    cache = {"path": str(tmp_path / "answers.sqlite")}
    prices = {"*": {"input_per_million": 1, "output_per_million": 1}}
    config = config_for(fake_server, rows[:2], cache=cache, prices=prices)
    args = ["--catalog", write_json("k.json", catalog_for())]
    assert run_cli(["read", "--config", write_json("c.json", config), *args]).code == 0
    config["input"] = {"rows": rows}
    run = run_cli(["read", "--config", write_json("c.json", config), *args, "--dry-run"])
    assert "already answered in the answer cache (free): 2 of the requests" in logs(run.messages)


async def test_dry_run_names_models_without_a_price_and_the_default_output(fake_server: Server) -> None:
    config = config_for(fake_server, [{"text": "x"}], prices={"other-model": {"input_per_million": 1,
                                                                              "output_per_million": 1}})
    text = logs([m async for m in commands.read(config, catalog_for(), dry_run=True)])
    assert "output tokens: ~256 (no max_tokens: 256 per request assumed)" in text
    assert any(t.startswith("no price for: fake-model (1 requests)") for t in text)
    assert not any(t.startswith("estimated cost") for t in text)


async def test_dry_run_respects_the_state(fake_server: Server) -> None:
    config = config_for(fake_server, [{"text": str(i)} for i in range(10)])
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                           "stream_state": {"position": 7}}}]
    text = logs([m async for m in commands.read(config, catalog_for(sync_mode="incremental"), state, dry_run=True)])
    assert text[1] == "rows: 3; requests: 3; skipped: none skipped"
    assert text[-3].startswith("dry run request 1 (row 8)")


async def test_a_dry_run_refuses_a_state_of_another_input_as_the_read_would(fake_server: Server) -> None:
    catalog = catalog_for(sync_mode="incremental")
    old = [{"text": f"old {i}"} for i in range(5)]
    first = [m async for m in commands.read(config_for(fake_server, old), catalog)]
    state = [[m for m in first if m["type"] == "STATE"][-1]]
    grown = config_for(fake_server, [*old, {"text": "appended"}])  # the same rows 1..5: the state is this input's
    text = logs([m async for m in commands.read(grown, catalog, state, dry_run=True)])
    assert text[1] == "rows: 1; requests: 1; skipped: none skipped"
    other = config_for(fake_server, [{"text": f"new {i}"} for i in range(8)])
    errors = []
    for dry_run in (True, False):
        with pytest.raises(StateError) as caught:
            [m async for m in commands.read(other, catalog, state, dry_run=dry_run)]
        errors.append(caught.value.message)
    assert errors[0] == errors[1] and "does not belong to this input" in errors[0]  # was a report of rows 6..8


def test_the_run_summary_reports_real_tokens_and_cost(fake_server: Server, write_json) -> None:
    config = config_for(fake_server, [{"text": "x" * 40}] * 1 + [{"text": "y" * 12}],
                        prices={"fake-model": {"input_per_million": 1_000_000, "output_per_million": 2_000_000}},
                        cache={"enabled": False})
    run = run_cli(["read", "--config", write_json("c.json", config), "--catalog", write_json("k.json", catalog_for())])
    assert run.code == 0
    records = run.records
    tokens_in = sum(r["_prompt_tokens"] for r in records)
    tokens_out = sum(r["_completion_tokens"] for r in records)
    summary = logs(run.messages)[-1]
    assert f"tokens in {tokens_in}, out {tokens_out}" in summary
    assert f"cost {tokens_in * 1 + tokens_out * 2:.4f}" in summary
