"""Error responses shared by the public and Execution APIs: clear 4xx for bad input, 503 when the
database is away, never an echo of the submitted values (they may hold a password)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.services.errors import ServiceError, TooManyRequests

log = structlog.get_logger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(RejectBadUrls)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        if exc.status_code == 422:
            # The shape every documented 422 has (a list of problems), whoever found the problem.
            return _unprocessable("body", exc.detail, "value_error")
        headers = {"Retry-After": str(exc.retry_after_seconds)} if isinstance(exc, TooManyRequests) else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_safe(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # FastAPI answers a body it cannot parse (other than a JSON syntax error) with a bare 400
        # "There was an error parsing the body": say what is wrong, as the 422 every route documents.
        reason = _unparsable_body(exc)
        if reason is not None:
            return _unprocessable("body", reason, "json_invalid")
        return await http_exception_handler(request, exc)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    # Every pooled connection busy or stuck connecting: the database is as good as away.
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: DBAPIError | PoolTimeout) -> JSONResponse:
        log.warning("database error", path=request.url.path, error=type(getattr(exc, "orig", exc)).__name__)
        return JSONResponse(
            {"detail": "the metadata database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )


def _safe(error: Any) -> dict[str, Any]:
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}


def _unprocessable(where: str, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": [where], "msg": message, "type": kind}]}, status_code=422)


def _unparsable_body(exc: HTTPException) -> str | None:
    if exc.status_code != 400 or exc.__cause__ is None:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "request body is not valid UTF-8"
    if isinstance(cause, RecursionError):
        return "request body is nested too deeply to be parsed"
    if isinstance(cause, ValueError):
        # Python's JSON parser refuses integers of more than 4300 digits with a ValueError.
        return "request body is not JSON this API accepts (a number too long to convert?)"
    return None


class RejectBadUrls:
    """Refuse a path or query that holds a NUL byte or bytes that are not UTF-8, with a 422.

    The ASGI server decodes invalid UTF-8 to U+FFFD, and PostgreSQL cannot compare text with NUL (it
    would be a 500, or a 503 blamed on the database): both are refused before any route sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            for where, raw in (("path", raw_path), ("query", scope.get("query_string", b""))):
                problem = _url_problem(raw.replace(b"+", b" ") if where == "query" else raw)
                if problem is not None:
                    await _unprocessable(where, f"the URL {where} {problem}", "value_error")(
                        scope, receive, send
                    )
                    return
        await self.app(scope, receive, send)


def _url_problem(raw: bytes) -> str | None:
    decoded = unquote_to_bytes(raw)
    if b"\x00" in decoded:
        return "contains a NUL byte (%00)"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8 once percent-decoded"
    return None


class BodySizeLimit:
    """Reject bodies over ``max_bytes`` with 413, whether or not the client declared a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        response_started = False
        refused = answered = False

        async def limited_receive() -> Message:
            # Past the limit, answer 413 at once and tell the app the client is gone. Raising here
            # instead would reach the route wrapped (in an exception group, by a middleware's task
            # group) and come out as a 400 "error parsing the body".
            nonlocal seen, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not response_started:
                        answered = True
                        await _too_large(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if answered:
                return  # whatever the app answers to the "disconnect", the 413 was the answer
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


async def _too_large(send: Send, max_bytes: int) -> None:
    body = f'{{"detail":"request body larger than {max_bytes} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
