"""Read Apache Airflow's connections (``airflow connections export`` files, ``AIRFLOW_CONN_*`` variables)
as Airlock connections, for ``airlock connections import``.

Parsing only: nothing is sent. Each entry is read on its own, so one malformed connection becomes an
``ImportProblem`` and the others still import. What an export holds is mostly passwords: no message made
here quotes an entry, a line or a value, only ids, field names, positions and what was expected.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from airlock.connection import (
    CONNECTION_ID_PATTERN,
    ConnectionFields,
    Description,
    InvalidURI,
    check_connection_id,
    parse_uri,
)

ENV_PREFIX = "AIRFLOW_CONN_"
# Airflow writes an unset field as null or "" alike; Airlock's "not set" is None.
_BLANK_IS_NONE = ("host", "login", "schema", "password", "port", "description")
# The characters Airflow allows in a conn_id. In an .env line, text before "=" with anything else is a
# value that lost its "conn_id=" (a URI's "?key=" or a JSON password's "="): never to be echoed as an id.
_AIRFLOW_CONN_ID = re.compile(r"[\w#!()\-.:/\\]+")
_JSON_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


class ImportFileError(ValueError):
    """The file as a whole cannot be read: its message names the file, never its content."""


@dataclass(frozen=True)
class ImportedConnection:
    connection_id: str
    fields: ConnectionFields
    description: str | None


@dataclass(frozen=True)
class ImportProblem:
    connection_id: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """Both in input order."""

    connections: list[ImportedConnection]
    problems: list[ImportProblem]


def read_export(path: Path) -> ImportResult:
    """What ``airflow connections export`` wrote: .json, .yaml/.yml, or .env with URI or JSON lines."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ImportFileError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}: "
            "`airflow connections export` writes .json, .yaml, .yml or .env"
        )
    return _import(reader(path, _read_text(path)))


def read_environment(environ: Mapping[str, str]) -> ImportResult:
    """The ``AIRFLOW_CONN_<ID>`` variables. Airflow looks up ``conn_id.upper()``: ids come lower-cased."""
    return _import(
        (name.removeprefix(ENV_PREFIX).lower(), value)
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX)
    )


class _Refused(Exception):
    """One entry cannot be imported, for ``reason`` (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Entry(ConnectionFields):
    """An entry as the API's ``ConnectionCreate`` would take it: unknown keys are refused, not dropped,
    so a misspelt ``passwd`` is not silently imported without its password."""

    model_config = ConfigDict(extra="forbid")

    connection_id: Annotated[str, Field(pattern=CONNECTION_ID_PATTERN), AfterValidator(check_connection_id)]
    description: Description | None = None


def _import(entries: Iterable[tuple[object, object]]) -> ImportResult:
    # Materialised first: a file-level error raised while reading must come before any result.
    pairs = list(entries)
    # Which of two entries with one id is meant cannot be known; Airflow refuses such a file too.
    counts = Counter(key for key, _ in pairs)
    connections: list[ImportedConnection] = []
    problems: list[ImportProblem] = []
    for key, value in pairs:
        try:
            if counts[key] > 1:
                raise _Refused(f"the id appears {counts[key]} times: keep one")
            connections.append(_connection(key, value))
        except _Refused as exc:
            problems.append(ImportProblem(str(key), exc.reason))
    return ImportResult(connections, problems)


def _connection(key: object, value: object) -> ImportedConnection:
    if not isinstance(key, str):
        # YAML reads an unquoted 1234 or yes as a number or a boolean.
        raise _Refused(f"the id was read as {_kind(key)}, not text: quote it")
    if isinstance(value, str):
        return _from_text(key, value)
    if isinstance(value, dict):
        return _from_fields(key, value)
    raise _Refused(f"is {_kind(value)}, not a connection (an object of its fields, or a URI)")


def _from_text(connection_id: str, text: str) -> ImportedConnection:
    """A serialized connection, read as Airflow's secrets backends read one: JSON if it starts with "{"."""
    text = text.strip()
    if not text:
        raise _Refused("has no value")
    if not text.startswith("{"):
        return _from_uri(connection_id, text)
    try:
        fields = _decode_json(text)
    except ValueError as exc:
        raise _Refused(f"the value {exc}") from None
    if not isinstance(fields, dict):
        raise _Refused(f"the value is {_kind(fields)}, not a JSON object")
    return _from_fields(connection_id, fields)


def _from_uri(connection_id: str, uri: str) -> ImportedConnection:
    if uri.count("://") > 1:
        # Airflow's form for a host with its own protocol (http://https://host); parse_uri would take
        # "https" for the host.
        raise _Refused(
            "the URI's host has its own protocol (conn_type://protocol://host), which Airlock's URI form "
            "does not carry: export this connection as JSON"
        )
    try:
        fields = parse_uri(uri)
    except InvalidURI as exc:
        raise _Refused(f"invalid URI: {exc}") from None
    return _validated(connection_id, fields)


def _from_fields(connection_id: str, entry: dict[Any, Any]) -> ImportedConnection:
    """An object of Airflow's fields, as .json, .yaml and JSON-serialized lines and variables hold them."""
    fields = dict(entry)
    # Airflow's Connection.to_dict() repeats the id inside; its own importer refuses one that differs.
    if fields.pop("conn_id", connection_id) != connection_id:
        raise _Refused("its conn_id field names another connection")
    for name in _BLANK_IS_NONE:
        if fields.get(name) == "":
            fields[name] = None
    fields["extra"] = _extra(fields.get("extra"))
    return _validated(connection_id, fields)


def _extra(value: object) -> dict[str, Any]:
    """Airflow's ``extra``: a JSON object in a string (what it stores), an object, or nothing."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = _decode_json(value)
        except ValueError as exc:
            raise _Refused(f"extra {exc}") from None
    if not isinstance(value, dict):
        raise _Refused(f"extra must be a JSON object, not {_kind(value)}")
    try:
        # YAML can hold what JSON cannot (dates, sets, a structure that contains itself).
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        raise _Refused("extra holds values JSON cannot represent (dates, sets or a loop)") from None
    return value


def _validated(connection_id: str, fields: dict[Any, Any]) -> ImportedConnection:
    try:
        entry = _Entry.model_validate({**fields, "connection_id": connection_id})
    except ValidationError as exc:
        raise _Refused(_describe(exc)) from None
    imported = ConnectionFields.model_validate(entry.model_dump(exclude={"connection_id", "description"}))
    return ImportedConnection(connection_id, imported, entry.description)


def _describe(exc: ValidationError) -> str:
    # Field name and message only: the input, and the keys inside extra, may be or hold a password.
    return "; ".join(
        f"{error['loc'][0] if error['loc'] else 'entry'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    )


def _decode_json(text: str) -> Any:
    """``json.loads``, with a ValueError whose message says where, never what."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (RecursionError, ValueError):
        # Nested too deeply for the parser, or a number too long to convert.
        raise ValueError("is not JSON Airlock reads (nested too deeply, or a number too long)") from None


def _kind(value: object) -> str:
    """A value's type in JSON's words, for messages that must not show the value."""
    if value is None:
        return "null"
    # bool before int: True is an int too.
    for kind, name in _JSON_KINDS:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: an export saved again by a Windows editor starts with a byte order mark.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text (at byte {exc.start})") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read it: {exc.strerror or type(exc).__name__}") from None


def _mapping(path: Path, document: object) -> Iterable[tuple[object, object]]:
    if not isinstance(document, dict):
        raise ImportFileError(
            f"{path}: holds {_kind(document)}, not an object of connection ids to connections "
            "(what `airflow connections export` writes)"
        )
    return document.items()


def _json_entries(path: Path, text: str) -> Iterable[tuple[object, object]]:
    try:
        document = _decode_json(text)
    except ValueError as exc:
        raise ImportFileError(f"{path}: {exc}") from None
    return _mapping(path, document)


def _yaml_entries(path: Path, text: str) -> Iterable[tuple[object, object]]:
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # Only the position: the error's own text quotes the offending line.
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ImportFileError(f"{path}: not valid YAML{where}") from None
    except (yaml.YAMLError, RecursionError):
        raise ImportFileError(f"{path}: not valid YAML") from None
    return _mapping(path, document)


def _env_entries(path: Path, text: str) -> Iterator[tuple[object, object]]:
    """``conn_id=URI`` or ``conn_id={json}`` lines; blank lines and ``#`` comments are skipped."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not _AIRFLOW_CONN_ID.fullmatch(key):
            raise ImportFileError(
                f"{path}: line {number} does not start with a connection id and '=' "
                "(conn_id=URI or conn_id=JSON)"
            )
        yield key, value


_READERS: dict[str, Callable[[Path, str], Iterable[tuple[object, object]]]] = {
    ".json": _json_entries,
    ".yaml": _yaml_entries,
    ".yml": _yaml_entries,
    ".env": _env_entries,
}
