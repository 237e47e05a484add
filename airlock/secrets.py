"""What counts as a secret, and how it is kept out of what Airlock shows: API answers (masked extra
values), test results, trigger logs and errors (scrubbed text).

Standard library only (and :mod:`airlock.connection`): the isolated driver process imports it.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlsplit

if TYPE_CHECKING:
    from airlock.connection import ConnectionFields

# Parts of a key name whose value is a secret (compared lowercased); Airflow's masker list, plus
# credentials and cookies. Used for connection extras, trigger kwargs and headers, at any depth.
SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "authorization",
    "credential",
    "cookie",
    "keyfile_dict",
    "service_account",
)
MASK = "***"
# A secret shorter than this is replaced only where it stands as a word of its own: a one-letter
# password must not turn "authentication" into "auth***ntication" (which also shows the letter).
WHOLE_WORD_BELOW = 8


def is_sensitive_key(key: object) -> bool:
    name = str(key).lower()
    return any(part in name for part in SENSITIVE_KEY_PARTS)


def mask(value: Any) -> Any:
    """``value`` with everything under a sensitive key, at any depth, shown as ``***``."""
    if isinstance(value, dict):
        return {k: MASK if is_sensitive_key(k) and v not in (None, "") else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    return value


def unmask(new: Any, old: Any) -> Any:
    """A client that sends a masked value back means "keep it", not "set it to ***"."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: old[k] if v == MASK and k in old else unmask(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [unmask(n, o) for n, o in zip(new, old, strict=True)]
    return new


def sensitive_values(value: Any, *, sensitive: bool = False) -> list[str]:
    """Every string under a sensitive key (``headers.Authorization`` too), and each URL's password."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += sensitive_values(item, sensitive=sensitive or is_sensitive_key(key))
    elif isinstance(value, list | tuple):
        for item in value:
            found += sensitive_values(item, sensitive=sensitive)
    elif isinstance(value, str):
        if sensitive:
            found.append(value)
            # "Bearer <token>": the credential alone may show up too.
            found.extend(value.split(None, 1)[1:])
        if "://" in value:
            with contextlib.suppress(ValueError):
                found.append(urlsplit(value).password or "")
    return [v for v in found if v]


def connection_secrets(conn: ConnectionFields) -> tuple[str, ...]:
    """Every string a message must not show: the password, the pair basic auth sends, secret extras."""
    secrets: list[str] = []
    if conn.password:
        pair = f"{conn.login or ''}:{conn.password}"
        secrets += [conn.password, pair, base64.b64encode(pair.encode()).decode()]
    secrets += sensitive_values(conn.extra)
    return tuple(secrets)


def scrub(message: str, *secrets: str | None) -> str:
    """Replace each secret, raw or URL-quoted, with ``***``; short ones only where they stand alone."""
    pattern = _pattern(s for s in secrets if s)
    return message if pattern is None else pattern.sub(MASK, message)


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        forms.update((secret, quote(secret, safe=""), quote_plus(secret), quote(secret)))
    if not forms:
        return None
    # Longest first, so a secret that contains another is not left half-replaced.
    alternatives = [
        re.escape(form) if len(form) >= WHOLE_WORD_BELOW else rf"(?<!\w){re.escape(form)}(?!\w)"
        for form in sorted(forms, key=len, reverse=True)
    ]
    return re.compile("|".join(alternatives))
