"""Airflow's connection model and URI form, shared by the API, the CLI and the workers."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from airlock.validation import Text, check_json

CONN_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+.-]{0,49}$"
CONNECTION_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}$"
# "test" would shadow /connections/test.
RESERVED_CONNECTION_IDS = frozenset({"test"})
MAX_EXTRA_BYTES = 64 * 1024
MAX_EXTRA_DEPTH = 8


def check_extra(extra: dict[str, Any], name: str = "extra") -> dict[str, Any]:
    """Connection extras and trigger kwargs: shallow, small, and storable on every database."""
    checked: dict[str, Any] = check_json(
        extra, name=name, max_depth=MAX_EXTRA_DEPTH, max_bytes=MAX_EXTRA_BYTES
    )
    return checked


def check_connection_id(value: str | None) -> str | None:
    if value in RESERVED_CONNECTION_IDS:
        raise ValueError(f"{value!r} is reserved")
    return value


# Each connection field's limits, declared once for every model that carries the field.
ConnType = Annotated[str, Field(pattern=CONN_TYPE_PATTERN)]
Extra = Annotated[dict[str, Any], AfterValidator(check_extra)]
Description = Annotated[Text, Field(max_length=5000)]


class ConnectionLocation(BaseModel):
    """Where to connect and as whom, each part optional: the base of every connection model.

    ``schema`` is Airflow's name; pydantic reserves it, hence the alias.
    """

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    host: Text | None = Field(None, max_length=500)
    port: int | None = Field(None, ge=0, le=65535)
    login: Text | None = Field(None, max_length=500)
    schema_: Text | None = Field(None, alias="schema", max_length=500)


class ConnectionParts(ConnectionLocation):
    """The location and the password: what a client may send, each part optional."""

    # Out of repr() and str(): a logged or raised model must not show a credential.
    password: Text | None = Field(None, max_length=5000, repr=False)


class ConnectionFields(ConnectionParts):
    """The fields a tester needs. ``schema`` is Airflow's name; pydantic reserves it, hence the alias."""

    conn_type: ConnType
    extra: Extra = Field(default_factory=dict, repr=False)

    @classmethod
    def from_uri(cls, uri: str) -> ConnectionFields:
        return cls.model_validate(parse_uri(uri))


class InvalidURI(ValueError):
    pass


def parse_uri(uri: str) -> dict[str, Any]:
    """Parse an Airflow-style URI: ``postgres://user:pass@host:5432/db?sslmode=disable``.

    Query parameters become ``extra``; an ``__extra__`` parameter holds a JSON object instead.
    """
    if "\x00" in uri:
        raise InvalidURI("URI contains a NUL byte")
    if "://" not in uri:
        raise InvalidURI("URI must look like conn_type://[login[:password]@]host[:port][/schema]")
    try:
        parts = urlsplit(uri)
    except ValueError:
        # Not the parser's message: some quote the network location, password included.
        raise InvalidURI("URI cannot be parsed: its host part is malformed") from None
    if not parts.scheme:
        raise InvalidURI("URI has no scheme (the conn_type)")
    conn_type = parts.scheme.replace("-", "_")
    if conn_type == "postgresql":
        conn_type = "postgres"
    try:
        port = parts.port
    except ValueError:
        # Not the parser's message: it quotes the port text, which may be a misplaced password.
        raise InvalidURI("URI has an invalid port: it must be a number from 0 to 65535") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    extra: dict[str, Any] = {}
    for key, value in query:
        if key == "__extra__":
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidURI(f"__extra__ is not valid JSON: {exc.msg}") from None
            except (RecursionError, ValueError):
                # Nested too deeply for the parser, or a number too long to convert.
                raise InvalidURI("__extra__ is not JSON this API accepts (too deep or too large)") from None
            if not isinstance(loaded, dict):
                raise InvalidURI("__extra__ must be a JSON object")
            extra.update(loaded)
        else:
            extra[key] = value
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return {
        "conn_type": conn_type,
        "host": unquote(parts.hostname) if parts.hostname else None,
        "port": port,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "schema": unquote(path) or None,
        "extra": extra,
    }
