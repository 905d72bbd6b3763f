"""What decides an answer, as a fingerprint kept in the STATE: a changed prompt or model between syncs is seen.

An incremental sync that reads on from row N assumes rows 1..N were answered by the same
request. The STATE keeps a SHA-256 of each part of the request that decides an answer
(``stream_state.request.parts``: model, prompt, system prompt, request template,
parameters with extra_body, output schema, API shape and the response's columns); the next
sync compares them, and ``on_request_change`` decides what a change does:

- ``warn`` (default): read on, with a WARN naming the parts that changed (rows 1..N keep the
  old answers);
- ``fail``: stop with a config error naming them, before anything is sent;
- ``reenrich``: start again from row 1 with a WARN, so every row gets the new request's
  answer (answers already cached for the same request body are not bought again; a
  destination that does not deduplicate on the primary key receives the rows twice).

Secrets (the key, headers) are not part of it: a rotated key changes no answer. A STATE
written before this key was added carries no request part and is taken as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector import jsonbytes
from connector.config.parts import OutputPart, RequestPart
from connector.errors import ConfigError, StateError

PARTS = ("model", "prompt", "system_prompt", "request_template", "parameters", "output_schema", "api", "columns",
         "tasks")


def _digest(value: Any) -> str:
    return hashlib.sha256(jsonbytes.dumps(value)).hexdigest()[:32]


@dataclass(frozen=True)
class RequestFingerprint:
    """part name -> digest of that part of the request."""

    parts: Mapping[str, str]

    def as_state(self) -> dict[str, Any]:
        return {"parts": dict(self.parts)}

    @classmethod
    def from_state(cls, raw: Any, where: str) -> RequestFingerprint:
        parts = raw.get("parts") if isinstance(raw, dict) else None
        if not isinstance(parts, dict) or not all(isinstance(v, str) for v in parts.values()):
            raise StateError(f"{where}: request.parts must map each part to its digest; pass the state this source "
                             "emitted, or none to start over")
        return cls(dict(parts))

    def changed_since(self, saved: RequestFingerprint) -> list[str]:
        """The parts whose digest differs (a part only one side knows is not counted as a change)."""
        return [name for name in PARTS if name in saved.parts and name in self.parts
                and saved.parts[name] != self.parts[name]]


def request_fingerprint(request: RequestPart, output: OutputPart) -> RequestFingerprint:
    """The fingerprint of what decides an answer (no secret is part of it)."""
    parameters = {**request.parameters.as_body(), **dict(request.extra_body)}
    return RequestFingerprint({
        "model": _digest(request.model),
        "prompt": _digest(request.prompt),
        "system_prompt": _digest(request.system_prompt),
        "request_template": _digest(request.request_template),
        "parameters": _digest(parameters),
        "output_schema": _digest(request.output_schema),
        "api": _digest([request.api_compatibility, request.endpoint.shape]),
        "columns": _digest(output.response_template.model_dump()),
        **({"tasks": _digest(list(request.tasks))} if request.tasks else {}),  # a config without tasks: as before
    })


def on_change(saved: RequestFingerprint | None, current: RequestFingerprint, policy: str, stream: str,
              done: str | None) -> tuple[bool, str | None]:
    """(start again from row 1?, a WARN to show) for a resumed sync whose STATE says ``done`` (the rows it
    covers, e.g. ``rows 1..150``; None: none yet); ConfigError when ``policy`` is fail."""
    if saved is None or done is None:
        return False, None
    changed = current.changed_since(saved)
    if not changed:
        return False, None
    what = ", ".join(changed)
    if policy == "fail":
        raise ConfigError(f"on_request_change: the request changed since the last sync of stream '{stream}' "
                          f"({what}); {done} were answered by the old one. Set on_request_change to "
                          "warn (read on) or reenrich (answer every row again), or reset the stream's state")
    if policy == "reenrich":
        return True, (f"{stream}: the request changed since the last sync ({what}): every row is enriched again "
                      f"from row 1 (on_request_change reenrich)")
    return False, (f"{stream}: the request changed since the last sync ({what}); {done} keep the "
                   "answers of the old request, new rows get the new one (on_request_change warn; reenrich "
                   "answers every row again)")
