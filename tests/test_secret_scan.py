"""The secret scan's own tests: it finds a planted leak in each kind of place it watches (a response,
a log, a workflow history), so a clean session scan means something; and the less obvious leaks it
led to (the codec token in the access log, a failing trigger's error and logs, driver errors, the
CLI, ``repr()``) stay fixed."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import structlog
from sqlalchemy.engine import make_url
from temporalio.client import Client

from airlock.codec import make_data_converter, master_codec
from airlock.connection import ConnectionFields
from api.core.config import Settings
from tests import secret_scan, services
from tests.secret_scan import NOT_TOKENS, PASSWORD, PLANTED_HEADER, PLANTED_PREFIX, TOKEN, Scanner
from tests.stack import unique, wait_terminal
from tests.test_triggers import defer, wait_trigger
from worker.config import WorkerSettings

# A marker of their own: what these tests plant is invisible to the session's scan.
PLANTED_MARKER = "Pl" + "AnTeD" + "k4R"


def planted() -> Scanner:
    return Scanner(marker=PLANTED_MARKER)


def test_every_form_of_a_secret_is_found_and_nothing_else() -> None:
    scanner = planted()
    password = scanner.new(PASSWORD, around="p@ss/w%rd-")
    text = {
        "raw": f"connecting with {password}",
        "quoted": f"dsn=postgres://u:{quote(password, safe='')}@h/db",
        "json": f'{{"password": "{password}"}}',
        "cut": f"... {password[:-4]}",
    }
    for name, value in text.items():
        assert scanner.find(value, name), name
    for pad in ("", "a", "ab"):  # every alignment inside a longer base64 string
        header = base64.b64encode(f"{pad}alice:{password}".encode()).decode()
        assert scanner.find(f"Authorization: Basic {header}", "basic auth")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXI6YSJ9.c2lnbmF0dXJl"
    assert [f.what for f in scanner.find(f"token={jwt}", "log")] == ["a JWT"]
    # Decoded payloads carry no token any more: one there is a finding, like anywhere else.
    assert [f.what for f in scanner.find(f"token={jwt}", "decoded payload")] == ["a JWT"]
    # A provisioned worker's credential is a token too.
    credential = "aw1.edge-a-1f2e3d." + "Yq20R1Vk8NUKGNeq6Q-3amKAmmMCkIeAOCotJ-9Ra0c"
    assert [f.what for f in scanner.find(f"AIRLOCK_WORKER_TOKEN={credential}", "log")] == ["a JWT"]
    # Only where a token is the purpose (the output of a command that hands one out) is one allowed.
    assert scanner.find(f"token={jwt} {credential}", "output handing out a token", NOT_TOKENS) == []
    assert scanner.find("an ordinary line with eyJ in it, and alice", "clean") == []
    # A finding never repeats the secret it found.
    [finding] = scanner.find(f"connecting with {password}", "raw")
    assert password not in str(finding) and "<SECRET>" in str(finding)
    print(f"[secret scan] forms per secret: {len(scanner.secrets[password].forms)}")


async def test_a_leak_in_a_response_is_found(make_stack) -> None:
    stack = await make_stack()
    scanner = planted()
    leaked, kept = scanner.new(PASSWORD), scanner.new(PASSWORD)
    before = secret_scan.SESSION.counts["responses"]
    async with stack.client() as client:
        client.event_hooks["response"].append(scanner.async_response_hook)
        # The password field is never returned; a description that holds a password is.
        body = {"connection_id": unique("c"), "conn_type": "tcp", "password": kept, "description": leaked}
        created = await client.post("/api/v2/connections", json=body)
        assert created.status_code == 201, created.text
        assert (await client.get(f"/api/v2/connections/{body['connection_id']}")).json()["has_password"]
        # A task instance's token is handed out where it is meant to be, and nowhere else.
        ti = await client.post("/api/v2/task-instances", json={"dag_id": "d", "run_id": "r", "task_id": "t"})
        token = ti.json()["execution_token"]
        client.headers[PLANTED_HEADER] = "1"  # planted on purpose: not the session scan's business
        echoed = {"connection_id": unique("c"), "conn_type": "tcp", "description": token}
        assert (await client.post("/api/v2/connections", json=echoed)).status_code == 201
    by_place = {(f.where.split(" in ")[0], f.what) for f in scanner.findings}
    assert by_place == {
        ("response POST /api/v2/connections -> 201", "password #1"),
        ("response GET /api/v2/connections/" + body["connection_id"] + " -> 200", "password #1"),
        ("response POST /api/v2/connections -> 201", "a JWT"),
    }, scanner.findings
    # The session's hook saw these responses too, all but the planted one.
    assert secret_scan.SESSION.counts["responses"] - before >= 3


async def test_a_leak_in_a_log_is_found(
    tmp_path: Path, secret_scan_session: secret_scan.SessionCapture
) -> None:
    scanner = planted()
    password = scanner.new(PASSWORD)
    token = scanner.register("airlock_" + uuid.uuid4().hex, TOKEN)
    path = tmp_path / "worker.planted"  # not *.log: the session scan reads those
    handler = logging.FileHandler(path)
    logger = logging.getLogger("tests.planted")
    logger.addHandler(handler)
    try:
        logger.warning("all good")
        logger.warning("login with %s", quote(password, safe=""))
        logger.warning("Authorization: Bearer %s", token)
    finally:
        logger.removeHandler(handler)
        handler.close()
    found = scanner.scan_log_file(path, "worker.planted")
    assert [(f.where, f.what) for f in found] == [
        ("worker.planted line 2", "password #1"),
        ("worker.planted line 3", "token #1"),
    ]
    # The session's capture is live: the API's structlog and stdlib lines reach the files it scans.
    nonce = uuid.uuid4().hex
    structlog.get_logger("api.selfcheck").info("secret scan self-check", nonce=nonce)
    logging.getLogger("api.selfcheck").info("secret scan self-check %s", nonce)
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert nonce in secret_scan_session.structlog_log.read_text()
    assert nonce in secret_scan_session.api_log.read_text()


async def test_a_leak_in_a_workflow_history_is_found(temporal_address: str, dev_secrets) -> None:
    scanner = planted()
    password = scanner.new(PASSWORD)
    codec = master_codec("k1", dev_secrets.payload_key)
    plain = await Client.connect(temporal_address)
    sealed = await Client.connect(temporal_address, data_converter=make_data_converter(codec))
    prefix = f"{PLANTED_PREFIX}{uuid.uuid4().hex[:8]}-"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXI6YSJ9.c2lnbmF0dXJl"
    # Nobody polls this queue: starting a workflow is enough to put its input into the history.
    handles = [
        await plain.start_workflow(
            "Planted", {"dsn": f"u:{password}", "t": jwt}, id=f"{prefix}plain", task_queue=prefix
        ),
        await sealed.start_workflow(
            "Planted", {"password": password, "t": jwt}, id=f"{prefix}sealed", task_queue=prefix
        ),
        await sealed.start_workflow(
            "Planted", {"connection_id": "c1"}, id=f"{prefix}clean", task_queue=prefix
        ),
    ]
    try:
        for _ in range(50):  # visibility is eventually consistent
            listed = [w.id async for w in plain.list_workflows(f"WorkflowId STARTS_WITH '{prefix}'")]
            if len(listed) == 3:
                break
            await asyncio.sleep(0.2)
        found = await scanner.scan_temporal(plain, codec, only_prefix=prefix)
    finally:
        for handle in handles:
            await handle.terminate(reason="planted")
    where = sorted((f.where.removeprefix(f"history of workflow {prefix}"), f.what) for f in found)
    assert where == [
        ("plain", "a JWT"),
        ("plain", "password #1"),
        # Encrypted, the history's bytes hide them; decoded with the project's codec, they show (a
        # decoded payload carries no token either).
        ("sealed, decoded payload", "a JWT"),
        ("sealed, decoded payload", "password #1"),
    ], found
    assert scanner.counts["workflows"] == 3 and scanner.counts["payloads decoded"] >= 2


async def test_the_codec_token_stays_out_of_the_access_log(
    make_stack, secret_scan_session: secret_scan.SessionCapture
) -> None:
    stack = await make_stack()
    token = stack.secrets.codec_token
    async with httpx.AsyncClient(base_url=stack.api.url) as ui:
        response = await ui.post(f"/codec/ui/{token}/decode", json={"payloads": []})
        assert response.status_code == 200
        assert (await ui.post("/codec/ui/wrong/decode", json={"payloads": []})).status_code == 401
    log = secret_scan_session.api_log.read_text()
    assert '"POST /codec/ui/***/decode HTTP/1.1" 200' in log
    assert '"POST /codec/ui/***/decode HTTP/1.1" 401' in log
    assert token not in log


async def test_a_failing_trigger_keeps_its_secrets(make_stack, dev_secrets) -> None:
    """Its kwargs hold a password and a URL with one (or it reads a saved connection's password);
    it logs them, shows its repr, raises with them: the failure, traceback, logs, task instance,
    worker log and history show none of them."""
    stack = await make_stack()
    queue = unique("trig")
    allow = "activities.triggers.*,tests.secret_scan.*"
    await stack.start_worker(queue, name="leaky", AIRLOCK_TRIGGERER="true", AIRLOCK_TRIGGER_ALLOWLIST=allow)
    await stack.wait_worker(queue)
    password, in_url, rejected = (secret_scan.trigger_secret() for _ in range(3))
    saved = secret_scan.password()
    async with stack.client() as client:
        vault = {
            "connection_id": unique("vault"),
            "conn_type": "postgres",
            "login": "reader",
            "password": saved,
        }
        assert (await client.post("/api/v2/connections", json=vault)).status_code == 201
        # It reads a saved connection through the Execution API, then raises with its password.
        reader = await defer(
            client, "tests.secret_scan.LeakyTrigger", {"conn_id": vault["connection_id"]}, queue=queue
        )
        leaky = await defer(
            client,
            "tests.secret_scan.LeakyTrigger",
            {"password": password, "url": f"http://probe:{in_url}@127.0.0.1:1/"},
            queue=queue,
        )
        # The constructor itself quotes what it rejects: a URL with its password.
        bad = await defer(
            client, "activities.triggers.http.HttpTrigger", {"url": f"ftp://probe:{rejected}@h/"}, queue=queue
        )
        texts: dict[str, str] = {}
        for name, ti in (("leaky", leaky), ("bad", bad), ("reader", reader)):
            trigger = await wait_trigger(client, ti["trigger_id"])
            assert trigger["state"] == "failed", trigger
            texts[f"{name} trigger"] = str(trigger)
            logs = await client.get(f"/api/v2/triggers/{ti['trigger_id']}/logs")
            texts[f"{name} logs"] = logs.text
            texts[f"{name} task"] = (await client.get(f"/api/v2/task-instances/{ti['id']}")).text
    stack.stop_workers()
    for path in stack.log_dir.glob("worker-*.log"):
        texts[path.name] = path.read_text()
    for name, text in texts.items():
        for secret in (password, in_url, rejected, saved):
            assert secret not in text and quote(secret, safe="") not in text, name
    assert (
        "PermissionError: login to http://probe:***@127.0.0.1:1/ refused for password ***"
        in (texts["leaky trigger"])
    )
    assert "logging in to http://probe:***@127.0.0.1:1/ with password ***" in texts["leaky logs"]
    assert "password='***'" in texts["leaky logs"]  # its repr too
    assert "url must be an http:// or https:// URL, not 'ftp://probe:***@h/'" in texts["bad trigger"]
    assert "PermissionError: *** was refused" in texts["reader trigger"]
    assert "connecting as ***" in texts["reader logs"]
    scanner = Scanner()
    for secret in (password, in_url, rejected, saved):
        scanner.register(secret, secret_scan.TRIGGER_SECRET)
    temporal = await Client.connect(stack.temporal_address)
    codec = master_codec("k1", dev_secrets.payload_key)
    for ti in (leaky, bad, reader):
        assert await scanner.scan_temporal(temporal, codec, only_prefix=f"trigger-{ti['trigger_id']}") == []
    assert scanner.counts["workflows"] == 3 and scanner.counts["payloads decoded"] > 0


async def test_connection_tests_with_wrong_passwords_leak_nothing(make_stack, dev_secrets) -> None:
    """Each driver refuses a wrong password (or cannot connect) and says so: the messages, the CLI's
    output and the histories show no password."""
    stack = await make_stack()
    queue = await stack.serve_queue()
    scanner = Scanner()
    pg, maria, rds = (
        make_url(url) for url in (services.postgres_url(), services.mariadb_url(), services.redis_url())
    )
    uris = {
        "postgres": f"postgres://airlock_nobody:{{}}@{pg.host}:{pg.port}/{pg.database}",
        "mysql": f"mysql://airlock_nobody:{{}}@{maria.host}:{maria.port}/{maria.database}",
        "redis": f"redis://airlock_nobody:{{}}@{rds.host}:{rds.port}/0",
        "http": "http://probe:{}@127.0.0.1:1/",
        "https": f"https://probe:{{}}@127.0.0.1:{stack.api.port}/",
    }
    passwords = {kind: scanner.register(secret_scan.password("w/r%ng@"), PASSWORD) for kind in uris}
    async with stack.client() as client:
        ids = {}
        for kind, uri in uris.items():
            body = {"uri": uri.format(quote(passwords[kind], safe="")), "queue": queue, "timeout": 20}
            response = await client.post("/api/v2/connections/test", json=body)
            assert response.status_code == 202, response.text
            ids[kind] = response.json()["id"]
        results = {kind: await wait_terminal(client, test_id) for kind, test_id in ids.items()}
    for kind, result in results.items():
        assert result["state"] == "failed", result
        assert not scanner.find(str(result), kind), result
    print("[secret scan] " + "; ".join(f"{k}: {r['result_message']}" for k, r in results.items()))
    code, out = await stack.cli(
        "connections",
        "test",
        "--uri",
        uris["postgres"].format(quote(passwords["postgres"], safe="")),
        "--queue",
        queue,
    )
    assert code == 1 and "authentication failed" in out and not scanner.find(out, "cli"), out
    temporal = await Client.connect(stack.temporal_address)
    codec = master_codec("k1", dev_secrets.payload_key)
    for test_id in ids.values():
        assert await scanner.scan_temporal(temporal, codec, only_prefix=f"connection-test-{test_id}") == []


async def test_a_database_url_password_is_not_echoed_when_the_api_cannot_connect() -> None:
    password = secret_scan.password()
    for server in (services.postgres_url(), services.mariadb_url()):
        url = make_url(server).set(username="airlock_nobody", password=password)
        env = {**os.environ, "AIRLOCK_DATABASE_URL": url.render_as_string(hide_password=False)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "airlock.cli",
            "db",
            "upgrade",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = (await proc.communicate())[0].decode()
        assert proc.returncode != 0 and "airlock_nobody" in out, out
        assert not secret_scan.SESSION.check_output(out, f"airlock db upgrade ({url.drivername})"), out


def test_repr_of_settings_and_connections_hides_passwords() -> None:
    password = secret_scan.password()
    dsn = f"postgresql://airlock:{password}@db.internal:5432/airlock"
    shown = [
        repr(Settings(database_url=dsn)),
        str(Settings(database_url=dsn)),
        repr(WorkerSettings(api_url=f"https://edge:{password}@api.internal/")),
        repr(ConnectionFields.from_uri(f"postgres://u:{quote(password, safe='')}@h/db?api_key={password}")),
    ]
    for text in shown:
        assert not secret_scan.SESSION.find(text, "repr"), text
    assert "postgresql://airlock:***@db.internal:5432/airlock" in shown[0]
    # Hidden from the repr only: the value itself is intact.
    assert Settings(database_url=dsn).database_url == dsn
