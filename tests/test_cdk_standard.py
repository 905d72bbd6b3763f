"""airbyte-cdk's standard connector tests pass against the console script.

tests/compat/standard_suite.py runs the CDK's ``SourceTestSuiteBase`` (spec, check with a
good and a bad config, discover, read with record schema validation, a bad catalog, the
config against the spec) and CAT's incremental checks against ``source-openai-compatible``,
with ``.venv-compat``'s pytest and the pinned airbyte-cdk (tests/compat/requirements.txt).
This module writes the connector root those tests read (``acceptance-test-config.yml``,
configs, catalogs, a future state) against the fake server, runs the suite and reads its
JUnit report. Marked ``compat``.
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, Server
from tests.test_compat import INPUT_ROWS, WRONG_KEY, _compat_python, _config, _connector_executable

pytestmark = pytest.mark.compat

SUITE = ROOT / "tests" / "compat" / "standard_suite.py"
INCREMENTAL_ROWS = 1_200  # past the 1,000-row checkpoint: the first read has a state in the middle
CONNECTOR_ROOT_FILES = """\
connector_image: airbyte/source-openai-compatible:dev
test_strictness_level: high
acceptance_tests:
  spec:
    tests:
      - config_path: secrets/config.json
  connection:
    tests:
      - config_path: secrets/config.json
        status: succeed
      - config_path: secrets/invalid_config.json
        status: failed
  discovery:
    tests:
      - config_path: secrets/config.json
  basic_read:
    tests:
      - config_path: secrets/config.json
  full_refresh:
    tests:
      - config_path: secrets/config.json
  incremental:
    tests:
      - config_path: secrets/incremental_config.json
        configured_catalog_path: integration_tests/configured_catalog.json
        future_state:
          future_state_path: integration_tests/abnormal_state.json
"""


@dataclass
class Outcome:
    passed: set[str]
    failed: dict[str, str]
    skipped: dict[str, str]


def _connector_root(server: Server, where: Path) -> Path:
    """A connector folder as the CDK expects one, named after the connector."""
    root = where / "source-openai-compatible"
    (root / "secrets").mkdir(parents=True)
    (root / "integration_tests").mkdir()
    (root / "acceptance-test-config.yml").write_text(CONNECTOR_ROOT_FILES)
    pq.write_table(pa.table(INPUT_ROWS), root / "reviews.parquet")
    good = _config(server, root / "reviews.parquet", server.api_key)
    (root / "secrets" / "config.json").write_text(json.dumps(good))
    (root / "secrets" / "invalid_config.json").write_text(json.dumps({**good, "api_key": WRONG_KEY}))

    rows = root / "rows.jsonl"
    rows.write_text("".join(json.dumps({"review_id": f"r{n}", "review_text": f"review {n}"}) + "\n"
                            for n in range(1, INCREMENTAL_ROWS + 1)))
    incremental = {**good, "prompt": "Sentiment of: {{review_text}}", "concurrency": 32,
                   "input": {"path": str(rows), "primary_key": "review_id"}}
    (root / "secrets" / "incremental_config.json").write_text(json.dumps(incremental))
    stream = {"name": "enriched_rows", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    (root / "integration_tests" / "configured_catalog.json").write_text(json.dumps({"streams": [
        {"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append"}]}))
    (root / "integration_tests" / "abnormal_state.json").write_text(json.dumps([{
        "type": "STREAM", "stream": {"stream_descriptor": {"name": "enriched_rows"},
                                     "stream_state": {"position": 10**12}}}]))
    return root


def _outcome(report: Path) -> Outcome:
    outcome = Outcome(set(), {}, {})
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            outcome.failed[name] = (problem.get("message") or "") + "\n" + (problem.text or "")[-3000:]
        elif skipped is not None:
            outcome.skipped[name] = skipped.get("message") or ""
        else:
            outcome.passed.add(name)
    return outcome


@pytest.fixture(scope="module")
def outcome(fake_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    work = tmp_path_factory.mktemp("standard")
    root = _connector_root(fake_server, work)
    report = work / "report.xml"
    (work / "pytest.ini").write_text("[pytest]\n")  # not the project's settings (their plugins are not there)
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
           "SOC_CONNECTOR_ROOT": str(root), "SOC_EXECUTABLE": str(_connector_executable()),
           "AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [str(_compat_python()), "-m", "pytest", "-q", "-c", str(work / "pytest.ini"), "--rootdir", str(work),
         "--confcutdir", str(SUITE.parent), "-p", "no:cacheprovider",
         "-p", "airbyte_cdk.test.standard_tests.pytest_hooks", f"--junitxml={report}",
         # The image tests build the image from metadata.yaml with docker; tests/test_image.py
         # builds the Dockerfile with podman and runs it instead.
         "-m", "not image_tests",
         # The catalog checks the CDK does not enforce yet fail here too.
         "-W", "error::airbyte_cdk.test.standard_tests.DiscoveredCatalogWarning", str(SUITE)],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert report.exists(), ("the standard suite did not run (`make compat` installs tests/compat/requirements.txt "
                             f"into .venv-compat):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return _outcome(report)


def test_the_cdk_standard_tests_pass_against_the_executable(outcome: Outcome) -> None:
    assert not outcome.failed, "\n\n".join(f"{name}:\n{text}" for name, text in outcome.failed.items())
    def on(test: str, config: str) -> str:
        return f"{test}['{config}' Test Scenario]"

    expected = {
        "test_spec",
        on("test_check", "config"), on("test_check", "invalid_config"),
        on("test_config_matches_spec", "config"),
        on("test_discover", "config"),
        on("test_basic_read", "config"),
        on("test_fail_read_with_bad_catalog", "config"),
    }
    assert expected <= outcome.passed, sorted(outcome.passed)


def test_nothing_is_skipped_but_commands_a_config_is_not_listed_for(outcome: Outcome) -> None:
    unexpected = {name: why for name, why in outcome.skipped.items() if "does not run for scenario" not in why}
    assert not unexpected, unexpected


def test_cats_incremental_checks_pass(outcome: Outcome) -> None:
    assert {"test_two_sequential_reads", "test_read_from_a_state_in_the_middle_of_the_input",
            "test_state_with_abnormally_large_values"} <= outcome.passed, sorted(outcome.passed)
