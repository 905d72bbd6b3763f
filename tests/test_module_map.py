"""docs/DEVELOPMENT.md's module map matches the tree: every module of connector/ is named in its
folder's part of the map, and every module the map names exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "connector"


def map_sections() -> dict[str, str]:
    """folder ('' for connector/ itself) -> the map's text for it."""
    text = (ROOT / "docs" / "DEVELOPMENT.md").read_text()
    block = text[text.index("```\nconnector/") + 4:]
    block = block[: block.index("```")]
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in block.splitlines()[1:]:
        if not line.startswith(" "):  # files outside connector/ (Dockerfile, scripts/, tests/)
            current = "(outside)"
            sections.setdefault(current, []).append(line)
            continue
        if line.startswith("   "):  # deeper lines belong to the current folder
            sections[current].append(line)
            continue
        first = line.split()[0]
        if first.endswith("/"):
            current = first.rstrip("/")
            sections[current] = [line]
        else:  # a top-level module (cli.py) or a file outside connector/
            current = ""
            sections[current].append(line)
    return {folder: "\n".join(lines) for folder, lines in sections.items()}


def test_every_module_is_in_its_folders_part_of_the_map_and_every_named_module_exists() -> None:
    sections = map_sections()
    missing, unknown = [], []
    for folder in sorted({p.parent for p in PACKAGE.rglob("*.py")}):
        relative = folder.relative_to(PACKAGE).parts
        top = relative[0] if relative else ""
        text = sections.get(top, "")
        if len(relative) > 1:  # a sub-package (endpoint/batch/) is named as a folder
            if f"{relative[-1]}/" not in text:
                missing.append("/".join(relative) + "/")
            continue
        names = {p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
        missing += [f"{top}/{n}".lstrip("/") for n in sorted(names) if not re.search(rf"\b{re.escape(n)}\b", text)]
        if top:
            unknown += [f"{top}/{n}" for n in sorted(set(re.findall(r"\b(\w+\.py)\b", text)) - names)]
    assert not missing, f"modules missing from docs/DEVELOPMENT.md's map: {missing}"
    assert not unknown, f"the map names modules that do not exist: {unknown}"
