"""docs/RUNNING.md's examples are real: each command runs again here and must print what the README shows.

Regenerate the blocks with ``python -m tests.readme_examples`` after a deliberate change.
"""

from __future__ import annotations

import pytest

from tests import readme_examples as ex
from tests.fake_openai import spawn


@pytest.fixture(scope="module")
def fresh() -> dict[str, str]:
    with spawn("--api-key", ex.KEY, "--models", "fake-model", "--latency-ms", "100") as (url, _pid):
        return ex.render_all(url)


def test_every_example_has_its_block_in_the_readme(fresh: dict[str, str]) -> None:
    shown = ex.blocks_in(ex.README.read_text())
    assert sorted(fresh) == sorted(shown)


@pytest.mark.parametrize("name", [e.name for e in ex.EXAMPLES] + [f"file-{n}" for n in ex.FILES])
def test_the_readme_shows_what_the_command_prints(fresh: dict[str, str], name: str) -> None:
    shown = ex.blocks_in(ex.README.read_text())[name]
    assert ex.normalise(shown) == ex.normalise(fresh[name]), (
        f"docs/RUNNING.md's '{name}' example no longer matches a fresh run; run `python -m tests.readme_examples`")


def test_volatile_values_are_the_only_thing_masked() -> None:
    line = ('{"emitted_at":1795.0,"x":1} enriched_rows: 40 rows in 1.2 s (34.5 rows/s): 40 ok; '
            '"_latency_ms":193.2 enriched_rows: 13 of ~40 rows (32%), 24.5 rows/s, tokens in 696 out 606, '
            '0 errors, cost 0.0005, ETA 1s')
    assert ex.normalise(line) == ('{"emitted_at":T,"x":1} enriched_rows: 40 rows in T s (T rows/s): 40 ok; '
                                  '"_latency_ms":T enriched_rows: N of ~40 rows, progress')
