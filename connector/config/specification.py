"""The Airbyte connector specification, generated from :class:`SourceConfig`.

Run ``python -m connector.config.specification`` to regenerate ``spec/spec.json`` and its
one-line copy shipped in the package, ``connector/config/spec_compact.json``, which the
``spec`` command prints without importing pydantic, and ``connector/config/strict_schema.json``,
the strict schema configs are validated against (``--check`` keeps all three equal to the model).
Pydantic's JSON schema is reshaped into the strict schema configs are validated
against: ``$ref``s are inlined and ``Optional[X]`` becomes plain ``X`` (absence
already means null in a config). The published spec is made from it by
:mod:`connector.config.airbyte_form`.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from connector.config.airbyte_form import published
from connector.config.model import SourceConfig

SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "spec.json"
# Package data (pyproject.toml): the installed package has no spec/ folder. connector/cli.py reads it.
PACKAGED_SPEC_PATH = Path(__file__).resolve().parent / "spec_compact.json"
PACKAGED_STRICT_PATH = Path(__file__).resolve().parent / "strict_schema.json"


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **siblings}, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _inline({**branches[0], **rest}, defs)
    out = {key: _inline(value, defs) for key, value in node.items()}
    if out.get("default", ...) is None:
        del out["default"]  # "default: null" on a string field confuses form renderers
    return out


@lru_cache(maxsize=1)
def strict_schema() -> dict[str, Any]:
    """The JSON schema ``load_config`` validates against: unknown fields refused, every type said."""
    schema = SourceConfig.model_json_schema()
    defs = schema.pop("$defs", {})
    schema = _inline(schema, defs)
    # Properties in form order, whichever class of the model declares them (RunSettings, SourceConfig).
    schema["properties"] = dict(sorted(schema["properties"].items(), key=lambda kv: kv[1].get("order", 99)))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return dict(schema)


@lru_cache(maxsize=1)
def validation_schema() -> dict[str, Any]:
    """:func:`strict_schema` as the package holds it, which ``load_config`` validates against: pydantic
    builds it from the model in ~16 ms of CPU here, a cost every ``check`` and ``discover`` paid (issue
    25, cold start). An install without the file builds it."""
    try:
        text = PACKAGED_STRICT_PATH.read_text(encoding="utf-8")
    except OSError:
        return strict_schema()
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _published() -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    return published(strict_schema())


@lru_cache(maxsize=1)
def _validated_fields() -> list[tuple[str, ...]]:
    return published(validation_schema())[1]


def connection_specification() -> dict[str, Any]:
    """The published schema (``spec``): Airbyte's UI renders it and its acceptance tests pass it
    (:mod:`connector.config.airbyte_form`)."""
    return _published()[0]


def json_text_fields() -> list[tuple[str, ...]]:
    """Fields a form gives as JSON text and ``load_config`` reads as the object or list it spells."""
    return _validated_fields()


def specification() -> dict[str, Any]:
    """The body of the SPEC message.

    No ``documentationUrl``: the protocol makes it optional, and the project has no published
    documentation page to point at yet (the former github.com/source-openai-compatible address
    does not exist). Add one when the docs are hosted.
    """
    return {
        "connectionSpecification": connection_specification(),
        "supportsIncremental": True,
        "supported_destination_sync_modes": ["overwrite", "append", "append_dedup"],
    }


def render() -> str:
    """``spec/spec.json`` as it should be on disk."""
    return json.dumps(specification(), indent=2, sort_keys=False) + "\n"


def render_compact() -> str:
    """``connector/config/spec_compact.json``: the same specification on one line."""
    return json.dumps(specification(), separators=(",", ":"), ensure_ascii=False) + "\n"


def render_strict() -> str:
    """``connector/config/strict_schema.json``: the strict schema on one line."""
    return json.dumps(strict_schema(), separators=(",", ":"), ensure_ascii=False) + "\n"


DOC_PATH = SPEC_PATH.parent.parent / "docs" / "CONFIGURATION.md"
_START, _END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


_BOUNDS = (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<="))


def _rows(props: dict[str, Any], required: list[str], prefix: str = "") -> list[str]:
    rows = []
    for name, prop in sorted(props.items(), key=lambda kv: kv[1].get("order", 99)):
        kind = prop.get("type", "any")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        default = prop.get("default")
        default_text = "" if default is None else f"`{json.dumps(default)}`"
        need = "yes" if name in required else ""
        text = " ".join(filter(None, [prop.get("title"), "-", prop.get("description", "")])).strip(" -")
        bounds = [f"{op} {prop[key]}" for key, op in _BOUNDS if key in prop]
        if bounds:
            text += f" ({', '.join(bounds)})"
        if prop.get("airbyte_secret"):
            text += " (secret)"
        rows.append(f"| `{prefix}{name}` | {kind} | {need} | {default_text} | {text.replace('|', '/')} |")
        if prop.get("type") == "object" and "properties" in prop:
            rows.extend(_rows(prop["properties"], prop.get("required", []), f"{prefix}{name}."))
    return rows


def reference_table() -> str:
    """The config reference of docs/CONFIGURATION.md, generated from the strict schema (it says every type)."""
    schema = strict_schema()
    header = ["| field | type | required | default | meaning |", "|---|---|---|---|---|"]
    return "\n".join(header + _rows(schema["properties"], schema.get("required", [])))


def readme_with_reference(readme: str) -> str:
    start, end = readme.index(_START) + len(_START), readme.index(_END)
    return readme[:start] + "\n" + reference_table() + "\n" + readme[end:]


if __name__ == "__main__":
    readme = DOC_PATH.read_text()
    if sys.argv[1:] == ["--check"]:
        if SPEC_PATH.read_text() != render():
            sys.exit("spec/spec.json is stale: run `python -m connector.config.specification`")
        if PACKAGED_SPEC_PATH.read_text(encoding="utf-8") != render_compact():
            sys.exit("connector/config/spec_compact.json is stale: run `python -m connector.config.specification`")
        if PACKAGED_STRICT_PATH.read_text(encoding="utf-8") != render_strict():
            sys.exit("connector/config/strict_schema.json is stale: run `python -m connector.config.specification`")
        if readme_with_reference(readme) != readme:
            sys.exit("docs/CONFIGURATION.md's config reference is stale: "
                     "run `python -m connector.config.specification`")
    else:
        SPEC_PATH.write_text(render())
        PACKAGED_SPEC_PATH.write_text(render_compact(), encoding="utf-8")
        PACKAGED_STRICT_PATH.write_text(render_strict(), encoding="utf-8")
        DOC_PATH.write_text(readme_with_reference(readme))
        print(f"wrote {SPEC_PATH} and the config reference in {DOC_PATH}")
