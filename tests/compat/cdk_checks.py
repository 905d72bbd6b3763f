"""Judge the connector's real stdout with airbyte-cdk's own models and standard-test assertions.

Runs with ``.venv-compat/bin/python`` (airbyte-cdk is not installed in the project's venv).

    cdk_checks.py catalogs --discover DISCOVER_OUT --out-dir DIR
        Writes, from the connector's CATALOG, the configured catalogs that the CDK's standard
        tests send: DIR/basic_read_catalog.json (SourceTestSuiteBase.test_basic_read: every
        stream, full_refresh, append_dedup) and DIR/bad_catalog.json
        (test_fail_read_with_bad_catalog: an unknown stream with sync_mode "INVALID") and
        DIR/incremental_catalog.json (as PyAirbyte configures it: incremental everywhere).

    cdk_checks.py verify --config CONFIG --spec SPEC_OUT [--check CHECK_OUT]
                         [--expect-check succeed|failed] [--discover DISCOVER_OUT]
                         [--read READ_OUT --catalog CATALOG] [--bad-read BAD_READ_OUT]
        Runs every check that applies to the files given; prints one JSON object
        {"passed": [names], "failures": [{"check": name, "error": text}]} and exits 1 when
        anything failed. Failure texts never quote record or config values.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import types
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteMessageSerializer,
    AirbyteStream,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    ConfiguredAirbyteStream,
    ConnectorSpecification,
    DestinationSyncMode,
    SyncMode,
    TraceType,
    Type,
)
from airbyte_cdk.sources.utils.schema_helpers import check_config_against_spec_or_exit
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput
from airbyte_cdk.test.models import ExpectedOutcome


def _load_standard_tests_without_pytest() -> None:
    """Make the standard-test helper modules importable without pytest.

    ``airbyte_cdk.test.standard_tests/__init__`` imports the pytest suites (pytest is not a
    dependency of airbyte or airbyte-cdk); the assertion modules used here do not need it.
    Registering the package without running its ``__init__`` lets them import as they are.
    """
    name = "airbyte_cdk.test.standard_tests"
    if name in sys.modules:
        return
    try:
        import pytest  # noqa: F401
    except ImportError:
        import airbyte_cdk.test

        package = types.ModuleType(name)
        package.__path__ = [str(Path(airbyte_cdk.test.__file__).parent / "standard_tests")]
        sys.modules[name] = package


_load_standard_tests_without_pytest()

from airbyte_cdk.test.standard_tests._assertions import (  # noqa: E402
    assert_check_outcome,
    assert_config_matches_spec,
)
from airbyte_cdk.test.standard_tests._catalog_checks import (  # noqa: E402
    CATALOG_CHECKS,
    find_catalog_problems,
    format_catalog_problems,
)
from airbyte_cdk.test.standard_tests._read_assertions import (  # noqa: E402
    RecordFormatChecker,
    StrictIntegerDraft7Validator,
    assert_read_records,
)
from airbyte_cdk.test.standard_tests._spec_lint import (  # noqa: E402
    assert_no_secrets_in_output,
    assert_spec_is_valid,
    get_single_spec,
)
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets  # noqa: E402
from airbyte_cdk.utils.traced_exception import AirbyteTracedException  # noqa: E402
from airbyte_protocol.models import AirbyteMessage as PydanticAirbyteMessage  # noqa: E402
from airbyte_protocol.models import AirbyteStateBlob  # noqa: E402
from pydantic import BaseModel  # noqa: E402

CONNECTOR = "source-openai-compatible"


# ---------------------------------------------------------------------------------------------
# Reading outputs


def _lines(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line.strip()]


def _output(path: str) -> EntrypointOutput:
    """The CDK test harness's view of a stdout (it parses each line as an AirbyteMessage)."""
    return EntrypointOutput(messages=_lines(path), command=[Path(path).stem])


def _undeclared_fields(model: Any, where: str = "$") -> Iterator[str]:
    """Fields a pydantic protocol model accepted only as 'extra': clients ignore them."""
    if isinstance(model, AirbyteStateBlob):
        return  # stream_state is the source's own, free-form
    if isinstance(model, BaseModel):
        for key in model.model_extra or {}:
            yield f"{where}.{key}"
        for name in type(model).model_fields:
            yield from _undeclared_fields(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            yield from _undeclared_fields(item, f"{where}[{i}]")


def check_protocol_lines(path: str) -> None:
    """Each stdout line is one AirbyteMessage for both model families real clients use."""
    problems = []
    lines = _lines(path)
    assert lines, f"{path}: no output"
    for number, line in enumerate(lines, start=1):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not JSON (stdout must hold protocol messages only)")
            continue
        kind = raw.get("type") if isinstance(raw, dict) else None
        try:
            # airbyte-cdk's dataclass models + serpyco-rs schema validation (what CDK-based
            # destinations and the standard tests use).
            AirbyteMessageSerializer.load(raw)
        except Exception as exc:
            problems.append(f"line {number} ({kind}): airbyte-cdk rejects it: {_first(exc)}")
        try:
            # airbyte-protocol-models-pdv2 (what PyAirbyte parses with).
            model = PydanticAirbyteMessage.model_validate_json(line)
        except Exception as exc:
            problems.append(f"line {number} ({kind}): airbyte-protocol (pydantic) rejects it: "
                            f"{_first(exc)}")
            continue
        extra = list(_undeclared_fields(model))
        if extra:
            problems.append(f"line {number} ({kind}): fields not in the protocol: {extra}")
    assert not problems, "\n".join(problems[:20])


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " | ".join(text[:3]) if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# spec / check / discover


def check_spec(spec_path: str) -> ConnectorSpecification:
    output = _output(spec_path)
    spec = get_single_spec(output, connector_name=CONNECTOR)
    schema = spec.connectionSpecification
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    assert validator_cls is jsonschema.Draft7Validator, f"spec declares {validator_cls.__name__}"
    validator_cls.check_schema(schema)
    assert_spec_is_valid(spec, connector_name=CONNECTOR)  # standard test: airbyte_secret lint
    return spec


def check_config(spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
    try:
        check_config_against_spec_or_exit(config, spec)  # what the CDK entrypoint runs
    except AirbyteTracedException as exc:
        raise AssertionError(f"check_config_against_spec_or_exit: {exc.message}") from None
    # The secrets the CDK entrypoint would mask at runtime, found through the spec's flags.
    masked = set(get_secrets(spec.connectionSpecification, config))
    missed = [name for name in ("api_key",) if config.get(name) and config[name] not in masked]
    assert not missed, f"airbyte_secrets_utils.get_secrets does not find {missed} as secret"


def check_check(path: str, expect: str) -> None:
    output = _output(path)
    assert len(output.connection_status_messages) == 1, "expected exactly one CONNECTION_STATUS"
    outcome = {"succeed": ExpectedOutcome.EXPECT_SUCCESS,
               "failed": ExpectedOutcome.EXPECT_EXCEPTION}[expect]
    assert_check_outcome(check_result=output, expected_outcome=outcome, connector_name=CONNECTOR)
    assert not output.errors, "check emitted a TRACE ERROR; failures belong in CONNECTION_STATUS"


def discovered_catalog(path: str) -> AirbyteCatalog:
    output = _output(path)
    catalogs = output.get_message_by_types([Type.CATALOG])
    assert len(catalogs) == 1, f"expected exactly one CATALOG, got {len(catalogs)}"
    assert catalogs[0].catalog is not None
    return catalogs[0].catalog


def check_catalog(catalog: AirbyteCatalog) -> None:
    # Every standard-test catalog check, the not-yet-enforced ones included.
    problems = find_catalog_problems(catalog, CATALOG_CHECKS)
    assert not problems, format_catalog_problems(problems)
    own = []
    for stream in catalog.streams:
        schema = stream.json_schema
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            own.append(f"{stream.name}: json_schema is not valid Draft 7: {exc.message}")
        props = schema.get("properties") or {}
        for key in stream.source_defined_primary_key or []:
            if not key or key[0] not in props:
                own.append(f"{stream.name}: primary key {key} not in the schema's properties")
        for field in stream.default_cursor_field or []:
            if field not in props:
                own.append(f"{stream.name}: cursor field {field} not in the schema's properties")
        if stream.source_defined_cursor and not stream.default_cursor_field:
            own.append(f"{stream.name}: source_defined_cursor without default_cursor_field")
        if not stream.supported_sync_modes:
            own.append(f"{stream.name}: no supported_sync_modes")
    names = [s.name for s in catalog.streams]
    if len(set(names)) != len(names):
        own.append(f"duplicate stream names: {names}")
    assert not own, "\n".join(own)


def check_no_secrets(path: str, spec: ConnectorSpecification, config: Mapping[str, Any],
                     verb: str) -> None:
    assert_no_secrets_in_output(_output(path), spec=spec, config=config, verb=verb,
                                connector_name=CONNECTOR)
    # The raw text too: a secret inside a field the models drop would still be on stdout.
    text = Path(path).read_text()
    for value in _secret_values(config):
        assert value not in text, f"`{verb}` stdout contains a secret from the config"


def _secret_values(config: Mapping[str, Any]) -> list[str]:
    values = [config.get("api_key"), *(config.get("headers") or {}).values()]
    return [v for v in values if isinstance(v, str) and len(v) >= 6]


# ---------------------------------------------------------------------------------------------
# read


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return type(value).__name__


def check_read(path: str, catalog_path: str, discovered: AirbyteCatalog | None) -> dict[str, Any]:
    output = _output(path)
    configured = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(Path(catalog_path).read_bytes()))
    assert not output.errors, "read emitted TRACE ERROR(s): " + output.get_formatted_error_message()

    # The standard tests' basic-read assertion: records for every stream, each valid against its
    # stream's schema (Draft 7 with strict integers and format checks, as CAT ran it).
    problems: list[str] = []
    try:
        assert_read_records(records=output.records_iterator, configured_catalog=configured,
                            require_records_per_stream=True, validate_schema=True)
    except AssertionError as exc:
        problems.append(f"assert_read_records: {exc}")

    schemas = {s.stream.name: s.stream.json_schema for s in configured.streams}
    if discovered is not None:
        schemas.update({s.name: s.json_schema for s in discovered.streams})
    validators = {name: StrictIntegerDraft7Validator(schema, format_checker=RecordFormatChecker())
                  for name, schema in schemas.items()}
    counts: Counter[str] = Counter()
    since_state: Counter[str] = Counter()
    previous_state: Any = None
    states: Counter[str] = Counter()
    for number, line in enumerate(_lines(path), start=1):
        message = json.loads(line)
        kind = message["type"]
        if kind == "RECORD":
            record = message["record"]
            stream = record["stream"]
            counts[stream] += 1
            since_state[stream] += 1
            if stream not in schemas:
                problems.append(f"line {number}: record of unconfigured stream '{stream}'")
                continue
            emitted_at = record.get("emitted_at")
            if not isinstance(emitted_at, int) or isinstance(emitted_at, bool):
                problems.append(f"line {number}: emitted_at is {_json_type(emitted_at)}, not an int "
                                "(PyAirbyte drops such records)")
            elif not 1_000_000_000_000 <= emitted_at < 10_000_000_000_000:
                problems.append(f"line {number}: emitted_at is not epoch milliseconds")
            data = record["data"]
            declared = set(schemas[stream].get("properties") or {})
            undeclared = sorted(set(data) - declared)
            if undeclared:
                problems.append(f"line {number}: fields {undeclared} are not in the stream's "
                                "json_schema (PyAirbyte drops them)")
            for error in validators[stream].iter_errors(data):
                problems.append(f"line {number}: {stream} record fails its schema at "
                                f"{list(error.absolute_path)}: `{error.validator}` "
                                f"{error.validator_value!r} (got {_json_type(error.instance)})")
        elif kind == "STATE":
            state = message["state"]
            if state.get("type") != "STREAM":
                problems.append(f"line {number}: STATE type {state.get('type')}, expected STREAM")
                continue
            stream = state["stream"]["stream_descriptor"]["name"]
            states[stream] += 1
            count = (state.get("sourceStats") or {}).get("recordCount")
            if count != since_state[stream]:
                problems.append(f"line {number}: STATE of '{stream}' says recordCount {count}, but "
                                f"{since_state[stream]} records came since its previous STATE")
            since_state[stream] = 0
            if message == previous_state:
                problems.append(f"line {number}: the same STATE twice in a row")
            previous_state = message
    for configured_stream in configured.streams:
        name = configured_stream.stream.name
        if not states[name]:
            problems.append(f"stream '{name}': no STATE message")
        statuses = [s.value for s in output.get_stream_statuses(name)]
        if not statuses or statuses[0] != "STARTED" or statuses[-1] != "COMPLETE":
            problems.append(f"stream '{name}': stream statuses {statuses}, expected STARTED..COMPLETE")
    assert not problems, "\n".join(problems[:20])
    return {"records": dict(counts), "states": dict(states)}


def check_bad_catalog_read(path: str) -> None:
    """SourceTestSuiteBase.test_fail_read_with_bad_catalog's assertions."""
    output = _output(path)
    assert output.errors, "Expected errors but got none."
    assert output.trace_messages, "Expected trace messages but got none."
    assert all(m.trace.type == TraceType.ERROR for m in output.errors)


# ---------------------------------------------------------------------------------------------
# commands


def write_catalogs(discover_path: str, out_dir: str) -> None:
    catalog = discovered_catalog(discover_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # As SourceTestSuiteBase.test_basic_read builds it, and as run_test_job writes it.
    basic = ConfiguredAirbyteCatalog(streams=[
        ConfiguredAirbyteStream(stream=stream, sync_mode=SyncMode.full_refresh,
                                destination_sync_mode=DestinationSyncMode.append_dedup)
        for stream in catalog.streams
    ])
    (out / "basic_read_catalog.json").write_bytes(orjson.dumps(asdict(basic)))
    # As SourceTestSuiteBase.test_fail_read_with_bad_catalog builds it.
    bad = ConfiguredAirbyteCatalog(streams=[
        ConfiguredAirbyteStream(
            stream=AirbyteStream(
                name="__AIRBYTE__stream_that_does_not_exist",
                json_schema={"type": "object", "properties": {"f1": {"type": "string"}}},
                supported_sync_modes=[SyncMode.full_refresh],
            ),
            sync_mode="INVALID",  # type: ignore[arg-type]
            destination_sync_mode="INVALID",  # type: ignore[arg-type]
        ),
    ])
    (out / "bad_catalog.json").write_bytes(orjson.dumps(asdict(bad)))
    # As PyAirbyte configures it (Source.get_configured_catalog): incremental on every stream.
    incremental = ConfiguredAirbyteCatalog(streams=[
        ConfiguredAirbyteStream(stream=stream, sync_mode=SyncMode.incremental,
                                destination_sync_mode=DestinationSyncMode.overwrite,
                                primary_key=stream.source_defined_primary_key,
                                cursor_field=stream.default_cursor_field)
        for stream in catalog.streams
    ])
    (out / "incremental_catalog.json").write_bytes(
        orjson.dumps(ConfiguredAirbyteCatalogSerializer.dump(incremental)))


def verify(args: argparse.Namespace) -> int:
    passed: list[str] = []
    failures: list[dict[str, str]] = []
    facts: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except AssertionError as exc:
            failures.append({"check": name, "error": str(exc)})
            return None
        except Exception as exc:  # a crash is a failure too, with its trace
            failures.append({"check": name, "error": f"{type(exc).__name__}: {_first(exc)}\n"
                                                     f"{traceback.format_exc(limit=4)}"})
            return None
        passed.append(name)
        return result

    config = json.loads(Path(args.config).read_text())
    outputs = {"spec": args.spec, "check": args.check, "discover": args.discover,
               "read": args.read, "bad_read": args.bad_read}
    for verb, path in outputs.items():
        if path:
            run(f"{verb}: every line is a valid AirbyteMessage", lambda p=path: check_protocol_lines(p))
    spec = run("spec: one SPEC, Draft 7 schema, secrets marked (standard-test spec lint)",
               lambda: check_spec(args.spec))
    if spec is not None:
        run("spec: config passes check_config_against_spec_or_exit; get_secrets finds api_key",
            lambda: check_config(spec, config))
        run("spec: config passes assert_config_matches_spec",
            lambda: assert_config_matches_spec(config=config, spec_result=_output(args.spec),
                                               connector_name=CONNECTOR, scenario_id="compat"))
        for verb in ("check", "discover", "read", "bad_read"):
            if outputs[verb]:
                run(f"{verb}: no config secret in the output (standard-test leak check)",
                    lambda v=verb: check_no_secrets(outputs[v], spec, config, v))
    if args.check:
        run(f"check: assert_check_outcome({args.expect_check})",
            lambda: check_check(args.check, args.expect_check))
    catalog = None
    if args.discover:
        catalog = run("discover: one CATALOG", lambda: discovered_catalog(args.discover))
        if catalog is not None:
            facts["streams"] = [s.name for s in catalog.streams]
            run("discover: every standard-test catalog check (enforced or not) + own checks",
                lambda: check_catalog(catalog))
    if args.read:
        facts["read"] = run("read: records, schemas, emitted_at, states, statuses",
                            lambda: check_read(args.read, args.catalog, catalog))
    if args.bad_read:
        run("read with the standard test's bad catalog fails with a TRACE ERROR",
            lambda: check_bad_catalog_read(args.bad_read))
    print(json.dumps({"passed": passed, "failures": failures, "facts": facts}))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalogs")
    cat.add_argument("--discover", required=True)
    cat.add_argument("--out-dir", required=True)
    ver = sub.add_parser("verify")
    ver.add_argument("--config", required=True)
    ver.add_argument("--spec", required=True)
    ver.add_argument("--check")
    ver.add_argument("--expect-check", choices=("succeed", "failed"), default="succeed")
    ver.add_argument("--discover")
    ver.add_argument("--read")
    ver.add_argument("--catalog")
    ver.add_argument("--bad-read")
    args = parser.parse_args(argv)
    if args.command == "catalogs":
        write_catalogs(args.discover, args.out_dir)
        return 0
    if args.read and not args.catalog:
        parser.error("--read needs --catalog")
    return verify(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
