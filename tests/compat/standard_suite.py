"""airbyte-cdk's standard connector tests, run against the connector's console script.

Runs with ``.venv-compat``'s pytest (tests/test_cdk_standard.py starts it):

    SOC_CONNECTOR_ROOT=<dir named source-openai-compatible> SOC_EXECUTABLE=<console script> \\
        python -m pytest -p airbyte_cdk.test.standard_tests.pytest_hooks tests/compat/standard_suite.py

The standard tests (``airbyte_cdk.test.standard_tests.SourceTestSuiteBase``) run a Python
``Source`` class in-process, or a docker image. This module runs them against the executable
instead: :func:`run_executable` runs ``source-openai-compatible <verb> ...`` as a process and
parses its stdout into the CDK's own ``EntrypointOutput``, and the CDK's in-process runner is
pointed at it for :class:`ExecutableConnector`. Everything else (scenarios from
``acceptance-test-config.yml`` in the connector root, every assertion) is the CDK's.

The CDK does not collect the ``incremental`` section; the checks CAT ran for it are added
below from that section (CAT's ``TestIncremental``): two sequential reads with the state in
between, a read from a state in the middle of the input, and a state far beyond it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.models import AirbyteMessageSerializer
from airbyte_cdk.test import entrypoint_wrapper
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput
from airbyte_cdk.test.standard_tests import SourceTestSuiteBase

TIMEOUT_S = 300


class ExecutableConnector:
    """The connector as a platform runs it: an executable speaking the protocol on stdout.

    The CDK recognises a connector by its ``spec`` method (``IConnector``); the commands
    themselves go through :func:`run_executable`.
    """

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def spec(self, logger: Any) -> Any:
        raise NotImplementedError("runs as a process: see run_executable")


def run_executable(executable: str, args: list[str]) -> EntrypointOutput:
    """Run ``executable args`` and return its stdout as the CDK's entrypoint output.

    A non-zero exit without an error TRACE message becomes the output's uncaught exception,
    as an in-process crash would: the platform fails such a sync, so must the tests.
    """
    proc = subprocess.run([executable, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    output = EntrypointOutput(messages=lines, command=[executable, *args], stderr=proc.stderr)
    if proc.returncode != 0 and not output.errors:
        crash = RuntimeError(f"`{' '.join(args[:1])}` exited with code {proc.returncode} and no error "
                             f"TRACE message; stderr ends: {proc.stderr[-500:]}")
        output = EntrypointOutput(messages=lines, uncaught_exception=crash, command=[executable, *args],
                                  stderr=proc.stderr)
    return output


@pytest.fixture(autouse=True)
def _run_the_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the CDK's in-process runner to the process for an ExecutableConnector."""
    in_process: Callable[..., EntrypointOutput] = entrypoint_wrapper._run_command

    def run_command(source: Any, args: list[str], *rest: Any, **options: Any) -> EntrypointOutput:
        if isinstance(source, ExecutableConnector):
            return run_executable(source.executable, args)
        return in_process(source, args, *rest, **options)

    monkeypatch.setattr(entrypoint_wrapper, "_run_command", run_command)


def _records(output: EntrypointOutput, stream: str) -> list[dict[str, Any]]:
    return [m.record.data for m in output.records if m.record is not None and m.record.stream == stream]


def _stream_states(output: EntrypointOutput, stream: str) -> list[Any]:
    """The stream's STATE messages, in order."""
    return [m for m in output.state_messages
            if m.state is not None and m.state.stream is not None
            and m.state.stream.stream_descriptor.name == stream]


def _positions(output: EntrypointOutput, stream: str) -> list[int]:
    """The positions of the stream's STATE checkpoints, in order."""
    return [int(m.state.stream.stream_state.position) for m in _stream_states(output, stream)]


def _state_file(output: EntrypointOutput, stream: str, position: int, path: Path) -> Path:
    """The STATE message the run emitted at ``position``, as a ``--state`` file (a list)."""
    for message in _stream_states(output, stream):
        if int(message.state.stream.stream_state.position) == position:
            path.write_text(json.dumps([AirbyteMessageSerializer.dump(message)]))
            return path
    raise AssertionError(f"no STATE at position {position}")


class TestSourceOpenAICompatible(SourceTestSuiteBase):
    """The CDK's source suite, plus CAT's incremental checks, against the console script."""

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return Path(os.environ["SOC_CONNECTOR_ROOT"])

    @classmethod
    def create_connector(cls, scenario: Any) -> ExecutableConnector:
        return ExecutableConnector(os.environ["SOC_EXECUTABLE"])

    # --- CAT's incremental checks (the `incremental` section) -------------------------------

    @pytest.fixture
    def incremental(self, tmp_path: Path) -> Iterator[dict[str, Any]]:
        """The `incremental` entry, with its config's input copied where a test may append."""
        (entry,) = self.acceptance_test_config["acceptance_tests"]["incremental"]["tests"]
        root = self.get_connector_root_dir()
        config = json.loads((root / entry["config_path"]).read_text())
        source = Path(config["input"]["path"])
        copy = tmp_path / source.name
        shutil.copy(source, copy)
        config["input"]["path"] = str(copy)
        (tmp_path / "config.json").write_text(json.dumps(config))
        yield {"config": tmp_path / "config.json", "input": copy, "dir": tmp_path,
               "catalog": root / entry["configured_catalog_path"],
               "future_state": root / entry["future_state"]["future_state_path"]}

    def _read(self, incremental: dict[str, Any], state: Path | None = None) -> EntrypointOutput:
        args = ["read", "--config", str(incremental["config"]), "--catalog", str(incremental["catalog"])]
        if state is not None:
            args += ["--state", str(state)]
        output = run_executable(os.environ["SOC_EXECUTABLE"], args)
        assert not output.errors, output.get_formatted_error_message()
        return output

    def _stream(self, incremental: dict[str, Any]) -> str:
        (configured,) = json.loads(incremental["catalog"].read_text())["streams"]
        assert configured["sync_mode"] == "incremental"
        return str(configured["stream"]["name"])

    def test_two_sequential_reads(self, incremental: dict[str, Any]) -> None:
        """CAT's test_two_sequential_reads: the second read, given the first one's state,
        emits nothing the first one emitted; rows appended in between are all it reads."""
        stream = self._stream(incremental)
        first = self._read(incremental)
        rows = len(_records(first, stream))
        assert rows > 0 and _positions(first, stream)[-1] == rows
        state = _state_file(first, stream, rows, incremental["dir"] / "state.json")

        second = self._read(incremental, state)
        assert _records(second, stream) == []
        assert _positions(second, stream)[-1] == rows

        with incremental["input"].open("a") as appended:
            for n in range(3):
                appended.write(json.dumps({"review_id": f"new-{n}", "review_text": f"appended {n}"}) + "\n")
        third = self._read(incremental, state)
        assert [r["review_id"] for r in _records(third, stream)] == ["new-0", "new-1", "new-2"]
        assert [r["_row_number"] for r in _records(third, stream)] == [rows + 1, rows + 2, rows + 3]
        assert _positions(third, stream)[-1] == rows + 3

    def test_read_from_a_state_in_the_middle_of_the_input(self, incremental: dict[str, Any]) -> None:
        """CAT's test_read_sequential_slices: resuming from each checkpoint the first read
        emitted reads exactly the rows after it, with the answers the first read had."""
        stream = self._stream(incremental)
        first = self._read(incremental)
        records = _records(first, stream)
        checkpoints = _positions(first, stream)
        middle = [p for p in checkpoints if 0 < p < len(records)]
        assert middle, f"the first read emitted no checkpoint inside the input: {checkpoints}"
        for position in middle:
            state = _state_file(first, stream, position, incremental["dir"] / f"state_{position}.json")
            resumed = _records(self._read(incremental, state), stream)
            assert [r["_row_number"] for r in resumed] == list(range(position + 1, len(records) + 1))
            assert [r["answer"] for r in resumed] == [r["answer"] for r in records[position:]]

    def test_state_with_abnormally_large_values(self, incremental: dict[str, Any]) -> None:
        """CAT's test_state_with_abnormally_large_values: a state far beyond the input reads nothing."""
        stream = self._stream(incremental)
        output = self._read(incremental, incremental["future_state"])
        assert _records(output, stream) == []
