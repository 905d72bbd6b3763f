"""Row -> request body: the compiled request template.

Templates are compiled once into closures, so the per-row cost is a handful of
dict lookups and string joins, never a re-parse. Values are placed into a Python
structure and JSON-encoded afterwards, which makes escaping correct by
construction: quotes, newlines, unicode and 100 KB cells need no special case.

Placeholders are ``{{column}}`` (whitespace inside the braces is ignored). A
string that is exactly one placeholder becomes the cell's own value, keeping its
type (number, list, null); a placeholder inside longer text becomes the cell's
text form, with null as the empty string (never the word "None").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

from connector.config.model import SourceConfig
from connector.errors import TemplateError
from connector.jsonbytes import dumps

Row = Mapping[str, Any]
Renderer = Callable[[Row], Any]

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def cell_text(value: Any) -> str:
    """A cell as it reads inside a prompt."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return dumps(value).decode()


def _compile(node: Any, columns: set[str]) -> Renderer | None:
    """A renderer for ``node``, or None when the node holds no placeholder (a constant)."""
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            column = whole.group(1)
            columns.add(column)
            return lambda row: row[column]
        pieces = PLACEHOLDER.split(node)
        if len(pieces) == 1:
            return None
        # split() alternates literal text and column names: even indexes are text.
        names = pieces[1::2]
        columns.update(names)
        literals = pieces[0::2]

        def interpolate(row: Row) -> str:
            out = [literals[0]]
            for name, literal in zip(names, literals[1:], strict=True):
                out.append(cell_text(row[name]))
                out.append(literal)
            return "".join(out)

        return interpolate
    if isinstance(node, dict):
        parts = {key: _compile(value, columns) for key, value in node.items()}
        if all(r is None for r in parts.values()):
            return None
        items = [(key, parts[key], value) for key, value in node.items()]
        return lambda row: {k: (r(row) if r else v) for k, r, v in items}
    if isinstance(node, list):
        compiled = [(_compile(item, columns), item) for item in node]
        if all(r is None for r, _ in compiled):
            return None
        return lambda row: [r(row) if r else v for r, v in compiled]
    return None


class RequestTemplate:
    """A compiled request template: ``render(row)`` gives the body's templated part."""

    def __init__(self, template: dict[str, Any]) -> None:
        columns: set[str] = set()
        renderer = _compile(template, columns)
        self._template = template
        self._renderer = renderer
        self.columns = frozenset(columns)

    @classmethod
    def from_config(cls, config: SourceConfig, conversation_key: str = "messages") -> RequestTemplate:
        """The template the config describes, short form (prompt) or full body.

        ``conversation_key`` is where the run's API shape keeps the conversation
        (:attr:`connector.dialects.base.Dialect.conversation_key`): a full body may use it
        instead of ``messages``, which every shape converts. Another shape's key would reach
        a server that rejects every row.
        """
        if config.request_template is not None:
            template = dict(config.request_template)
            origin = "request_template"
        else:
            messages = []
            if config.system_prompt:
                messages.append({"role": "system", "content": config.system_prompt})
            messages.append({"role": "user", "content": config.prompt or ""})
            template = {"messages": messages}
            origin = "prompt"
        native = conversation_key if conversation_key in template and "messages" not in template else "messages"
        if not isinstance(template.get(native), (list, str)) or template[native] == []:
            raise TemplateError(
                f"{origin}: the request body has no 'messages' list; a chat-completions request "
                'needs one, e.g. {"messages": [{"role": "user", "content": "{{text}}"}]}'
            )
        return cls(template)

    def check_columns(self, available: Iterable[str]) -> None:
        """Fail now, naming the columns, if the template uses a column the input lacks."""
        have = list(available)
        missing = sorted(self.columns - set(have))
        if missing:
            listed = ", ".join(missing)
            raise TemplateError(
                f"request template uses column(s) {listed} that the input does not have; "
                f"input columns are: {', '.join(have) or '(none)'}"
            )

    def render(self, row: Row) -> Any:
        """The templated body for one row (constants shared, never mutated)."""
        if self._renderer is None:
            return self._template
        return self._renderer(row)
