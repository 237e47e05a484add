"""Sign in with the API token, sign out."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from api.console.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    csrf_matches,
    form_fields,
    new_csrf_token,
    open_session,
    read_session,
    set_cookie,
)
from api.console.web import PREFIX, FormDep, page, redirect
from api.core.security import admin_token_matches
from api.deps import RuntimeDep

router = APIRouter(prefix=PREFIX, include_in_schema=False)
HOME = "/connections"


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, HOME)


@router.get("/login")
async def login_form(request: Request, runtime: RuntimeDep) -> Response:
    if read_session(runtime.settings, request) is not None:
        return redirect(request, HOME)
    return _login_page(request)


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    csrf = new_csrf_token()
    response = page(request, "login.html", status_code, csrf=csrf, error=error)
    set_cookie(response, request, LOGIN_CSRF_COOKIE, csrf, max_age=3600)
    return response


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    fields = await form_fields(request)
    if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), fields.get(CSRF_FIELD)):
        return _login_page(request, "The form expired: sign in again.", status.HTTP_403_FORBIDDEN)
    if not admin_token_matches(runtime.settings, fields.get("token", "")):
        return _login_page(request, "That is not the API token.", status.HTTP_401_UNAUTHORIZED)
    cookie, _ = open_session(runtime.settings)
    response = redirect(request, HOME)
    set_cookie(response, request, SESSION_COOKIE, cookie, max_age=SESSION_SECONDS)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, _: FormDep) -> Response:
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
