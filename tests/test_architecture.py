"""The shape of connector/: no import cycle, small modules, and dependencies that only point down the stages.

The graph is scripts/import_graph.py's (every import counts, lazy and TYPE_CHECKING ones included).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = _import_graph()

# The stages, lowest first: a module may import from its own stage and from the tiers below it.
TIERS: list[set[str]] = [
    {"errors", "secrets", "jsonbytes", "callbacks", "digits"},  # what every stage shares
    {"config"},                           # what the user asked for
    {"rows", "requests", "dialects"},     # the input table; row -> body; the API shapes
    {"endpoint"},                         # talking to the server
    {"answers"},                          # reply -> columns, the record contract
    {"pipeline"},                         # rows through the endpoint, protocol-free
    {"airbyte", "standalone", "scaleout"},  # the ways to run it
    {"cli"},                              # argv, files, stdout, exit code
    {"__main__"},                         # python -m connector
]

# Edges between stages of the same tier, each with the reason it stands.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}

# Modules allowed over the size limit, each with why splitting it would not help a reader.
MAX_LINES = 400
LARGE_MODULES: dict[str, str] = {}


def _tier(stage: str) -> int:
    for index, tier in enumerate(TIERS):
        if stage in tier:
            return index
    raise AssertionError(f"stage {stage!r} is in no tier of tests/test_architecture.py: place it")


def test_no_import_cycle() -> None:
    assert GRAPH.cycles(GRAPH.graph()) == []


def test_dependencies_point_down_the_stages() -> None:
    wrong = []
    for source, targets in GRAPH.graph().items():
        for target in targets:
            src, dst = GRAPH.stage_of(source), GRAPH.stage_of(target)
            if src == dst or _tier(dst) < _tier(src) or (src, dst) in KNOWN_EXCEPTIONS:
                continue
            wrong.append(f"{source} imports {target} ({src} may not depend on {dst})")
    assert wrong == []


def test_known_exceptions_are_still_needed() -> None:
    edges = {(GRAPH.stage_of(s), GRAPH.stage_of(t)) for s, targets in GRAPH.graph().items() for t in targets}
    assert set(KNOWN_EXCEPTIONS) <= edges, "an exception no longer happens: remove it from KNOWN_EXCEPTIONS"


def test_no_exception_is_listed() -> None:
    """airbyte/, standalone/ and scaleout/ are siblings: what they share lives in the stages below."""
    assert KNOWN_EXCEPTIONS == {}


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in GRAPH.modules().items()}
    large = {name: lines for name, lines in sizes.items() if lines > MAX_LINES and name not in LARGE_MODULES}
    assert large == {}, f"split these modules (or list them in LARGE_MODULES with the reason): {large}"
    assert all(sizes[name] > MAX_LINES for name in LARGE_MODULES), "an exception is small now: remove it"


def test_module_names_are_unique() -> None:
    """A module's name says what it holds, once in the tree: two ``media.py`` (one loading a row's
    images, one the rules of each API shape) read as one in a traceback, a profile or an import."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "connector").rglob("*.py")):
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    repeated = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert repeated == {}, f"rename these modules so each name says what it holds: {repeated}"


# A function longer than this mixes jobs: split it into the steps it takes.
MAX_FUNCTION_LINES = 50
# The whole config is known to config/, the run's preparation and the commands that load it;
# every other stage takes the typed part it uses (connector/config/parts.py).
MAX_SOURCE_CONFIG_IMPORTERS = 8


def test_functions_stay_short() -> None:
    long = []
    for name, path in GRAPH.modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({lines} lines, line {node.lineno})")
    assert long == [], f"split these functions (at most {MAX_FUNCTION_LINES} lines): {long}"


def test_few_modules_know_the_whole_config() -> None:
    importers = sorted(name for name, path in GRAPH.modules().items() if _imports_source_config(path))
    assert len(importers) <= MAX_SOURCE_CONFIG_IMPORTERS, (
        f"SourceConfig is imported by {len(importers)} modules: {importers}; pass the stage its typed part "
        "(connector/config/parts.py) instead")


def _imports_source_config(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "connector.config.model" and \
                any(alias.name == "SourceConfig" for alias in node.names):
            return True
    return False


def test_the_import_graph_sees_lazy_imports() -> None:
    """A cycle hidden in a function body or a TYPE_CHECKING block still counts."""
    known = set(GRAPH.modules())
    source = ROOT / "connector" / "airbyte" / "commands.py"
    assert "connector.config.load" in GRAPH.imports_of(source, known)  # imported inside the commands
