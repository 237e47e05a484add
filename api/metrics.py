"""The API's Prometheus metrics: every metric's one definition, the middleware that counts requests, the
hook that records a test's figures once its transaction commits, and ``GET /metrics``.

Counters and histograms are kept in the process: each replica counts what it served, and Prometheus
sums the replicas. The gauges about the metadata database (tests in flight, triggers, live workers)
are read from it at each scrape instead, so every replica reports the same, whole figure.

Labels carry bounded, non-secret values only: a route's template (``/api/v2/connections/{connection_id}``,
never the path a client sent, which holds ids and, under ``/codec/ui/``, a token), a method, a status,
a queue, a conn type, a state. Never a host, a test's or a connection's id, a worker's name.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airlock.states import ConnectionTestState
from api.db.models import ConnectionTest
from api.deps import Runtime, RuntimeDep

log = structlog.get_logger(__name__)

# No "_created" series beside each counter and histogram: they double the series and Prometheus does
# not read them from this format.
disable_created_metrics()
# The API's own registry: what /metrics shows is this process's figures, nothing a library registered.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Tests last from milliseconds (a refused port) to AIRLOCK_MAX_CONNECTION_TEST_TIMEOUT (600 s).
TEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter(
    "airlock_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "airlock_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method",
    ["route", "method"],
    registry=REGISTRY,
)
TESTS_STARTED = Counter(
    "airlock_connection_tests_started",
    "Connection tests stored (202), by conn type and queue",
    ["conn_type", "queue"],
    registry=REGISTRY,
)
TESTS_FINISHED = Counter(
    "airlock_connection_tests_finished",
    "Connection tests that reached a terminal state, by conn type, queue and outcome (success, failed)",
    ["conn_type", "queue", "outcome"],
    registry=REGISTRY,
)
TEST_STAGE = Histogram(
    "airlock_connection_test_stage_seconds",
    "Time a finished test spent in each stage it went through: slot (pending, waiting for a slot under "
    "the global cap), worker (queued, waiting for a worker to claim it), driver (running: claimed to result)",
    ["stage", "queue"],
    buckets=TEST_BUCKETS,
    registry=REGISTRY,
)
REAPER_ACTIONS = Counter(
    "airlock_reaper_actions",
    "What the reapers did: tests and triggers ended after their workflow closed without recording it, "
    "queued tests' workflows nudged, trigger runs handed over from a silent or non-claiming triggerer",
    ["reaper", "action"],
    registry=REGISTRY,
)
REAPER_FAILURES = Counter(
    "airlock_reaper_failed_passes",
    "Reaper passes that failed (Temporal or the database away); the next pass runs at its interval",
    ["reaper"],
    registry=REGISTRY,
)

# Read from the database at each scrape: their names here, their help and queries in database_families().
TESTS_ACTIVE = "airlock_connection_tests_active"
TRIGGERS = "airlock_triggers"
LIVE_WORKERS = "airlock_live_workers"
DATABASE_UP = "airlock_metrics_database_up"
# A scrape waits this long for the database (as long as /ready does) before it answers without them.
DATABASE_TIMEOUT_SECONDS = 3.0

# Anything else a client sends as its method is counted as "other": the label stays bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

S = ConnectionTestState


# -- the tests' figures, recorded when their transaction commits ------------------------------------

_ON_COMMIT = "airlock.metrics.on_commit"


def on_commit(session: AsyncSession, record: Callable[[], None]) -> None:
    """Run ``record`` once ``session``'s transaction commits, and never if it rolls back: a test counted
    as started or finished is one the database holds."""
    session.sync_session.info.setdefault(_ON_COMMIT, []).append(record)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # Releasing a savepoint commits too: only the outermost transaction's commit stores anything.
    if session.in_nested_transaction():
        return
    for record in session.info.pop(_ON_COMMIT, ()):
        try:
            record()
        except Exception as exc:  # the write is committed: its answer must not fail for a metric
            log.warning("a metric could not be recorded", error=f"{type(exc).__name__}: {exc}")


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    # Rolled back or closed without a commit: what it would have recorded did not happen.
    if transaction.parent is None:
        session.info.pop(_ON_COMMIT, None)


def _conn_type(test: ConnectionTest) -> str:
    # The API accepts a known conn type in any case ("TCP"): one label value per type.
    return test.conn_type.lower()


def connection_test_stored(session: AsyncSession, test: ConnectionTest) -> None:
    """A new test row: started, and finished too when it was stored failed (no worker serves its queue)."""
    conn_type, queue = _conn_type(test), test.queue
    terminal = S(test.state).is_terminal

    def record() -> None:
        TESTS_STARTED.labels(conn_type, queue).inc()
        if terminal:
            TESTS_FINISHED.labels(conn_type, queue, test.state).inc()

    on_commit(session, record)


def connection_test_finished(session: AsyncSession, test: ConnectionTest) -> None:
    """A test that has just reached its terminal state: its outcome and the stages it went through."""
    conn_type, queue, outcome = _conn_type(test), test.queue, test.state
    stages = _stages(test.created_at, test.queued_at, test.started_at, test.finished_at)

    def record() -> None:
        TESTS_FINISHED.labels(conn_type, queue, outcome).inc()
        for stage, seconds in stages:
            TEST_STAGE.labels(stage, queue).observe(seconds)

    on_commit(session, record)


def _stages(
    created: datetime | None, queued: datetime | None, started: datetime | None, finished: datetime | None
) -> list[tuple[str, float]]:
    """The stages a test got through, each with its duration: slot (created to queued), worker (queued
    to claimed), driver (claimed to ended). A test that ended while pending or queued (no slot came, no
    worker came) never left that stage: it has no end, and is left out rather than counted as a wait."""
    stages = []
    for stage, start, end in (
        ("slot", created, queued),
        ("worker", queued, started),
        ("driver", started, finished),
    ):
        if start is not None and end is not None:
            stages.append((stage, max(0.0, (end - start).total_seconds())))
    return stages


def reaper_action(reaper: str, action: str, count: int = 1) -> None:
    if count:
        REAPER_ACTIONS.labels(reaper, action).inc(count)


# -- requests --------------------------------------------------------------------------------------


class RequestMetrics:
    """Counts and times every HTTP request under its route's template, read after routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root = scope.get("root_path", "")
        answered = 500  # what the server's error handler sends when the app raises before answering

        async def noting_status(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = route_template(scope, root)
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(answered)).inc()
            HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)


def route_template(scope: Scope, outer_root: str) -> str:
    """The template of the route that answered (``/api/v2/connections/{connection_id}``). Routing leaves
    the route and the app that routed it in the request's scope, and a mounted app's prefix in its
    ``root_path``; the route knows its path within its router only, so the app's table gives the whole
    path. A mounted app without routes (static files) counts as ``<prefix>/{path}``, a request no route
    matched (404, or refused before routing) as ``unmatched``."""
    root = str(scope.get("root_path", ""))
    prefix = root[len(outer_root) :] if root.startswith(outer_root) else ""
    route = scope.get("route")
    if route is None:
        return f"{prefix}/{{path}}" if prefix else UNMATCHED
    app = scope.get("app")
    path = _route_paths(app).get(id(route)) if app is not None else None
    # Not in the table: a route made per request's version (Cadwyn's), whose path is whole already.
    return prefix + (path or str(getattr(route, "path", "")))


_PATHS: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _route_paths(app: Any) -> dict[int, str]:
    """Each route of ``app`` with its whole path (an included router's prefix and all), read once."""
    paths = _PATHS.get(app)
    if paths is None:
        paths = {
            id(context.original_route): str(context.path_format)
            for context in iter_route_contexts(getattr(app, "routes", ()))
            if context.path_format
        }
        _PATHS[app] = paths
    return paths


# -- the database's figures, read at each scrape ---------------------------------------------------


async def database_families(runtime: Runtime) -> list[Metric]:
    """Tests in flight per queue and state, triggers per queue and state, live workers and triggerers
    per queue (0 for a queue a valid credential is provisioned for and no live one serves)."""
    # Imported here: the services record into this module's metrics, so it cannot import them first.
    from api.services import connection_tests, jobs, triggers, workers

    async with runtime.sessions() as session:
        tests = await connection_tests.count_active(session)
        trigger_counts = await triggers.count_by_queue_and_state(session)
        live = await jobs.live(session, runtime.settings.job_liveness_timeout, kind=None)
        credentials = [w for w in await workers.list_(session) if workers.is_valid(w)]

    active = GaugeMetricFamily(
        TESTS_ACTIVE, "Connection tests not yet ended, by queue and state", labels=["queue", "state"]
    )
    for (queue, state), count in sorted(tests.items()):
        active.add_metric([queue, state], count)
    stored = GaugeMetricFamily(
        TRIGGERS,
        "Triggers stored, by queue and state (ended ones until AIRLOCK_RETENTION_DAYS deletes them)",
        labels=["queue", "state"],
    )
    for (queue, state), count in sorted(trigger_counts.items()):
        stored.add_metric([queue, state], count)
    serving: Tally[tuple[str, str]] = Tally()
    for credential in credentials:
        kind = "triggerer" if credential.triggerer else "worker"
        serving.update({(queue, kind): 0 for queue in credential.queues})
    for job in live:
        serving.update((queue, job.kind) for queue in job.queues)
    workers_family = GaugeMetricFamily(
        LIVE_WORKERS,
        "Workers and triggerers heartbeating within AIRLOCK_JOB_LIVENESS_TIMEOUT, by queue and kind; 0 for "
        "a queue of a valid provisioned credential that none serves",
        labels=["queue", "kind"],
    )
    for (queue, kind), count in sorted(serving.items()):
        workers_family.add_metric([queue, kind], count)
    return [active, stored, workers_family]


class _Scrape(Collector):
    """This process's registry followed by the figures read for this scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._families


# -- GET /metrics ----------------------------------------------------------------------------------

router = APIRouter(tags=["operations"])
_bearer = HTTPBearer(auto_error=False, description="AIRLOCK_METRICS_TOKEN")


def require_metrics_token(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Its own token, which opens nothing else: Prometheus never holds the admin token. Unset, the
    endpoint does not exist (404)."""
    expected = runtime.settings.metrics_token
    if not expected:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid metrics token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get(
    "/metrics",
    include_in_schema=False,
    dependencies=[Depends(require_metrics_token)],
    response_class=Response,
)
async def metrics(runtime: RuntimeDep) -> Response:
    families: list[Metric]
    try:
        families = await asyncio.wait_for(database_families(runtime), DATABASE_TIMEOUT_SECONDS)
        up = 1
    except Exception as exc:  # the process's own figures still go out
        log.warning("metrics: the database's figures could not be read", error=type(exc).__name__)
        families, up = [], 0
    database_up = GaugeMetricFamily(
        DATABASE_UP,
        f"1 when this scrape read the database's figures ({TESTS_ACTIVE}, {TRIGGERS}, {LIVE_WORKERS}); "
        f"0 when it did not answer within {DATABASE_TIMEOUT_SECONDS:g} s",
        value=up,
    )
    return Response(generate_latest(_Scrape([*families, database_up])), media_type=CONTENT_TYPE_LATEST)
