"""Airflow's connection model and URI form, shared by the API, the CLI and the workers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airlock.validation import Text

CONN_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+.-]{0,49}$"
MAX_EXTRA_BYTES = 64 * 1024
MAX_EXTRA_DEPTH = 8


def _depth(value: Any, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def check_extra(extra: dict[str, Any]) -> dict[str, Any]:
    if _depth(extra) > MAX_EXTRA_DEPTH:
        raise ValueError(f"extra is nested more than {MAX_EXTRA_DEPTH} levels deep")
    if len(json.dumps(extra)) > MAX_EXTRA_BYTES:
        raise ValueError(f"extra is larger than {MAX_EXTRA_BYTES} bytes")
    return extra


class ConnectionFields(BaseModel):
    """The fields a tester needs. ``schema`` is Airflow's name; pydantic reserves it, hence the alias."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    conn_type: str = Field(pattern=CONN_TYPE_PATTERN)
    host: Text | None = Field(None, max_length=500)
    port: int | None = Field(None, ge=0, le=65535)
    login: Text | None = Field(None, max_length=500)
    password: Text | None = Field(None, max_length=5000)
    schema_: Text | None = Field(None, alias="schema", max_length=500)
    extra: dict[str, Any] = Field(default_factory=dict)

    _check_extra = field_validator("extra")(check_extra)

    @classmethod
    def from_uri(cls, uri: str) -> ConnectionFields:
        return cls.model_validate(parse_uri(uri))

    def to_uri(self, *, hide_password: bool = True) -> str:
        auth = ""
        if self.login or self.password:
            auth = quote(self.login or "", safe="")
            if self.password:
                auth += ":" + ("***" if hide_password else quote(self.password, safe=""))
            auth += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port is not None else ""
        path = f"/{quote(self.schema_, safe='/')}" if self.schema_ else ""
        return f"{self.conn_type.replace('_', '-')}://{auth}{host}{port}{path}"


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
    parts = urlsplit(uri)
    if not parts.scheme:
        raise InvalidURI("URI has no scheme (the conn_type)")
    conn_type = parts.scheme.replace("-", "_")
    if conn_type == "postgresql":
        conn_type = "postgres"
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(f"URI has an invalid port: {exc}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    extra: dict[str, Any] = {}
    for key, value in query:
        if key == "__extra__":
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidURI(f"__extra__ is not valid JSON: {exc.msg}") from None
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
