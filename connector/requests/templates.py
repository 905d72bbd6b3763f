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

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

from connector.config.parts import RequestPart
from connector.errors import TemplateError
from connector.jsonbytes import dumps
from connector.requests import placeholders
from connector.requests.placeholders import Placeholder

Row = Mapping[str, Any]
Renderer = Callable[[Row], Any]

def cell_text(value: Any) -> str:
    """A cell as it reads inside a prompt."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)  # 1.0 stays 1.0: the prompt shows the value as the input holds it
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return dumps(value).decode()


Path = tuple[str | int, ...]
FieldNamer = Callable[[Path], str]


def _dotted(path: Path) -> str:
    return ".".join(["request_template", *map(str, path)])


class _Found:
    """What compiling a template found: the placeholders, and single-brace suspects."""

    def __init__(self, field: FieldNamer) -> None:
        self.field = field
        self.placeholders: list[Placeholder] = []
        self.suspects: list[Placeholder] = []


def _compile(node: Any, found: _Found, path: Path = ()) -> Renderer | None:
    """A renderer for ``node``, or None when the node holds no placeholder (a constant)."""
    if isinstance(node, str):
        literals, names, suspects = placeholders.split(node, found.field(path))
        found.placeholders += names
        found.suspects += suspects
        if not names:
            return None
        if len(names) == 1 and literals == ["", ""]:
            column = names[0].name
            return lambda row: row[column]
        columns = [p.name for p in names]

        def interpolate(row: Row) -> str:
            out = [literals[0]]
            for name, literal in zip(columns, literals[1:], strict=True):
                value = row[name]
                out.append(value if type(value) is str else cell_text(value))  # text, the usual cell: no call
                out.append(literal)
            return "".join(out)

        return interpolate
    if isinstance(node, dict):
        parts = {key: _compile(value, found, (*path, key)) for key, value in node.items()}
        if all(r is None for r in parts.values()):
            return None
        items = [(key, parts[key], value) for key, value in node.items()]
        return lambda row: {k: (r(row) if r else v) for k, r, v in items}
    if isinstance(node, list):
        compiled = [(_compile(item, found, (*path, i)), item) for i, item in enumerate(node)]
        if all(r is None for r, _ in compiled):
            return None
        return lambda row: [r(row) if r else v for r, v in compiled]
    return None


class RequestTemplate:
    """A compiled request template: ``render(row)`` gives the body's templated part.

    ``field`` names a position in the template the way the config spells it (for the
    short form, ``prompt`` rather than ``request_template.messages.1.content``).
    Malformed placeholders raise :class:`TemplateError` here, before any row is read.
    """

    def __init__(self, template: dict[str, Any], field: FieldNamer = _dotted) -> None:
        found = _Found(field)
        self._renderer = _compile(template, found)
        self._template = template
        self._placeholders = found.placeholders
        self._suspects = found.suspects
        self.columns = frozenset(p.name for p in found.placeholders)

    @property
    def warnings(self) -> list[str]:
        """What is legal but almost certainly not meant (shown by check, discover and read)."""
        if self.columns:
            return []
        return ["the request template has no {{column}} placeholder: every row sends the same request "
                "(and, with the answer cache on, gets the same answer). Put {{column}} where a cell belongs."]

    @classmethod
    def from_config(cls, config: RequestPart, conversation_key: str = "messages") -> RequestTemplate:
        """The template the config describes, short form (prompt) or full body.

        ``conversation_key`` is where the run's API shape keeps the conversation
        (:attr:`connector.dialects.base.Dialect.conversation_key`): a full body may use it
        instead of ``messages``, which every shape converts. Another shape's key would reach
        a server that rejects every row.
        """
        if config.request_template is not None:
            template = dict(config.request_template)
            origin = "request_template"
            field: FieldNamer = _dotted
        else:
            messages = []
            if config.system_prompt:
                messages.append({"role": "system", "content": config.system_prompt})
            messages.append({"role": "user", "content": config.prompt or ""})
            template = {"messages": messages}
            origin = "prompt"
            last = len(messages) - 1

            def field(path: Path) -> str:
                return "prompt" if path[:2] == ("messages", last) else "system_prompt"
        native = conversation_key if conversation_key in template and "messages" not in template else "messages"
        if not isinstance(template.get(native), (list, str)) or template[native] == []:
            raise TemplateError(
                f"{origin}: the request body has no 'messages' list; a chat-completions request "
                'needs one, e.g. {"messages": [{"role": "user", "content": "{{text}}"}]}'
            )
        return cls(template, field)

    def check_columns(self, available: Iterable[str]) -> None:
        """Fail now, naming the columns, if the template uses a column the input lacks
        (or writes one as ``{column}``, or reaches into one as ``{{column.field}}``)."""
        have = list(available)
        present = set(have)
        listed = ", ".join(have) or "(none)"
        for suspect in self._suspects:
            if suspect.name in present:
                raise TemplateError(
                    f"{suspect.where}: '{{{suspect.name}}}' has single braces, so it would be sent as "
                    f"written; a placeholder is {{{{{suspect.name}}}}}"
                )
        for placeholder in self._placeholders:
            head = placeholder.name.split(".", 1)[0]
            if placeholder.name not in present and "." in placeholder.name:
                inside = f"column '{head}'" if head in present else f"'{head}', which is not a column either"
                raise TemplateError(
                    f"{placeholder.where}: {{{{{placeholder.name}}}}} reaches into {inside}; a placeholder "
                    f"names a whole input column (nested fields are not supported). Input columns are: {listed}"
                )
        missing = sorted(self.columns - present)
        if missing:
            raise TemplateError(
                f"request template uses column(s) {', '.join(missing)} that the input does not have; "
                f"input columns are: {listed}"
            )

    def render(self, row: Row) -> Any:
        """The templated body for one row (constants shared, never mutated)."""
        if self._renderer is None:
            return self._template
        return self._renderer(row)
