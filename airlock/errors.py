"""How the APIs' error answers read to a person: the CLI prints them, workers log them."""

from __future__ import annotations

from typing import Any


def error_detail(body: Any) -> str:
    """The ``detail`` of an error body as one line: a 422's problems as ``field: message; ...``."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(_problem(item) for item in detail)
    return str(detail)


def _problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    # "body" heads every location of a request body's problem: it says nothing to the reader.
    where = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    # Pydantic heads a validator's own message with the exception's kind; the message says it all.
    message = str(item.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
