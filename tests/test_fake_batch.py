"""The fake batch server keeps the published rules the connector never breaks on purpose.

tests/test_batch_protocols.py drives it through the connector; these requests are raw, to show
that the server refuses what the providers refuse (so a connector bug would show) and answers
in the documented shapes. Each assertion names the rule from the reference it checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_openai import spawn

pytestmark = pytest.mark.timeout(30)

KEY = "sk-fake-batch-rules-0123"
OPENAI = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
GEMINI = {"x-goog-api-key": KEY}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with spawn("--api-key", KEY, "--advance-every", "0", "--anthropic-max-requests", "3", "--anthropic-max-bytes",
               "4000", "--gemini-max-bytes", "3000", module="tests.fake_batch") as (base, _pid), \
            httpx.Client(base_url=base.removesuffix("/v1"), timeout=5) as client:
        yield client


def line(custom_id: str, text: str, model: str = "m") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "messages": [{"role": "user", "content": text}]}})


def upload(http: httpx.Client, content: str, purpose: str | None = "batch") -> httpx.Response:
    data = {"purpose": purpose} if purpose else {}
    return http.post("/v1/files", headers=OPENAI, data=data, files={"file": ("in.jsonl", content.encode())})


def create(http: httpx.Client, file_id: str, **extra: Any) -> httpx.Response:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra}
    return http.post("/v1/batches", headers=OPENAI, json=body)


def advance(http: httpx.Client, batch_id: str, steps: int = 1) -> None:
    http.post("/_advance", json={"id": batch_id, "steps": steps}).raise_for_status()


def test_openai_upload_and_create_check_their_parameters(http: httpx.Client) -> None:
    assert upload(http, line("a", "x"), purpose=None).status_code == 400  # purpose is required
    file_id = upload(http, line("a", "x") + "\n").json()["id"]
    assert create(http, file_id, completion_window="48h").status_code == 400  # OpenAI: only 24h
    assert create(http, "file-nope").status_code == 404
    assert create(http, file_id, metadata={f"k{i}": "v" for i in range(17)}).status_code == 400  # 16 pairs at most
    assert http.post("/v1/batches", headers={"Authorization": "Bearer wrong"}, json={}).status_code == 401


def test_openai_validation_fails_a_file_with_mixed_models_or_a_foreign_url(http: httpx.Client) -> None:
    foreign = json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m"}})
    content = "\n".join([line("a", "x"), line("b", "y", model="other"), foreign, "not json"]) + "\n"
    batch = create(http, upload(http, content).json()["id"]).json()
    assert batch["status"] == "validating" and batch["request_counts"]["total"] == 0
    advance(http, batch["id"])
    batch = http.get(f"/v1/batches/{batch['id']}", headers=OPENAI).json()
    assert batch["status"] == "failed" and batch["failed_at"]
    codes = {(e["line"], e["code"]) for e in batch["errors"]["data"]}
    assert {(2, "mismatched_model"), (3, "mismatched_url"), (4, "invalid_json_line")} <= codes


def test_openai_expiry_writes_unfinished_requests_to_the_error_file(http: httpx.Client) -> None:
    content = "\n".join(line(f"e{i}", f"expiry {i}" + (" [[fake:slow]]" if i == 2 else "")) for i in range(3))
    batch = create(http, upload(http, content + "\n").json()["id"]).json()
    http.post("/_plan", json={"id": batch["id"], "outcome": "expire"}).raise_for_status()
    advance(http, batch["id"], 3)
    batch = http.get(f"/v1/batches/{batch['id']}", headers=OPENAI).json()
    assert batch["status"] == "expired" and batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    output = [json.loads(x) for x in http.get(f"/v1/files/{batch['output_file_id']}/content",
                                              headers=OPENAI).text.splitlines()]
    errors = [json.loads(x) for x in http.get(f"/v1/files/{batch['error_file_id']}/content",
                                              headers=OPENAI).text.splitlines()]
    assert [o["custom_id"] for o in output] == ["e1", "e0"]  # output lines are not in input order
    assert output[0]["response"]["status_code"] == 200 and output[0]["error"] is None
    assert errors == [{"id": errors[0]["id"], "custom_id": "e2", "response": None,
                       "error": {"code": "batch_expired", "message": errors[0]["error"]["message"]}}]


def anthropic_request(custom_id: str, text: str = "hi") -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": "c", "max_tokens": 8,
                                               "messages": [{"role": "user", "content": text}]}}


def test_anthropic_create_enforces_custom_ids_limits_and_its_headers(http: httpx.Client) -> None:
    def post(body: dict[str, Any], headers: dict[str, str] = ANTHROPIC) -> httpx.Response:
        return http.post("/v1/messages/batches", headers=headers, json=body)

    assert post({"requests": [anthropic_request("has space")]}).status_code == 400  # ^[a-zA-Z0-9_-]{1,64}$
    assert post({"requests": [anthropic_request("d"), anthropic_request("d")]}).status_code == 400
    assert post({"requests": [anthropic_request(f"n{i}") for i in range(4)]}).status_code == 400  # limit: 3 here
    big = post({"requests": [anthropic_request("big", "z" * 5000)]})
    assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"
    no_version = post({"requests": [anthropic_request("v")]}, {"x-api-key": KEY})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    missing = post({"requests": [{"custom_id": "p", "params": {"model": "c", "messages": []}}]})
    assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]["message"]


def test_anthropic_results_exist_only_once_the_batch_ended(http: httpx.Client) -> None:
    requests = [anthropic_request("r0", "res"), anthropic_request("r1", "[[fake:slow]]")]
    batch = http.post("/v1/messages/batches", headers=ANTHROPIC, json={"requests": requests}).json()
    assert batch["processing_status"] == "in_progress" and batch["results_url"] is None
    assert http.get(f"/v1/messages/batches/{batch['id']}/results", headers=ANTHROPIC).status_code == 400
    http.post(f"/v1/messages/batches/{batch['id']}/cancel", headers=ANTHROPIC).raise_for_status()
    batch = http.get(f"/v1/messages/batches/{batch['id']}", headers=ANTHROPIC).json()
    assert batch["processing_status"] == "canceling" and batch["cancel_initiated_at"]
    advance(http, batch["id"])
    batch = http.get(f"/v1/messages/batches/{batch['id']}", headers=ANTHROPIC).json()
    assert batch["processing_status"] == "ended" and batch["request_counts"]["canceled"] == 2
    results = [json.loads(x) for x in http.get(batch["results_url"], headers=ANTHROPIC).text.splitlines()]
    assert sorted(r["result"]["type"] for r in results) == ["canceled", "canceled"]


def test_gemini_batches_need_a_display_name_and_inline_requests_under_the_size_limit(http: httpx.Client) -> None:
    def post(batch: dict[str, Any]) -> httpx.Response:
        return http.post("/v1beta/models/g:batchGenerateContent", headers=GEMINI, json={"batch": batch})

    entry = {"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "metadata": {"key": "k"}}
    inline = {"requests": {"requests": [entry]}}
    assert post({"inputConfig": inline}).status_code == 400  # displayName is required
    big = {"request": {"contents": [{"parts": [{"text": "z" * 4000}]}]}}
    assert post({"displayName": "d", "inputConfig": {"requests": {"requests": [big]}}}).status_code == 400
    operation = post({"displayName": "d", "inputConfig": inline}).json()
    assert operation["name"].startswith("batches/") and "done" not in operation
    stats = operation["metadata"]["batchStats"]
    assert stats == {"requestCount": "1", "pendingRequestCount": "1"}  # int64 as text, zero counts left out
    bad_key = http.get(f"/v1beta/{operation['name']}", headers={"x-goog-api-key": "nope"})
    assert bad_key.status_code == 400 and bad_key.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_stats_count_custom_ids_submitted_twice(http: httpx.Client) -> None:
    before = http.get("/_stats").json()["batch_custom_ids_twice"]
    for _ in range(2):
        http.post("/v1/messages/batches", headers=ANTHROPIC, json={"requests": [anthropic_request("again")]})
    assert http.get("/_stats").json()["batch_custom_ids_twice"] == before + 1
