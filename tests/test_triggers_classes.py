"""The trigger classes themselves, against real files, a real HTTP server and real databases.

The triggers get their connections from a small in-test TriggerContext: that protocol is the
whole interface between a trigger and Airlock, so this is the real seam, not a stand-in library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.triggers import TriggerNotAllowed, load_trigger_class
from activities.triggers.file import first_match
from activities.triggers.sql import is_truthy, json_friendly
from airlock.connection import ConnectionFields
from airlock.plugins import DEFAULT_TRIGGER_ALLOWLIST, trigger_entry_points
from airlock.sdk import (
    BaseTrigger,
    PollingTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerContext,
    TriggerEvent,
)
from airlock.sdk.triggers import MIN_POLL_INTERVAL
from airlock.serde import deserialize, serialize
from airlock.timers import due_moment
from airlock.triggers import (
    DATETIME_TRIGGER,
    TIMEDELTA_TRIGGER,
    DateTimeTrigger,
    FileTrigger,
    HttpTrigger,
    SqlTrigger,
    TimeDeltaTrigger,
)
from tests import secret_scan, services

# The shortest poll interval a PollingTrigger accepts.
FAST = MIN_POLL_INTERVAL
TEST_SERVER = str(Path(sys.executable).parent / "temporal-test-server")


@pytest.fixture(autouse=True)
def _local_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every database and server these triggers reach listens on loopback, which the egress policy refuses
    unless a worker opts in (tests/test_egress.py tries the refusal)."""
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", "true")


def fields(**values: Any) -> ConnectionFields:
    return ConnectionFields.model_validate(values)


class StaticContext:
    """Hands out fixed connections and records each lookup, as the Execution API would serve them."""

    def __init__(self, connections: dict[str, ConnectionFields] | None = None) -> None:
        self.connections = connections or {}
        self.lookups: list[str] = []
        self.log = logging.getLogger("tests.trigger_context")

    async def get_connection(self, conn_id: str) -> ConnectionFields:
        self.lookups.append(conn_id)
        return self.connections[conn_id]


async def first_event(trigger: BaseTrigger, timeout: float = 10.0) -> TriggerEvent:
    """Run a trigger the way a triggerer does: take the first event, then close and clean up."""
    if trigger._context is None:
        trigger.context = StaticContext()
    events = trigger.run()
    try:
        async with asyncio.timeout(timeout):
            event = await anext(events)
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()
        await trigger.cleanup()
    # Whatever a built-in trigger fires must travel through the envelope unchanged.
    assert deserialize(serialize(event.payload), []) == event.payload
    return event


async def later(delay: float, action: Any, *args: Any) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(action, *args)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the base classes ---------------------------------------------------------------------------


class CountdownTrigger(PollingTrigger):
    """Fires on its ``after``-th poll."""

    def __init__(self, *, after: int, poll_interval: float = FAST) -> None:
        super().__init__(after=after, poll_interval=poll_interval)
        self.after = after
        self.polls = 0
        self.polled_at: list[float] = []  # the event loop's clock

    async def poll(self) -> TriggerEvent | None:
        self.polls += 1
        self.polled_at.append(asyncio.get_running_loop().time())
        connection = await self.context.get_connection("any")
        if self.polls < self.after:
            return None
        return TriggerEvent({"polls": self.polls, "host": connection.host})


async def test_polling_trigger_polls_until_an_event_then_ends() -> None:
    trigger = CountdownTrigger(after=3)
    trigger.context = StaticContext({"any": fields(conn_type="tcp", host="h")})
    started = time.monotonic()
    events = [event async for event in trigger.run()]
    assert events == [TriggerEvent({"polls": 3, "host": "h"})]
    assert trigger.polls == 3
    # The first poll at once, the next ones on ticks of the interval (the next within one interval,
    # then one interval apart), none after the event.
    first, *ticks = trigger.polled_at
    assert 0 < ticks[0] - first <= FAST * 1.5 and ticks[1] - ticks[0] == pytest.approx(FAST, abs=0.1)
    assert all(min(t % FAST, FAST - t % FAST) < 0.05 for t in ticks), "polls fall on the interval's ticks"
    assert time.monotonic() - started < 10 * FAST
    assert trigger.kwargs == {"after": 3, "poll_interval": FAST}
    assert trigger.log.name == "tests.test_triggers_classes.CountdownTrigger"
    assert isinstance(trigger.context, TriggerContext)


@pytest.mark.parametrize("interval", [0, -1, True, "5", float("nan"), float("inf")])
def test_poll_interval_must_be_positive_seconds(interval: Any) -> None:
    with pytest.raises(ValueError, match="poll_interval must be a positive number"):
        CountdownTrigger(after=1, poll_interval=interval)


@pytest.mark.parametrize("interval", [0.19, 1e-6])
def test_poll_interval_has_a_minimum(interval: float) -> None:
    with pytest.raises(ValueError, match=rf"^poll_interval must be at least 0.2 s, not {interval!r}$"):
        CountdownTrigger(after=1, poll_interval=interval)
    with pytest.raises(ValueError, match="poll_interval must be at least"):
        FileTrigger(filepath="/data/*.csv", poll_interval=interval)


def test_context_is_required_before_run() -> None:
    with pytest.raises(RuntimeError, match="has no context"):
        _ = CountdownTrigger(after=1).context


def test_events_and_terminal_helpers() -> None:
    assert TriggerEvent(1) == TriggerEvent(1, "event") and not TriggerEvent(1).is_terminal
    assert TaskSuccessEvent({"ok": 1}).event_type == "task_success"
    assert TaskFailedEvent().event_type == "task_failed" and TaskFailedEvent().payload is None
    assert TaskSkippedEvent("why").event_type == "task_skipped"
    assert all(e.is_terminal for e in (TaskSuccessEvent(), TaskFailedEvent(), TaskSkippedEvent()))


def test_serialize_rebuilds_the_trigger() -> None:
    trigger = FileTrigger(filepath="/data/*.csv", poll_interval=2)
    classpath, kwargs = trigger.serialize()
    assert classpath == "activities.triggers.file.FileTrigger"
    assert kwargs == {"filepath": "/data/*.csv", "poll_interval": 2}
    rebuilt = load_trigger_class(classpath, DEFAULT_TRIGGER_ALLOWLIST)(**kwargs)
    assert isinstance(rebuilt, FileTrigger) and rebuilt.filepath == "/data/*.csv"


# --- load_trigger_class -------------------------------------------------------------------------


@pytest.fixture
def exploding_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"trigger_boom_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('this module was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_load_trigger_class_allows_the_built_in_triggers_by_stable_name_and_old_path() -> None:
    for classpath, cls in [
        ("airlock.triggers.FileTrigger", FileTrigger),
        ("airlock.triggers.HttpTrigger", HttpTrigger),
        ("airlock.triggers.SqlTrigger", SqlTrigger),
        (DATETIME_TRIGGER, DateTimeTrigger),
        (TIMEDELTA_TRIGGER, TimeDeltaTrigger),
        # The paths stored rows and older clients hold: aliases of the same classes.
        ("activities.triggers.file.FileTrigger", FileTrigger),
        ("activities.triggers.http.HttpTrigger", HttpTrigger),
        ("activities.triggers.sql.SqlTrigger", SqlTrigger),
        ("activities.triggers.time.DateTimeTrigger", DateTimeTrigger),
        ("activities.triggers.time.TimeDeltaTrigger", TimeDeltaTrigger),
    ]:
        assert load_trigger_class(classpath, DEFAULT_TRIGGER_ALLOWLIST) is cls
    # An old plugin's import of the base classes still works.
    from activities.triggers import BaseTrigger as OldBaseTrigger
    from activities.triggers.base import PollingTrigger as OldPollingTrigger

    assert (OldBaseTrigger, OldPollingTrigger) == (BaseTrigger, PollingTrigger)
    assert load_trigger_class(f"{__name__}.CountdownTrigger", ["tests.test_triggers_*"]) is CountdownTrigger


def test_load_trigger_class_refuses_before_importing(exploding_module: str) -> None:
    classpath = f"{exploding_module}.Trigger"
    with pytest.raises(TriggerNotAllowed) as info:
        load_trigger_class(classpath, DEFAULT_TRIGGER_ALLOWLIST)
    assert str(info.value) == (
        f"trigger class '{classpath}' is not in this triggerer's allowlist "
        "(airlock.triggers.*, activities.triggers.*)"
    )
    assert isinstance(info.value, PermissionError)
    assert exploding_module not in sys.modules
    # Allowed, the module is imported (and raises): the refusal above is what kept it out.
    with pytest.raises(RuntimeError, match="this module was imported"):
        load_trigger_class(classpath, ["trigger_boom_*"])


def test_load_trigger_class_rejects_what_is_not_a_concrete_trigger() -> None:
    with pytest.raises(TypeError, match="not a trigger"):
        load_trigger_class("airlock.connection.ConnectionFields", ["airlock.*"])
    with pytest.raises(TypeError, match="is abstract"):
        load_trigger_class("activities.triggers.base.PollingTrigger", DEFAULT_TRIGGER_ALLOWLIST)
    with pytest.raises(TypeError, match="is abstract"):
        load_trigger_class("activities.triggers.time.TimeTrigger", DEFAULT_TRIGGER_ALLOWLIST)
    with pytest.raises(ImportError, match="cannot import trigger class"):
        load_trigger_class("activities.triggers.nowhere.Trigger", DEFAULT_TRIGGER_ALLOWLIST)
    with pytest.raises(ImportError, match="has no 'Nope'"):
        load_trigger_class("activities.triggers.file.Nope", DEFAULT_TRIGGER_ALLOWLIST)
    with pytest.raises(ImportError, match="has no 'Nope'"):
        load_trigger_class("airlock.triggers.Nope", DEFAULT_TRIGGER_ALLOWLIST)
    with pytest.raises(ValueError, match="must look like"):
        load_trigger_class("FileTrigger", ["*"])
    with pytest.raises(TypeError, match="not a single string"):
        load_trigger_class("activities.triggers.file.FileTrigger", "activities.triggers.*")


def test_trigger_entry_points_are_classpaths() -> None:
    for name, classpath in trigger_entry_points().items():
        assert name and "." in classpath and ":" not in classpath


# --- FileTrigger --------------------------------------------------------------------------------


async def test_file_trigger_fires_when_a_matching_file_appears(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a match")
    trigger = FileTrigger(filepath=str(tmp_path / "*.csv"), poll_interval=FAST)
    started = time.monotonic()
    writer = asyncio.create_task(later(0.3, (tmp_path / "b.csv").write_text, "x"))
    event = await first_event(trigger)
    await writer
    assert time.monotonic() - started >= 0.3
    assert event == TriggerEvent({"filepath": str(tmp_path / "b.csv")})


async def test_file_trigger_takes_a_literal_path_and_names_one_match(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    target.mkdir()
    event = await first_event(FileTrigger(filepath=str(target), poll_interval=FAST))
    assert event.payload == {"filepath": str(target)}

    for name in ("b.json", "a.json"):
        (target / name).write_text("{}")
    event = await first_event(FileTrigger(filepath=str(tmp_path / "**" / "*.json"), poll_interval=FAST))
    # One match, in the filesystem's order: no listing of the triggerer's directories.
    assert event.payload in ({"filepath": str(target / name)} for name in ("a.json", "b.json"))


def test_file_trigger_stops_looking_at_the_first_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(200):
        (tmp_path / f"d{i:03}").mkdir()
        (tmp_path / f"d{i:03}" / "ready.flag").write_text("")
    listed: list[str] = []
    scandir = os.scandir

    def counting_scandir(path: Any = ".") -> Any:
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    match = first_match(str(tmp_path / "**" / "ready.flag"))
    assert match is not None and match.endswith("ready.flag")
    # glob.glob would have listed all 201 directories (and sorted every match) on every poll.
    assert len(listed) <= 2, listed


def test_file_trigger_needs_a_path() -> None:
    with pytest.raises(ValueError, match="filepath"):
        FileTrigger(filepath="")


# --- HttpTrigger --------------------------------------------------------------------------------


class WarmingUpServer(ThreadingHTTPServer):
    """503 twice, then 200 "warming up", then 200 with the body the trigger waits for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), WarmingUpHandler)
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/status"


class WarmingUpHandler(BaseHTTPRequestHandler):
    server: WarmingUpServer

    def _answer(self) -> None:
        self.server.requests.append((self.command, self.headers.get("X-Probe")))
        count = len(self.server.requests)
        status, body = (
            (503, "unavailable") if count <= 2 else (200, "warming up" if count == 3 else "READY " * 3000)
        )
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[WarmingUpServer]:
    server = WarmingUpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_http_trigger_waits_for_the_status_and_the_text(http_server: WarmingUpServer) -> None:
    trigger = HttpTrigger(
        url=http_server.url,
        method="post",
        headers={"X-Probe": "airlock"},
        response_contains="READY",
        poll_interval=FAST,
    )
    event = await first_event(trigger)
    # The status only: the body was read to find the text, and is not kept.
    assert event.payload == {"status": 200}
    assert http_server.requests == [("POST", "airlock")] * 4


async def test_http_trigger_keeps_a_bounded_excerpt_when_asked(http_server: WarmingUpServer) -> None:
    trigger = HttpTrigger(
        url=http_server.url, response_contains="READY", response_excerpt_bytes=10_000, poll_interval=FAST
    )
    event = await first_event(trigger)
    assert event.payload == {"status": 200, "body": ("READY " * 3000)[:10_000]}


async def test_http_trigger_accepts_a_list_of_statuses(http_server: WarmingUpServer) -> None:
    event = await first_event(
        HttpTrigger(url=http_server.url, expected_status=[503, 204], poll_interval=FAST)
    )
    assert event.payload == {"status": 503}
    assert len(http_server.requests) == 1


async def test_http_trigger_keeps_polling_through_connection_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = secret_scan.password()
    trigger = HttpTrigger(url=f"http://user:{secret}@127.0.0.1:{closed_port()}/", request_timeout=2)
    with caplog.at_level(logging.WARNING, logger=trigger.log.name):
        assert await trigger.poll() is None
    [record] = caplog.records
    assert "will retry" in record.getMessage() and "ConnectError" in record.getMessage()
    assert secret not in record.getMessage()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://example.com"}, "http:// or https://"),
        ({"url": "http://x", "method": "BREW"}, "unsupported HTTP method"),
        ({"url": "http://x", "headers": {"a": 1}}, "headers must be"),
        ({"url": "http://x", "expected_status": "200"}, "expected_status"),
        ({"url": "http://x", "expected_status": [200, 700]}, "expected_status"),
        ({"url": "http://x", "request_timeout": 0}, "request_timeout"),
        ({"url": "http://x", "response_contains": 5}, "response_contains"),
        ({"url": "http://x", "response_excerpt_bytes": 10_001}, "response_excerpt_bytes"),
        ({"url": "http://x", "response_excerpt_bytes": -1}, "response_excerpt_bytes"),
        ({"url": "http://x", "response_excerpt_bytes": True}, "response_excerpt_bytes"),
        ({"url": "http://x", "headers": {"Host": "internal"}}, "header 'Host' may not be set"),
    ],
)
def test_http_trigger_validates_its_kwargs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpTrigger(**kwargs)


# --- SqlTrigger ---------------------------------------------------------------------------------


def sql_trigger(conn: ConnectionFields, sql: str, parameters: Any = None) -> tuple[SqlTrigger, StaticContext]:
    context = StaticContext({"warehouse": conn})
    trigger = SqlTrigger(conn_id="warehouse", sql=sql, parameters=parameters, poll_interval=FAST)
    trigger.context = context
    return trigger, context


@pytest.fixture
def postgres_table() -> Iterator[tuple[ConnectionFields, str]]:
    url = services.postgres_url()
    table = f"trigger_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"create table {table} (id int, done boolean)")
    try:
        yield ConnectionFields.from_uri(url), table
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"drop table if exists {table}")


async def test_sql_trigger_on_postgres(postgres_table: tuple[ConnectionFields, str]) -> None:
    conn, table = postgres_table
    trigger, context = sql_trigger(conn, f"select count(*) from {table} where done and id = %s", [7])

    def finish() -> None:
        with psycopg.connect(services.postgres_url(), autocommit=True) as db:
            db.execute(f"insert into {table} values (7, false), (7, true)")

    started = time.monotonic()
    inserter = asyncio.create_task(later(0.3, finish))
    event = await first_event(trigger)
    await inserter
    assert time.monotonic() - started >= 0.3
    assert event == TriggerEvent({"value": 1})
    # Several polls, one connection lookup.
    assert context.lookups == ["warehouse"]


@pytest.fixture
def mariadb_table() -> Iterator[tuple[ConnectionFields, str]]:
    conn = ConnectionFields.from_uri(services.mariadb_url())
    table = f"trigger_{uuid.uuid4().hex[:10]}"

    def execute(sql: str) -> None:
        db = pymysql.connect(
            host=conn.host,
            port=conn.port or 3306,
            user=conn.login,
            password=conn.password or "",
            database=conn.schema_,
            autocommit=True,
        )
        try:
            with db.cursor() as cursor:
                cursor.execute(sql)
        finally:
            db.close()

    execute(f"create table {table} (amount decimal(10, 2))")
    try:
        yield conn, table
    finally:
        execute(f"drop table if exists {table}")


async def test_sql_trigger_on_mariadb(mariadb_table: tuple[ConnectionFields, str]) -> None:
    conn, table = mariadb_table
    # The "mariadb" spelling of the conn_type selects the same driver as "mysql".
    trigger, context = sql_trigger(
        conn.model_copy(update={"conn_type": "mariadb"}), f"select sum(amount) from {table}"
    )

    def insert() -> None:
        db = pymysql.connect(
            host=conn.host,
            port=conn.port or 3306,
            user=conn.login,
            password=conn.password or "",
            database=conn.schema_,
            autocommit=True,
        )
        try:
            with db.cursor() as cursor:
                cursor.execute(f"insert into {table} values (1.25), (0.75)")
        finally:
            db.close()

    inserter = asyncio.create_task(later(0.3, insert))
    event = await first_event(trigger)
    await inserter
    # SUM over DECIMAL is a Decimal; the payload carries plain JSON.
    assert event == TriggerEvent({"value": 2})
    assert context.lookups == ["warehouse"]


async def test_sql_trigger_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:
        db.execute("create table jobs (name text, state text)")
        db.execute("insert into jobs values ('load', '')")
    db.close()
    trigger, context = sql_trigger(
        fields(conn_type="sqlite", host=str(path)),
        "select state from jobs where name = :name",
        {"name": "load"},
    )

    def finish() -> None:
        with sqlite3.connect(path) as db:
            db.execute("update jobs set state = 'done' where name = 'load'")
        db.close()

    inserter = asyncio.create_task(later(0.3, finish))
    event = await first_event(trigger)
    await inserter
    assert event == TriggerEvent({"value": "done"})
    assert context.lookups == ["warehouse"]


async def test_sql_trigger_waits_for_a_sqlite_file_that_does_not_exist_yet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later.db"
    # schema is the other place a sqlite connection may keep its path.
    trigger, _ = sql_trigger(fields(conn_type="sqlite", schema=str(path)), "select count(*) from t")

    def create() -> None:
        with sqlite3.connect(path) as db:
            db.execute("create table t (x int)")
            db.execute("insert into t values (1)")
        db.close()

    creator = asyncio.create_task(later(0.3, create))
    with caplog.at_level(logging.WARNING, logger=trigger.log.name):
        event = await first_event(trigger)
    await creator
    assert event.payload == {"value": 1}
    assert any("unable to open database file" in r.getMessage() for r in caplog.records)


async def test_sql_trigger_logs_and_retries_when_postgres_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = secret_scan.password("pw-")
    port = closed_port()
    conn = fields(conn_type="postgres", host="127.0.0.1", port=port, password=secret)
    trigger, context = sql_trigger(conn, "select 1")
    with caplog.at_level(logging.WARNING, logger=trigger.log.name):
        assert await trigger.poll() is None
        assert await trigger.poll() is None
    # This trigger's lines: an earlier test's query, ending late in its thread, logs under the same name.
    mine = [r for r in caplog.records if f"port {port} failed" in r.getMessage()]
    assert len(mine) == 2, caplog.text
    assert "cannot query connection 'warehouse', will retry" in mine[0].getMessage()
    assert secret not in caplog.text
    assert context.lookups == ["warehouse"]


async def test_sql_trigger_fails_on_an_unsupported_conn_type() -> None:
    trigger, _ = sql_trigger(fields(conn_type="redis", host="localhost"), "select 1")
    with pytest.raises(ValueError, match="does not support conn_type 'redis'"):
        await first_event(trigger)


async def test_sql_trigger_fails_on_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).close()
    trigger, _ = sql_trigger(fields(conn_type="sqlite", host=str(path)), "selec nothing")
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        await first_event(trigger)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conn_id": "", "sql": "select 1"}, "conn_id"),
        ({"conn_id": "c", "sql": "  "}, "sql must be"),
        ({"conn_id": "c", "sql": "select 1", "parameters": "x"}, "parameters must be"),
        ({"conn_id": "c", "sql": "select 1", "parameters": {1: 2}}, "parameters must be"),
    ],
)
def test_sql_trigger_validates_its_kwargs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SqlTrigger(**kwargs)


def test_first_cell_rules() -> None:
    for falsy in (None, 0, "0", "", False, Decimal(0), 0.0, b"\x00", b""):
        assert not is_truthy(falsy), falsy
    for truthy in (1, "1", "false", True, Decimal("0.1"), b"\x01", [0]):
        assert is_truthy(truthy), truthy
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert json_friendly(Decimal("3")) == 3 and json_friendly(Decimal("2.5")) == 2.5
    assert json_friendly(at) == "2024-01-01T00:00:00+00:00"
    assert json_friendly(b"abc") == "abc" and json_friendly(b"\xff") == "ff"
    assert json_friendly(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_friendly({"a": (Decimal("1.5"), timedelta(seconds=2))}) == {"a": [1.5, 2.0]}


# --- time triggers ------------------------------------------------------------------------------

CREATED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_time_delta_fire_at() -> None:
    assert TimeDeltaTrigger.fire_at({"delta": 90}, CREATED) == CREATED + timedelta(seconds=90)
    assert TimeDeltaTrigger.fire_at({"delta": 0.25}, CREATED) == CREATED + timedelta(milliseconds=250)
    assert TimeDeltaTrigger.fire_at({"delta": {"seconds": 30}}, CREATED) == CREATED + timedelta(seconds=30)
    assert TimeDeltaTrigger.fire_at({"delta": {"hours": 1, "minutes": 1}}, CREATED) == CREATED + timedelta(
        minutes=61
    )
    assert TimeDeltaTrigger.fire_at({"delta": timedelta(days=1)}, CREATED) == CREATED + timedelta(days=1)
    # An offset created_at gives the same instant, expressed in UTC.
    local = CREATED.astimezone(timezone(timedelta(hours=2)))
    due = TimeDeltaTrigger.fire_at({"delta": 60}, local)
    assert due == CREATED + timedelta(minutes=1) and due.tzinfo is UTC


def test_date_time_fire_at() -> None:
    assert DateTimeTrigger.fire_at({"moment": "2030-01-01T00:00:00Z"}, CREATED) == datetime(
        2030, 1, 1, tzinfo=UTC
    )
    due = DateTimeTrigger.fire_at({"moment": "2030-01-01T02:00:00+02:00"}, CREATED)
    assert due == datetime(2030, 1, 1, tzinfo=UTC) and due.tzinfo is UTC
    moment = datetime(2030, 6, 1, 8, tzinfo=timezone(timedelta(hours=-4)))
    assert DateTimeTrigger.fire_at({"moment": moment}, CREATED) == datetime(2030, 6, 1, 12, tzinfo=UTC)
    # A moment in the past is due at once; the workflow's timer handles that.
    assert DateTimeTrigger.fire_at({"moment": "2000-01-01T00:00:00+00:00"}, CREATED) < CREATED


def test_time_trigger_fire_at_by_classpath() -> None:
    assert due_moment(TIMEDELTA_TRIGGER, {"delta": 5}, CREATED) == CREATED + timedelta(seconds=5)
    assert due_moment(DATETIME_TRIGGER, {"moment": "2030-01-01T00:00:00Z"}, CREATED) is not None
    assert due_moment("mypkg.triggers.Sensor", {"delta": 5}, CREATED) is None


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (TimeDeltaTrigger, {}, "needs 'delta'"),
        (TimeDeltaTrigger, {"delta": 5, "extra": 1}, "unexpected: extra"),
        (TimeDeltaTrigger, {"delta": -1}, "must not be negative"),
        (TimeDeltaTrigger, {"delta": True}, "delta must be seconds"),
        (TimeDeltaTrigger, {"delta": "60"}, "delta must be seconds"),
        (TimeDeltaTrigger, {"delta": float("nan")}, "finite"),
        (TimeDeltaTrigger, {"delta": {"fortnights": 1}}, "keys must be among"),
        (TimeDeltaTrigger, {"delta": {}}, "keys must be among"),
        (TimeDeltaTrigger, {"delta": {"seconds": "5"}}, "finite numbers"),
        (TimeDeltaTrigger, {"delta": {"days": 10**9}}, "too large"),
        (DateTimeTrigger, {}, "needs 'moment'"),
        (DateTimeTrigger, {"moment": "2030-01-01T00:00:00"}, "no timezone"),
        (DateTimeTrigger, {"moment": datetime(2030, 1, 1)}, "no timezone"),
        (DateTimeTrigger, {"moment": "next tuesday"}, "not an ISO-8601"),
        (DateTimeTrigger, {"moment": 1_700_000_000}, "ISO-8601 string or a datetime"),
    ],
)
def test_time_trigger_kwargs_are_validated(cls: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls.fire_at(kwargs, CREATED)
    if not ({"extra"} & kwargs.keys()) and kwargs:
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)


def test_fire_at_needs_an_aware_created_at() -> None:
    with pytest.raises(ValueError, match=r"created_at .* has no timezone"):
        TimeDeltaTrigger.fire_at({"delta": 1}, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="past the last representable date"):
        TimeDeltaTrigger.fire_at({"delta": {"days": 2}}, datetime(9999, 12, 31, tzinfo=UTC))


async def test_time_triggers_also_run_on_a_triggerer() -> None:
    started = datetime.now(UTC)
    event = await first_event(TimeDeltaTrigger(delta=0.2))
    assert datetime.now(UTC) - started >= timedelta(seconds=0.2)
    assert datetime.fromisoformat(event.payload["moment"]) >= started + timedelta(seconds=0.2)

    delta = TimeDeltaTrigger(delta={"seconds": 0.05})
    # When the runner knows the task deferred long ago, the delta has already run out.
    delta.created_at = started - timedelta(hours=1)
    event = await first_event(delta, timeout=1)
    assert event.payload == {"moment": (started - timedelta(hours=1) + timedelta(seconds=0.05)).isoformat()}

    event = await first_event(DateTimeTrigger(moment="2001-02-03T04:05:06+00:00"), timeout=1)
    assert event == TriggerEvent({"moment": "2001-02-03T04:05:06+00:00"})


SANDBOX_WORKFLOW = """
from datetime import datetime

from temporalio import workflow

from airlock.timers import due_moment
from airlock.triggers import TIMEDELTA_TRIGGER


@workflow.defn(sandboxed=True)
class FireAtWorkflow:
    @workflow.run
    async def run(self, delta: float) -> str:
        due = due_moment(TIMEDELTA_TRIGGER, {"delta": delta}, workflow.now())
        await workflow.sleep(due - workflow.now())
        return due.isoformat()
"""


@pytest.fixture
def sandbox_workflow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Its own module, so the sandbox imports only it and airlock.timers, not this test file.
    name = f"sandbox_fire_at_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SANDBOX_WORKFLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


async def test_time_triggers_import_inside_the_workflow_sandbox(sandbox_workflow_module: Any) -> None:
    workflow_cls = sandbox_workflow_module.FireAtWorkflow
    async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER) as env:
        client: Client = env.client
        queue = f"sandbox-{uuid.uuid4().hex[:6]}"
        # The default runner is the sandboxed one: it re-imports the module, and airlock.timers with it,
        # under the sandbox's restrictions.
        async with Worker(client, task_queue=queue, workflows=[workflow_cls]):
            result = await client.execute_workflow(
                workflow_cls.run, 3600.0, id=f"fire-at-{uuid.uuid4().hex[:6]}", task_queue=queue
            )
    assert datetime.fromisoformat(result).tzinfo is not None
