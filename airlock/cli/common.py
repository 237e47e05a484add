"""What every ``airlock`` command shares: exit statuses, the API's address and token, plain output.

Text that comes from the server (a test's message, a trigger's log line, an error's detail) is printed
as it is: never read as markup, never cut.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

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


AsJson = Annotated[
    bool, typer.Option("--json", help="Print the API's answer as JSON, its field names as they are.")
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
    fail(f"{doing} failed: {response.status_code} {response.reason_phrase}: {error_detail_of(response)}")


def error_detail_of(response: httpx.Response) -> str:
    """What the API said was wrong."""
    try:
        return error_detail(response.json())
    except ValueError:
        return response.text[:300]


def print_json(body: Any) -> None:
    out.print(json.dumps(body, indent=2))


def shown(value: Any) -> str:
    """A field's value as a human reads it: JSON for objects and lists, ``-`` for nothing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def print_record(body: dict[str, Any]) -> None:
    """One resource, a field per line, every value whole."""
    width = max(map(len, body), default=0)
    for name, value in body.items():
        out.print(f"{name:<{width}}  {shown(value)}")


def print_resource(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(body)
    else:
        print_record(body)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table when the terminal is wide enough for every value; otherwise one block per row. A squeezed
    table would cut ids (what the other commands take) or drop whole columns."""
    cells = [[shown(value) for value in row] for row in rows]
    table = Table(*columns)
    for row in cells:
        table.add_row(*row)
    # Measured unbounded: a table's own measure is clamped to the terminal's width.
    if out.measure(table, options=out.options.update_width(1_000_000)).maximum <= out.width:
        out.print(table)
        return
    for row in cells:
        out.print(row[0])
        for name, value in zip(columns[1:], row[1:], strict=True):
            out.print(f"  {name:<12} {value}")


def leave(code: int) -> NoReturn:
    """Exit at once. Temporal's SDK can abort in PyGILState_Release at interpreter exit: flush, then go."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
