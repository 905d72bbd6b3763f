"""Each config form through PyAirbyte's own validation against the spec, then ``check``; print JSON.

Runs with ``.venv-compat/bin/python``:

    pyairbyte_config_forms.py FORMS_JSON CONNECTOR_EXECUTABLE

FORMS_JSON maps a name to a config. PyAirbyte validates a config against the
connector's spec (jsonschema) before it runs anything, so a form the published spec
refuses never reaches the connector. The last stdout line is
``{name: {"valid": bool, "check": bool | null, "error": str | null}}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("AIRBYTE_PROJECT_DIR", str(Path.cwd()))
os.environ.setdefault("AIRBYTE_TEMP_DIR", str(Path.cwd() / "tmp"))
Path(os.environ["AIRBYTE_TEMP_DIR"]).mkdir(parents=True, exist_ok=True)

import airbyte as ab  # noqa: E402


def main(argv: list[str]) -> int:
    forms = json.loads(Path(argv[0]).read_text())
    source = ab.get_source("source-openai-compatible", local_executable=argv[1], install_if_missing=False)
    out: dict[str, object] = {}
    for name, config in forms.items():
        result: dict[str, object] = {"valid": False, "check": None, "error": None}
        try:
            source.set_config(config, validate=False)
            source.validate_config()
            result["valid"] = True
            source.check()
            result["check"] = True
        except Exception as exc:  # a verdict per form, never a crash of the whole run
            result["error"] = f"{type(exc).__name__}: {exc} {getattr(exc, 'context', '') or ''}"[:2000]
            if result["valid"]:
                result["check"] = False
        out[name] = result
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
