"""What every ``airlock`` command shares: exit statuses, the API's address and token, plain output.

Text that comes from the server (a test's message, a trigger's log line, an error's detail) is printed
as it is: never read as markup, never cut.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console

from airlock.errors import error_detail
from airlock.settings import ApiLinkSettings
from airlock.tls import describe_tls_error, probe_handshake

EXIT_OK, EXIT_TEST_FAILED, EXIT_ERROR = 0, 1, 2
DEFAULT_API_URL = "http://127.0.0.1:8080"

out = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

ApiUrl = Annotated[
    str,
    typer.Option(
        "--api-url", envvar="AIRLOCK_API_URL", help="Where the Airlock API answers.", show_default=True
    ),
]


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print(f"airlock: {message}")
    raise typer.Exit(code)


SettingsT = TypeVar("SettingsT")


def load_settings(settings_class: Callable[[], SettingsT]) -> SettingsT:
    """The process's settings from ``AIRLOCK_*``; a bad value is a clean exit 2 naming the variable."""
    from pydantic import ValidationError

    try:
        return settings_class()
    except ValidationError as exc:
        problems = "; ".join(
            f"AIRLOCK_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid configuration: {problems}")


def api_token() -> str:
    """``AIRLOCK_API_TOKEN``, or the dev stack's admin token when running next to ``airlock dev``."""
    token = os.environ.get("AIRLOCK_API_TOKEN")
    if token:
        return token
    dev_token = Path(os.environ.get("AIRLOCK_STATE_DIR", ".airlock")) / "admin.token"
    if dev_token.exists():
        return dev_token.read_text().strip()
    fail("no API token: set AIRLOCK_API_TOKEN (or run next to `airlock dev`)")


@contextmanager
def public_api(api_url: str) -> Iterator[httpx.Client]:
    """The public API with the admin token, over HTTPS as ``AIRLOCK_API_CA`` and
    ``AIRLOCK_API_CLIENT_CERT``/``_KEY`` say; an API that cannot be reached is a clean exit 2."""
    link = load_settings(lambda: ApiLinkSettings(api_url=api_url))
    # Plain HTTP off loopback is refused before the token is read, let alone sent.
    verify = link.api_tls()
    headers = {"Authorization": f"Bearer {api_token()}"}
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=15, verify=verify) as client:
            yield client
    except httpx.HTTPError as exc:
        reason = describe_tls_error(exc)
        if reason is None and isinstance(verify, ssl.SSLContext):
            reason = probe_handshake(api_url, verify, presents_certificate=bool(link.api_client_cert))
        fail(f"cannot reach the API at {api_url}: {reason or type(exc).__name__}")


def checked(response: httpx.Response, doing: str) -> Any:
    """The JSON body of a successful answer; otherwise exit 2 with what the API said."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        detail = error_detail(response.json())
    except ValueError:
        detail = response.text[:300]
    fail(f"{doing} failed: {response.status_code} {response.reason_phrase}: {detail}")


def leave(code: int) -> NoReturn:
    """Exit at once. Temporal's SDK can abort in PyGILState_Release at interpreter exit: flush, then go."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
