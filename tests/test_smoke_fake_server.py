"""End to end through the real CLI process and aiohttp transport, against the fake server."""

from __future__ import annotations

from tests.conftest import Server, catalog_for, run_cli


def config(server: Server, **extra: object) -> dict[str, object]:
    return {"url": server.base_url, "api_key": server.api_key, "model": "fake-model",
            "prompt": "Review: {{text}}",
            "input": {"rows": [{"text": f"row {i}"} for i in range(50)]}, **extra}


def test_read_emits_one_record_per_row_in_order(fake_server: Server, write_json) -> None:
    run = run_cli(["read", "--config", write_json("c.json", config(fake_server)),
                   "--catalog", write_json("cat.json", catalog_for())], process=True)
    assert run.code == 0, run.stdout[-2000:]
    assert [r["_row_number"] for r in run.records] == list(range(1, 51))
    assert [r["answer"] for r in run.records] == [f"echo: Review: row {i}" for i in range(50)]
    assert {r["_status"] for r in run.records} == {"ok"}
