"""The process edge: spec output, usage errors, exit codes."""

from __future__ import annotations

from connector.config.specification import specification
from tests.conftest import run_cli


def test_spec_prints_the_model_generated_specification() -> None:
    run = run_cli(["spec"], process=True)
    assert run.code == 0
    (message,) = run.messages
    assert message == {"type": "SPEC", "spec": specification()}
    assert message["spec"]["connectionSpecification"]["properties"]["api_key"]["airbyte_secret"] is True


def test_bad_usage_exits_2_with_usage_on_stderr_and_nothing_on_stdout() -> None:
    run = run_cli(["read", "--config"], process=True)
    assert run.code == 2
    assert run.stdout == "" and "usage:" in run.stderr


def test_missing_config_file_is_a_config_error_trace() -> None:
    run = run_cli(["discover", "--config", "/nonexistent/config.json"])
    assert run.code == 1
    (error,) = run.trace_errors
    assert error["failure_type"] == "config_error" and "--config: cannot read '/nonexistent/config.json'" in \
        error["message"]
