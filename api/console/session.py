"""The console's session cookie and CSRF tokens.

The cookie is a JWT signed with a key derived from ``AIRLOCK_JWT_SECRET`` (so it is never accepted
where the API takes a workload token) and holds no credential: an expiry, the session's CSRF token and
a fingerprint of the admin token, so that rotating the token signs every console session out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import jwt
from fastapi import Request, Response

from api.core.config import Settings

SESSION_COOKIE = "airlock_console"
# Before sign-in there is no session to hold the CSRF token: the form and this cookie carry the same one.
LOGIN_CSRF_COOKIE = "airlock_console_login"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"
_AUDIENCE = "airlock-console"
_ALGORITHM = "HS256"
# Forms here have a few fields; anything longer is not one of ours.
_MAX_FORM_FIELDS = 20


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    expires_at: int


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.jwt_secret.encode(), b"airlock console session", hashlib.sha256).digest()


def _token_fingerprint(settings: Settings) -> str:
    return hmac.new(_key(settings), settings.admin_token.encode(), hashlib.sha256).hexdigest()[:32]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def open_session(settings: Settings) -> tuple[str, ConsoleSession]:
    session = ConsoleSession(csrf=new_csrf_token(), expires_at=int(time.time()) + SESSION_SECONDS)
    claims = {
        "aud": _AUDIENCE,
        "exp": session.expires_at,
        "csrf": session.csrf,
        "tok": _token_fingerprint(settings),
    }
    return jwt.encode(claims, _key(settings), algorithm=_ALGORITHM), session


def read_session(settings: Settings, request: Request) -> ConsoleSession | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value or not settings.admin_token:
        return None
    try:
        claims = jwt.decode(
            value, _key(settings), algorithms=[_ALGORITHM], audience=_AUDIENCE, options={"require": ["exp"]}
        )
    except jwt.InvalidTokenError:
        return None
    csrf, fingerprint = claims.get("csrf"), claims.get("tok")
    if not isinstance(csrf, str) or not isinstance(fingerprint, str):
        return None
    if not hmac.compare_digest(fingerprint, _token_fingerprint(settings)):
        return None
    return ConsoleSession(csrf=csrf, expires_at=int(claims["exp"]))


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_matches(expected: str | None, submitted: str | None) -> bool:
    return bool(expected) and bool(submitted) and hmac.compare_digest(str(expected), str(submitted))


async def form_fields(request: Request) -> dict[str, str]:
    """A URL-encoded form's fields (the console's forms are nothing else); empty for anything else."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            (await request.body()).decode(), keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)
