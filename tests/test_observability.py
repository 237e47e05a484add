"""What operators read: the processes' logs (one setup, JSON lines on demand, every line about a test or
trigger naming it, its queue and its worker, no secret) and the Temporal UI's view of each workflow
(summary, details, current details, and a failed test shown as failed)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog.testing
from google.protobuf import json_format
from sqlalchemy import create_engine, text
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from airlock import search_attributes
from airlock.codec import ENCODING, master_codec
from airlock.protocol import CONNECTION_TEST_FAILED_ERROR, connection_test_workflow_id, trigger_workflow_id
from airlock.summaries import shorten, target_of
from airlock.triggers import TIMEDELTA_TRIGGER
from api.db.session import sync_url
from api.temporal.client import connect, ensure_search_attributes
from tests import secret_scan
from tests.secret_scan import Scanner
from tests.stack import Stack, started, unique, wait_terminal
from tests.test_triggers import FILE_TRIGGER, TEST_ALLOWLIST, defer, wait_trigger
from tests.test_triggers_classes import TEST_SERVER

ANSI = re.compile(r"\x1b\[")
LEAKY_TRIGGER = "tests.secret_scan.LeakyTrigger"
METADATA_QUERY = "__temporal_workflow_metadata"


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log, parsed: a line that is not a JSON object fails the test."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), (path.name, number, line)
        entries.append(entry)
    return entries


def about(entries: list[dict[str, Any]], ident: str) -> list[dict[str, Any]]:
    """The lines that mention ``ident`` anywhere (a path, a message, a field)."""
    return [e for e in entries if ident in json.dumps(e)]


def worker_logs(log_dir: Path) -> dict[str, Path]:
    """Each worker's log file by the queue it serves (read from its "worker started" line)."""
    found = {}
    for path in log_dir.glob("worker-*.log"):
        for line in path.read_text().splitlines():
            if "worker started" in line:
                queues = (
                    json.loads(line)["queues"] if line.startswith("{") else re.findall(r"'([^']+)'", line)
                )
                for queue in queues:
                    found[queue] = path
    return found


def assert_named(entries: list[dict[str, Any]], key: str, ident: str, queue: str, where: str) -> None:
    lines = about(entries, ident)
    assert lines, f"{where}: no line about {ident}"
    for entry in lines:
        assert entry.get(key) == ident, (where, entry)
        assert entry.get("queue") == queue, (where, entry)
        assert "worker" in entry, (where, entry)


async def test_every_line_about_a_test_or_trigger_names_it_its_queue_and_worker(
    make_process_stack, tmp_path: Path
) -> None:
    """`airlock api`, a worker and a triggerer with AIRLOCK_LOG_FORMAT=json: every line of each log
    is a JSON object; the lifecycle is logged at INFO; no password or trigger secret is in any line.
    A worker left on the console format writes plain lines, without colour codes."""
    stack: Stack = await make_process_stack(env={"AIRLOCK_LOG_FORMAT": "json"})
    queue, console_queue, triggers = unique("net"), unique("plain"), unique("trig")
    await stack.start_worker(queue, name="json-worker", AIRLOCK_LOG_FORMAT="json")
    await stack.start_worker(console_queue, name="console-worker")
    await stack.start_worker(
        triggers,
        name="json-triggerer",
        AIRLOCK_LOG_FORMAT="json",
        AIRLOCK_TRIGGERER="true",
        AIRLOCK_TRIGGER_ALLOWLIST=f"{TEST_ALLOWLIST},tests.secret_scan.*",
    )
    identities = {q: (await stack.wait_worker(q))["hostname"] for q in (queue, console_queue, triggers)}
    password = secret_scan.password("Pw-")
    trigger_password = secret_scan.trigger_secret()
    flag = tmp_path / "go.flag"
    async with stack.client() as client:
        tests: dict[str, str] = {}
        for uri, on in (
            (f"tcp://127.0.0.1:{stack.api.port}", queue),
            (f"postgres://alice:{quote(password)}@127.0.0.1:1/db", queue),
            (f"tcp://127.0.0.1:{stack.api.port}", console_queue),
        ):
            r = await client.post("/api/v2/connections/test", json={"uri": uri, "queue": on})
            assert r.status_code == 202, r.text
            tests[r.json()["id"]] = on
        results = {test_id: await wait_terminal(client, test_id) for test_id in tests}
        fired = await defer(
            client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=triggers
        )
        leaky = await defer(client, LEAKY_TRIGGER, {"password": trigger_password}, queue=triggers)
        flag.write_text("go")
        ends = {ti["trigger_id"]: await wait_trigger(client, ti["trigger_id"]) for ti in (fired, leaky)}
        # The Temporal UI's decode path carries the codec token: the access log hides it.
        codec_path = f"/codec/ui/{stack.secrets.codec_token}/decode"
        assert (await client.post(codec_path, json={"payloads": []})).status_code == 200
    assert [r["state"] for r in results.values()] == ["success", "failed", "success"]
    assert [t["state"] for t in ends.values()] == ["fired", "failed"]
    stack.stop_workers()
    await stack.api.stop()

    logs = worker_logs(tmp_path)
    api = json_lines(tmp_path / "api.log")
    worker, triggerer = json_lines(logs[queue]), json_lines(logs[triggers])
    for name, path in (("api", tmp_path / "api.log"), *logs.items()):
        content = path.read_text()
        for secret in (password, trigger_password, quote(password), stack.secrets.codec_token):
            assert secret not in content, name
    decode = [e for e in api if e["logger"] == "uvicorn.access" and "/codec/ui/" in e["event"]]
    assert [e["event"].split('"')[1] for e in decode] == ["POST /codec/ui/***/decode HTTP/1.1"], decode
    # Tests: the API logs every step, the worker its part; each line names the test, queue, worker.
    json_tests = [t for t, q in tests.items() if q == queue]
    for test_id in json_tests:
        assert_named(api, "test_id", test_id, queue, "api.log")
        assert_named(worker, "test_id", test_id, queue, "worker log")
        events = [e["event"] for e in about(api, test_id) if e["logger"] != "uvicorn.access"]
        assert events == [
            "connection test submitted",
            "connection test queued",
            "connection test running",
            "connection test finished",
        ], events
        running, finished = (e for e in about(worker, test_id) if e["logger"] == "activities.connection_test")
        assert running["event"] == "connection test running" and running["worker"] == identities[queue]
        assert finished["event"] == "connection test finished"
        assert finished["outcome"] == results[test_id]["state"]
        assert finished["message"] == results[test_id]["result_message"]
        # The access log is on, and its lines about the test name it as well.
        access = [e for e in about(api, test_id) if e["logger"] == "uvicorn.access"]
        paths = {(e["method"], e["path"].replace(test_id, "{id}")) for e in access}
        # (A worker claims its test, which marks it running and hands it the connection, in one call.)
        assert {
            ("GET", "/api/v2/connections/test/{id}"),
            ("POST", "/execution/connection-tests/{id}/claim"),
        } <= paths, paths
    api_finished = [e for e in api if e["event"] == "connection test finished" and e["test_id"] in json_tests]
    assert [e["worker"] for e in api_finished] == [identities[queue]] * 2
    # Triggers: created, dispatched, claimed, fired or failed, on both sides.
    for trigger_id, outcome in zip(ends, ("trigger fired", "trigger failed"), strict=True):
        assert_named(api, "trigger_id", trigger_id, triggers, "api.log")
        assert_named(triggerer, "trigger_id", trigger_id, triggers, "triggerer log")
        api_events = [e["event"] for e in about(api, trigger_id) if e["logger"] != "uvicorn.access"]
        assert api_events[:4] == [
            "trigger created",
            "trigger dispatched to its queue",
            "trigger claimed",
            outcome,
        ]
        own = [e for e in about(triggerer, trigger_id) if e["logger"] == "activities.trigger_run"]
        assert [e["event"] for e in own] == ["trigger claimed", outcome]
        assert {e["worker"] for e in own} == {identities[triggers]}
    leaked = [e for e in about(triggerer, leaky["trigger_id"]) if e["logger"] == LEAKY_TRIGGER]
    assert any("with password ***" in e["event"] for e in leaked), leaked
    # The console format: readable key=value lines, no colour codes in a file.
    plain = logs[console_queue].read_text()
    assert not ANSI.search(plain)
    [console_test] = [t for t, q in tests.items() if q == console_queue]
    finished_line = next(line for line in plain.splitlines() if "connection test finished" in line)
    assert f"test_id={console_test}" in finished_line and f"queue={console_queue}" in finished_line
    assert f"worker={identities[console_queue]}" in finished_line and "outcome=success" in finished_line


SCRUB_SCRIPT = """
import asyncio, logging, sys
import structlog
from airlock.logging import configure_logging, hide_in_logs

secret, later_path = sys.argv[1], sys.argv[2]
configure_logging("json", "INFO")


async def trigger_task():
    hide_in_logs(secret)
    # A handler added after the setup, and after the secret was named: it must not see it either.
    later = logging.FileHandler(later_path)
    later.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(later)
    logging.getLogger("plugin.trigger").info("connecting with %s", secret)
    try:
        raise PermissionError(f"{secret} was refused")
    except PermissionError:
        logging.getLogger("plugin.trigger").exception("failed")
        structlog.get_logger("plugin.struct").exception("failed too", password=secret)


async def other_task():
    logging.getLogger("plugin.other").info("elsewhere: %s", "in plain sight")


async def main():
    await asyncio.gather(trigger_task(), other_task())

asyncio.run(main())
"""


def test_hidden_secrets_reach_no_handler_not_even_one_added_later(tmp_path: Path) -> None:
    """A trigger's secrets are scrubbed from every record as it is made: the process's own JSON
    handler and a FileHandler created afterwards both show ``***``, tracebacks included; another
    task's lines are left alone."""
    secret = secret_scan.trigger_secret()
    later, own = tmp_path / "later-handler.log", tmp_path / "own-handler.log"
    with open(own, "wb") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", SCRUB_SCRIPT, secret, str(later)], stderr=stderr, timeout=60, check=False
        )
    assert done.returncode == 0, own.read_text()
    for path in (own, later):
        content = path.read_text()
        assert secret not in content, path.name
        assert "connecting with ***" in content and "PermissionError: *** was refused" in content, content
        assert "elsewhere: in plain sight" in content, content
    entries = json_lines(own)
    struct = next(e for e in entries if e["event"] == "failed too")
    assert struct["password"] == "***" and "PermissionError: *** was refused" in struct["exception"]
    assert "PermissionError: *** was refused" in later.read_text().split("failed too", 1)[1]


async def metadata(handle: WorkflowHandle[Any, Any]) -> tuple[str | None, str | None, str]:
    """What the Temporal UI shows: static summary and details (describe), current details (query)."""
    description = await started(handle)
    current = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return await description.static_summary(), await description.static_details(), current.current_details


async def list_ids(client: Client, query: str, expected: int, timeout: float = 20) -> set[str]:
    """Visibility lags a little behind the close: poll until ``expected`` workflows match."""
    ids: set[str] = set()
    for _ in range(int(timeout * 10)):
        ids = {execution.id async for execution in client.list_workflows(query)}
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.1)
    return ids


async def test_temporal_ui_names_each_test_and_shows_failed_ones_failed(make_stack, dev_secrets) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue()
    password = secret_scan.password("Pw-")
    port = stack.api.port
    async with stack.client() as client:
        bodies = {
            "ok": {"uri": f"tcp://127.0.0.1:{port}"},
            "refused": {"uri": f"postgres://alice:{quote(password)}@127.0.0.1:1/db"},
            # A host field with userinfo, a path and a query: none of it is a target to show.
            "url host": {
                "conn_type": "http",
                "host": f"http://bob:{quote(password)}@127.0.0.1:1/hooks/T0/B0?token={quote(password)}",
                "login": "bob",
                "password": password,
            },
        }
        ids = {}
        for name, body in bodies.items():
            r = await client.post("/api/v2/connections/test", json={**body, "queue": queue, "timeout": 10})
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
        results = {name: await wait_terminal(client, test_id) for name, test_id in ids.items()}
    assert [r["state"] for r in results.values()] == ["success", "failed", "failed"], results
    temporal = await connect(stack.settings)
    shown = {
        name: await metadata(temporal.get_workflow_handle(connection_test_workflow_id(i)))
        for name, i in ids.items()
    }

    summary, details, current = shown["ok"]
    assert summary == f"connection test: tcp 127.0.0.1:{port} on queue {queue}"
    assert details is not None and details.splitlines() == [
        "kind: connection test",
        f"test: {ids['ok']}",
        "conn_type: tcp",
        f"target: 127.0.0.1:{port}",
        f"queue: {queue}",
        "connection: (unsaved fields)",
        "timeout: 10 s",
    ]
    assert current == f"**success**\n{results['ok']['result_message']}"
    assert shown["refused"][0] == f"connection test: postgres 127.0.0.1:1 on queue {queue}"
    assert shown["refused"][2] == f"**failed**\n{results['refused']['result_message']}"
    assert shown["url host"][0] == f"connection test: http http://127.0.0.1:1 on queue {queue}"
    for name, (static_summary, static_details, current_details) in shown.items():
        # The outcome message is the tester's (scrubbed by the worker); the rest is the API's.
        for shown_text, hidden in (
            (static_summary, (password, quote(password), "alice", "bob", "hooks", "token")),
            (static_details, (password, quote(password), "alice", "bob", "hooks", "token")),
            (current_details, (password, quote(password), "alice", "bob")),
        ):
            assert shown_text, name
            for part in hidden:
                assert part not in shown_text, (name, shown_text)

    # A failed test's workflow fails (the UI's Failed filter finds it), with the outcome as its cause.
    statuses = {
        n: (await temporal.get_workflow_handle(connection_test_workflow_id(i)).describe()).status
        for n, i in ids.items()
    }
    assert statuses == {
        "ok": WorkflowExecutionStatus.COMPLETED,
        "refused": WorkflowExecutionStatus.FAILED,
        "url host": WorkflowExecutionStatus.FAILED,
    }
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal.get_workflow_handle(connection_test_workflow_id(ids["refused"])).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == CONNECTION_TEST_FAILED_ERROR
    assert cause.message == results["refused"]["result_message"]
    assert cause.details[0]["message"] == results["refused"]["result_message"]
    failed = await list_ids(temporal, f"AirlockQueue = '{queue}' AND ExecutionStatus = 'Failed'", expected=2)
    assert failed == {
        connection_test_workflow_id(ids["refused"]),
        connection_test_workflow_id(ids["url host"]),
    }

    # User metadata goes through the payload codec: without the key, the UI sees ciphertext.
    raw = await Client.connect(stack.temporal_address)
    handle = raw.get_workflow_handle(connection_test_workflow_id(ids["refused"]))
    user_metadata = (await handle.describe()).raw_description.execution_config.user_metadata
    assert user_metadata.summary.metadata["encoding"] == ENCODING
    assert user_metadata.details.metadata["encoding"] == ENCODING
    # The UI shows it through the API's decode-only codec endpoint, as `make dev` configures it.
    body = json_format.MessageToDict(Payloads(payloads=[user_metadata.summary]))
    async with httpx.AsyncClient(base_url=stack.api.url) as ui:
        decoded = await ui.post(f"/codec/ui/{stack.secrets.codec_token}/decode", json=body)
    assert decoded.status_code == 200, decoded.text
    plain = base64.b64decode(decoded.json()["payloads"][0]["data"])
    assert json.loads(plain) == shown["refused"][0]
    started = (await handle.fetch_history()).events[0]
    assert started.user_metadata.summary.metadata["encoding"] == ENCODING
    answer = await raw.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace=stack.settings.temporal_namespace,
            execution=WorkflowExecution(workflow_id=handle.id),
            query=WorkflowQuery(query_type=METADATA_QUERY),
        )
    )
    assert answer.query_result.payloads[0].metadata["encoding"] == ENCODING
    # And the histories (decoded with the key: user metadata among the payloads) hold no secret.
    scanner = Scanner()
    scanner.register(password, secret_scan.PASSWORD)
    codec = master_codec("k1", dev_secrets.payload_key)
    for test_id in ids.values():
        assert await scanner.scan_temporal(raw, codec, only_prefix=connection_test_workflow_id(test_id)) == []


async def test_temporal_ui_names_each_trigger_and_its_state(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = unique("trig")
    await stack.start_worker(
        queue,
        name="triggerer",
        AIRLOCK_TRIGGERER="true",
        AIRLOCK_TRIGGER_ALLOWLIST=f"{TEST_ALLOWLIST},tests.secret_scan.*",
    )
    await stack.wait_worker(queue)
    secret = secret_scan.trigger_secret()
    flag = tmp_path / "ready.flag"
    async with stack.client() as client:
        timer = await defer(client, TIMEDELTA_TRIGGER, {"delta": 1})
        on_file = await defer(
            client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=queue
        )
        leaky = await defer(client, LEAKY_TRIGGER, {"password": secret}, queue=queue)
        temporal = await connect(stack.settings)
        while (await client.get(f"/api/v2/triggers/{on_file['trigger_id']}")).json()["state"] != "running":
            await asyncio.sleep(0.05)
        waiting = await metadata(temporal.get_workflow_handle(trigger_workflow_id(on_file["trigger_id"])))
        flag.write_text("go")
        ends = {
            name: await wait_trigger(client, ti["trigger_id"])
            for name, ti in (("timer", timer), ("file", on_file), ("leaky", leaky))
        }
    assert [t["state"] for t in ends.values()] == ["fired", "fired", "failed"]
    shown = {
        name: await metadata(temporal.get_workflow_handle(trigger_workflow_id(t["id"])))
        for name, t in ends.items()
    }

    summary, details, current = shown["file"]
    assert summary == f"trigger: {FILE_TRIGGER} (on queue {queue})"
    assert details is not None and f"classpath: {FILE_TRIGGER}" in details and f"queue: {queue}" in details
    assert current == f"**fired**\non a triggerer of queue {queue!r}"
    # While it waited, it said where it ran.
    assert waiting[2].startswith("**") and queue in waiting[2], waiting
    assert shown["timer"][0].startswith(f"trigger: {TIMEDELTA_TRIGGER} (timer, fires at ")
    assert shown["timer"][2].startswith("**fired**\nthe timer fired at ")
    assert shown["leaky"][2] == f"**failed**\n{shorten(ends['leaky']['failure'].splitlines()[0])}"
    assert "***" in shown["leaky"][2]
    for name, texts in shown.items():
        for shown_text in texts:
            assert shown_text and secret not in shown_text, (name, shown_text)


async def test_reaper_records_the_outcome_a_closed_workflow_carries(make_stack) -> None:
    """When the API could not record an outcome, the reaper reads it from Temporal: a successful test's
    workflow completed with it, a failed test's workflow failed with it in its details."""
    stack = await make_stack(connection_test_reaper_interval=3600)
    queue = await stack.serve_queue()
    async with stack.client() as client:
        ids = []
        for uri in (f"tcp://127.0.0.1:{stack.api.port}", "tcp://127.0.0.1:1"):
            r = await client.post("/api/v2/connections/test", json={"uri": uri, "queue": queue})
            ids.append(r.json()["id"])
        before = [await wait_terminal(client, test_id) for test_id in ids]
        assert [b["state"] for b in before] == ["success", "failed"]
        # The reaper only judges closed workflows: recording the outcome is not quite their last step.
        temporal = await connect(stack.settings)
        for test_id in ids:
            handle = temporal.get_workflow_handle(connection_test_workflow_id(test_id))
            for _ in range(100):
                if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                    break
                await asyncio.sleep(0.1)

        def lose_the_write() -> None:
            # Back to running, as if the API had never recorded them. In a thread: the API serves from
            # this event loop, and a blocked loop would keep SQLite's write lock from being released.
            engine = create_engine(sync_url(stack.settings.database_url))
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE connection_test SET state = 'running', result_message = NULL, "
                        "finished_at = NULL WHERE id IN (:a, :b)"
                    ),
                    {"a": ids[0], "b": ids[1]},
                )
            engine.dispose()

        await asyncio.to_thread(lose_the_write)
        assert await stack.reaper().reap_once(older_than=0) == 2
        after = [(await client.get(f"/api/v2/connections/test/{test_id}")).json() for test_id in ids]
    for old, new in zip(before, after, strict=True):
        assert (new["state"], new["result_message"]) == (old["state"], old["result_message"])


@pytest.mark.parametrize(
    ("host", "port", "shown"),
    [
        ("db.internal", 5432, "db.internal:5432"),
        ("alice:pw@db.internal", None, "db.internal"),
        ("https://u:pw@hooks.example.com/services/T0/B0/XYZ?token=abc", None, "https://hooks.example.com"),
        ("https://hooks.example.com:8443/path", None, "https://hooks.example.com:8443"),
        ("http://[broken", None, "http://"),
        ("/var/lib/app.db?mode=ro", None, "/var/lib/app.db"),
        (None, None, "?"),
    ],
)
def test_a_target_is_shown_without_credentials_paths_or_queries(
    host: str | None, port: int | None, shown: str
) -> None:
    assert target_of(host, port) == shown


@pytest.mark.parametrize(
    ("variable", "value"), [("AIRLOCK_LOG_FORMAT", "xml"), ("AIRLOCK_LOG_LEVEL", "loud")]
)
def test_a_bad_logging_setting_is_a_clear_usage_error(variable: str, value: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}, variable: value}
    for command in ("worker", "api"):
        done = subprocess.run(
            [sys.executable, "-m", "airlock.cli", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert f"invalid configuration: {variable}: Input should be" in done.stderr, done.stderr


async def test_a_namespace_whose_operator_api_is_closed_to_the_api_still_starts_it() -> None:
    """Temporal Cloud manages search attributes itself and the time-skipping test server has no operator
    API at all: the API names the attributes the namespace needs instead of failing to start."""
    async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER) as env:
        with structlog.testing.capture_logs() as logs:
            await ensure_search_attributes(env.client, env.client.namespace)
    [warning] = [line for line in logs if "search attributes" in line["event"]]
    assert warning["log_level"] == "warning"
    assert warning["names"] == [key.name for key in search_attributes.ALL]
