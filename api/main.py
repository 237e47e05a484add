"""The Airlock API process: public API, Execution API, codec endpoints, and the control worker."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.worker import Worker

from airlock.logging import configure_logging, request_scope
from airlock.tls import PLAINTEXT_OPT_IN, PlaintextRefused, is_loopback
from airlock.tracing import configure_tracing, flush_traces
from api import codec, health, metrics
from api.console import mount_console
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.db.session import create_engine, sessionmaker
from api.deps import Runtime
from api.docs import add_docs_pages, mount_assets
from api.errors import BodySizeLimit, install_error_handlers
from api.execution.app import create_execution_app
from api.public.routes import router as public_router
from api.services import retention
from api.services.workers import WorkerTLSFiles
from api.temporal.background import drain
from api.temporal.client import connect, ensure_search_attributes
from api.temporal.control import (
    CONTROL_SHUTDOWN_SECONDS,
    ControlActivities,
    TriggerControlActivities,
    control_worker,
)
from api.temporal.handover import TriggerHandover
from api.temporal.reaper import ConnectionTestReaper, TriggerReaper, reap_forever

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    execution_app = create_execution_app()
    codec.hide_token_in_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_secrets()
        WorkerTLSFiles.load(settings)
        engine = create_engine(settings.database_url)
        runtime = Runtime(
            settings=settings, sessions=sessionmaker(engine), box=SecretBox(settings.fernet_key)
        )
        runtime.temporal = await connect(settings)
        await ensure_search_attributes(runtime.temporal, settings.temporal_namespace)
        app.state.runtime = execution_app.state.runtime = runtime
        background: list[asyncio.Task[None]] = []
        worker = None
        if settings.run_control_worker:
            activities = ControlActivities(settings, runtime.sessions, runtime.box, runtime.temporal)
            trigger_activities = TriggerControlActivities(settings, runtime.sessions, runtime.box)
            worker = control_worker(runtime.temporal, settings, activities, trigger_activities)
            background.append(asyncio.create_task(worker.run()))
            reapers = (
                ConnectionTestReaper(runtime.temporal, settings, runtime.sessions, runtime.box),
                TriggerReaper(runtime.temporal, settings, runtime.sessions),
                TriggerHandover(runtime.temporal, settings, runtime.sessions),
            )
            background += [asyncio.create_task(reaper.run_forever()) for reaper in reapers]
        if settings.retention_days or settings.trigger_log_retention_days:
            background.append(asyncio.create_task(_sweep_forever(runtime)))
        try:
            yield
        finally:
            await drain(GRACEFUL_SHUTDOWN_SECONDS)
            if worker is not None:
                await _stop_control_worker(worker)
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await engine.dispose()
            flush_traces()

    app = FastAPI(
        title="Airlock API",
        description="Connection tests on isolated workers. Authenticate with `Authorization: Bearer`",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    mount_assets(app)
    mount_console(app)
    add_docs_pages(app)
    install_error_handlers(app)
    install_error_handlers(execution_app)
    app.include_router(public_router)
    app.include_router(codec.router)
    app.include_router(health.router)
    app.include_router(metrics.router)

    app.mount("/execution", execution_app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["*"],
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Outside the limits, so that a refused request is counted with its status too.
    app.add_middleware(metrics.RequestMetrics)
    # Outermost, so that uvicorn's access line for the request is written inside its scope.
    app.add_middleware(RequestLogScope)
    if configure_tracing("airlock-api"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Without a span per ASGI message sent and received: two more per request, saying little.
        # Not the Temporal UI's decode requests: their path holds the codec token.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="/codec/ui/", exclude_spans=["receive", "send"])
    return app


async def _stop_control_worker(worker: Worker) -> None:
    """Stop taking control work, waiting a bounded time for what is in flight. A result being recorded
    while the database is away is retried until it returns, and held the worker's shutdown, and the
    API's, as long: past the bound, its workflow task times out on Temporal and runs again on another
    replica, or on this one once it is back."""
    try:
        await asyncio.wait_for(worker.shutdown(), CONTROL_SHUTDOWN_SECONDS * 2)
    except TimeoutError:
        log.warning("the control worker did not stop in time; Temporal hands its work on")


async def _sweep_forever(runtime: Runtime) -> None:
    async def sweep_once() -> int:
        swept = await retention.sweep(runtime.sessions, runtime.settings)
        if swept.total:
            log.info("retention: deleted what ended long ago", **asdict(swept))
        return swept.total

    await reap_forever("retention", sweep_once, runtime.settings.retention_interval)


class RequestLogScope:
    """The test or trigger a request's handlers name (``bind_work``) is on its access log line too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_scope():
            await self.app(scope, receive, send)


# Longer than any client keeps an idle connection (httpx: 5 s, uvicorn's own default too). With equal
# timeouts a client can send on a connection at the moment the server closes it, and the request fails
# with a read error; the server holding on longer leaves every close to the client, between requests.
KEEP_ALIVE_SECONDS = 65
# How long a stopping replica waits for open connections. Requests take well under a second, but an
# idle keep-alive connection over TLS waits for the client's close_notify, which a pooled client never
# sends: without a bound, every HTTPS replica with workers attached took 30 s (asyncio's TLS shutdown
# timeout) to stop, past a typical orchestrator's grace period.
GRACEFUL_SHUTDOWN_SECONDS = 5


def serve(settings: Settings, host: str, port: int, *, migrate: bool = True) -> None:
    import uvicorn

    from api.db.migrate import upgrade

    configure_logging(settings.log_format, settings.log_level)
    settings.require_secrets()
    if settings.tls_cert_file is None and not (is_loopback(host) or settings.allow_plaintext):
        raise PlaintextRefused(
            f"refusing to serve the API on {host} over plain HTTP: workers' credentials and connections' "
            "passwords would cross the network in clear. Set AIRLOCK_TLS_CERT_FILE and AIRLOCK_TLS_KEY_FILE, "
            f"or {PLAINTEXT_OPT_IN} behind a TLS-terminating load balancer on a trusted network"
        )
    # Refused or invalid Temporal TLS settings stop the start here, before anything listens.
    settings.temporal_tls_config()
    if migrate:
        upgrade(settings.database_url)
    log.info(
        "starting the API",
        host=host,
        port=port,
        scheme="https" if settings.tls_cert_file else "http",
        client_certificates="required" if settings.tls_client_ca_file else "not asked",
        control_queue=settings.control_queue,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        # uvicorn logs through airlock.logging's root handler, at its level, the access log included.
        log_config=None,
        log_level=None,
        access_log=True,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **tls_options(settings),
    )


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's HTTPS options: the API's certificate and, for mutual TLS, the CA its clients' certificates
    must chain to (a client without one is refused in the handshake)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
    }
    if settings.tls_client_ca_file is not None:
        options |= {"ssl_ca_certs": str(settings.tls_client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
