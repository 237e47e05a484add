"""What every console page shares: where it lives, how it renders, what it sends with each answer,
and the session and CSRF checks in front of it."""

from __future__ import annotations

from typing import Annotated, Any

import jinja2
from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.session import CSRF_FIELD, ConsoleSession, csrf_matches, form_fields, read_session
from api.deps import RuntimeDep
from api.services.errors import ServiceError

PREFIX = "/ui"
ASSETS_PATH = f"{PREFIX}/static"
# The console's own files and nothing else: no inline script or style, no other origin, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show live state and are for one operator's eyes: never from a cache.
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("api.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def problems(exc: ValidationError) -> str:
    """What is wrong with a submitted form, for the page. include_input=False: pydantic would otherwise
    quote the rejected values, a password among them."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'form'}: {err['msg']}"
        for err in exc.errors(include_input=False)
    )


def ui_path(request: Request, path: str) -> str:
    # Behind a proxy that adds a prefix, links keep it.
    return f"{request.scope.get('root_path', '')}{PREFIX}{path}"


def secured(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    html = _templates.get_template(template).render(
        ui=lambda path: ui_path(request, path), csrf_field=CSRF_FIELD, **context
    )
    return secured(HTMLResponse(html, status_code=status_code))


def not_found(request: Request, csrf: str, exc: ServiceError) -> Response:
    """The page for what the API refused to find (its own message and status)."""
    return page(request, "not_found.html", exc.status_code, csrf=csrf, section="", what=exc.detail)


def redirect(request: Request, path: str) -> Response:
    return secured(RedirectResponse(ui_path(request, path), status_code=status.HTTP_303_SEE_OTHER))


def require_session(request: Request, runtime: RuntimeDep) -> ConsoleSession:
    session = read_session(runtime.settings, request)
    if session is None:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, "sign in first", headers={"Location": ui_path(request, "/login")}
        )
    return session


ConsoleSessionDep = Annotated[ConsoleSession, Depends(require_session)]


async def require_csrf(request: Request, console: ConsoleSessionDep) -> dict[str, str]:
    """The submitted form, once its CSRF token is the session's."""
    fields = await form_fields(request)
    if not csrf_matches(console.csrf, fields.get(CSRF_FIELD)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page")
    return fields


FormDep = Annotated[dict[str, str], Depends(require_csrf)]
