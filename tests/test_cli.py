"""The ``airlock`` CLI as a user meets it, against a real stack: exit statuses (0 success, 1 the test
failed, 2 usage or service error), server text printed literally, ids never cut, help everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any

import pytest
import typer
from sqlalchemy.engine import make_url

import airlock.cli
from airlock.triggers import TIMEDELTA_TRIGGER
from api.public.datamodels import CONNECTION_ID_PATTERN
from tests import secret_scan, services
from tests.stack import Stack
from tests.test_triggers import start_triggerer

# Rich reads both as markup; a console that did would drop the first and crash on the second.
MARKUP = "[red]Bad[/schema] Gateway"


@pytest.fixture
async def stack(make_stack) -> Stack:
    return await make_stack()


@contextlib.contextmanager
def http_target(status: int, reason: str) -> Iterator[str]:
    """An HTTP endpoint that answers ``status`` with ``reason`` as its reason phrase: a real server whose
    words end up in a test's result message."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status, reason)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def stored_tests(stack: Stack) -> int:
    async with stack.client() as client:
        total: int = (await client.get("/api/v2/connections/test")).json()["total_entries"]
    return total


def one_line_reason(output: str) -> str:
    assert "Traceback" not in output and "Error:" not in output.split("airlock:")[0], output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("airlock: "), output
    return lines[0]


async def test_a_uri_the_api_refuses_is_a_one_line_service_error(stack) -> None:
    code, output = await stack.cli("connections", "test", "--uri", "not a uri")
    assert code == 2, output
    reason = one_line_reason(output)
    # The API's 422, as `field: message`, not a Python repr of its body.
    assert "422" in reason and "{'" not in reason and "[{" not in reason, reason
    assert reason.endswith(
        "422 Unprocessable Entity: invalid uri: URI must look like "
        "conn_type://[login[:password]@]host[:port][/schema]"
    ), reason
    assert await stored_tests(stack) == 0


async def test_server_text_with_markup_is_printed_literally(stack) -> None:
    queue = await stack.serve_queue()
    with http_target(502, MARKUP) as url:
        code, output = await stack.cli("connections", "test", "--uri", url, "--queue", queue)
    # 1: the test ran and failed; the target's reason phrase reached the user character for character.
    assert code == 1, output
    assert f"returned status 502 {MARKUP}" in output, output
    assert "Traceback" not in output and "MarkupError" not in output

    # A service error whose text is full of brackets: the 422 quotes the id pattern.
    code, output = await stack.cli("connections", "test", "--conn-id", "[red]nope[/schema]", "--queue", queue)
    assert code == 2, output
    reason = one_line_reason(output)
    assert (
        f"422 Unprocessable Entity: connection_id: String should match pattern '{CONNECTION_ID_PATTERN}'"
        in reason
    )
    # A 404 names the id the user gave.
    code, output = await stack.cli("connections", "test", "--conn-id", "warehouse", "--queue", queue)
    assert code == 2, output
    assert "404" in one_line_reason(output) and "warehouse" in output


@pytest.mark.parametrize(
    "args, names",
    [
        (["--uri", "tcp://127.0.0.1:1", "--timeout", "0"], "--timeout"),
        (["--uri", "tcp://127.0.0.1:1", "--timeout", "-5"], "--timeout"),
        (["--conn-id", "warehouse", "--save-as", "copy"], "--save-as"),
        (["--uri", "tcp://127.0.0.1:1", "--conn-id", "warehouse"], "--conn-id"),
        ([], "--uri"),
    ],
)
async def test_usage_errors_exit_2_and_send_nothing(stack, args: list[str], names: str) -> None:
    code, output = await stack.cli("connections", "test", *args)
    assert code == 2, output
    assert "Usage: airlock connections test" in output and names in output, output
    assert "Traceback" not in output
    assert await stored_tests(stack) == 0


async def test_version(stack) -> None:
    code, output = await stack.cli("--version")
    assert code == 0, output
    assert output.startswith(f"airlock {version('airlock')} ")


async def test_triggers_list_never_cuts_ids_on_a_narrow_terminal(stack) -> None:
    created = []
    async with stack.client() as client:
        for _ in range(3):
            # Durable timers an hour away: no triggerer needed, and they stay listed as scheduled.
            body = {"classpath": TIMEDELTA_TRIGGER, "kwargs": {"delta": 3600}}
            response = await client.post("/api/v2/triggers", json=body)
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
    try:
        for columns in ("200", "50"):
            code, output = await stack.cli("triggers", "list", COLUMNS=columns)
            assert code == 0, output
            assert max(len(line) for line in output.splitlines()) <= int(columns), output
            # Nothing dropped: every trigger's state and classpath are there, not only its id.
            assert output.count("scheduled") == output.count(TIMEDELTA_TRIGGER) == len(created), output
            # Each id as it appears on a line of the listing, pasted into `show`, finds its trigger.
            pasted = [word for line in output.splitlines() for word in re.findall(r"[0-9a-f-]{36}", line)]
            assert sorted(pasted) == sorted(created), output
        for trigger_id in pasted:
            code, shown = await stack.cli("triggers", "show", trigger_id, "--json", COLUMNS="50")
            assert code == 0, shown
            assert f'"id": "{trigger_id}"' in shown and '"state": "scheduled"' in shown, shown
    finally:
        async with stack.client() as client:
            for trigger_id in created:
                assert (await client.delete(f"/api/v2/triggers/{trigger_id}")).status_code == 200


async def test_connections_added_read_edited_tested_and_deleted_with_no_password_on_the_command_line(
    stack,
) -> None:
    pg = make_url(services.postgres_url())
    password, api_token = secret_scan.password(), secret_scan.password()
    queue = await stack.serve_queue("cli")
    extra = json.dumps({"sslmode": "disable", "api_token": api_token})
    code, output = await stack.cli(
        "connections", "add", "pg-cli", "--conn-type", "postgres", "--host", pg.host or "127.0.0.1",
        "--port", str(pg.port), "--login", "airlock_nobody", "--schema", pg.database or "",
        "--extra", extra, "--password-stdin", stdin=f"{password}\n",
    )  # fmt: skip
    assert (code, output) == (0, "connection pg-cli added\n")

    # Read back: the API's fields under the API's names with --json, a line per field otherwise.
    code, output = await stack.cli("connections", "get", "pg-cli", "--json")
    saved = json.loads(output)
    assert code == 0 and saved["has_password"] is True and saved["extra"]["api_token"] == "***", output
    async with stack.client() as client:
        assert saved == (await client.get("/api/v2/connections/pg-cli")).json()
    code, output = await stack.cli("connections", "get", "pg-cli")
    assert code == 0 and re.search(r"^login +airlock_nobody$", output, re.MULTILINE), output
    code, output = await stack.cli("connections", "list", "--search", "pg-cl", COLUMNS="200")
    assert code == 0 and re.search(r"pg-cli .*postgres.*set", output), output
    code, output = await stack.cli("connections", "list", "--conn-type", "mysql", "--json")
    assert json.loads(output) == {"connections": [], "total_entries": 0}

    # The role does not exist: the test fails (exit 1); mended with edit, it succeeds (exit 0).
    code, output = await stack.cli("connections", "test", "--conn-id", "pg-cli", "--queue", queue)
    assert code == 1 and "airlock_nobody" in output, output
    code, output = await stack.cli("connections", "edit", "pg-cli", "--login", pg.username or "")
    assert (code, output) == (0, "connection pg-cli changed\n")
    code, output = await stack.cli("connections", "test", "--conn-id", "pg-cli", "--queue", queue, "--json")
    test = json.loads(output)
    assert code == 0 and test["state"] == "success" and test["worker"], output

    # The history, newest first, and one test in full.
    code, output = await stack.cli("tests", "list", "--connection-id", "pg-cli", "--json")
    listed = json.loads(output)
    assert [t["state"] for t in listed["tests"]] == ["success", "failed"] and listed["total_entries"] == 2
    code, output = await stack.cli("tests", "list", "--state", "failed", COLUMNS="60")
    assert code == 0 and listed["tests"][1]["id"] in output and listed["tests"][0]["id"] not in output, output
    code, output = await stack.cli("tests", "show", test["id"])
    assert code == 0 and re.search(r"^state +success$", output, re.MULTILINE), output
    code, output = await stack.cli("jobs", "list", "--json")
    assert [job["queues"] for job in json.loads(output)["jobs"]] == [[queue]], output
    code, output = await stack.cli("jobs", "list", COLUMNS="300")
    assert code == 0 and queue in output and "postgres" in output, output

    # Clear the password; an edit that changes nothing is a usage error; then delete.
    code, output = await stack.cli("connections", "edit", "pg-cli", "--clear-password", "--json")
    assert code == 0 and json.loads(output)["has_password"] is False, output
    code, output = await stack.cli("connections", "edit", "pg-cli")
    assert code == 2 and "nothing to change" in output, output
    code, output = await stack.cli("connections", "add", "untyped", "--host", "h")
    assert code == 2 and "needs a type" in output, output
    assert (await stack.cli("connections", "delete", "pg-cli")) == (0, "connection pg-cli deleted\n")
    code, output = await stack.cli("connections", "get", "pg-cli")
    assert code == 2 and "404" in output, output


async def test_a_password_asked_for_is_not_echoed(stack) -> None:
    """``--ask-password`` on a real terminal: the prompt, twice, and nothing typed shown."""
    password = secret_scan.password()
    env = {**os.environ, "AIRLOCK_API_TOKEN": stack.secrets.admin_token, "AIRLOCK_API_URL": stack.api.url}
    args = [
        "connections",
        "add",
        "tty-cli",
        "--conn-type",
        "tcp",
        "--host",
        "h",
        "--port",
        "1",
        "--ask-password",
    ]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "airlock.cli", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    seen = b""

    async def answer_prompts() -> None:
        """Type the password at each prompt, as a user would, until the connection is added. getpass
        flushes the terminal's input as it turns echo off: a line typed in that instant is lost, and the
        prompt comes again; it is answered again."""
        nonlocal seen
        answered = 0
        while b"connection tty-cli added" not in seen:
            seen += await asyncio.to_thread(os.read, primary, 1024)
            prompts = seen.count(b"Password: ") + seen.count(b"Repeat for confirmation: ")
            for _ in range(prompts - answered):
                os.write(primary, f"{password}\n".encode())
            answered = prompts

    try:
        await asyncio.wait_for(answer_prompts(), 60)
        assert b"Repeat for confirmation: " in seen
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        proc.kill()
        os.close(primary)
    assert password.encode() not in seen, seen
    async with stack.client() as client:
        assert (await client.get("/api/v2/connections/tty-cli")).json()["has_password"] is True


async def test_trigger_logs_follow_until_the_trigger_ends(stack, tmp_path) -> None:
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        created = await client.post(
            "/api/v2/triggers",
            json={
                "classpath": "tests.trigger_classes.TickingTrigger",
                "kwargs": {"marker": str(tmp_path / "cleaned")},
                "queue": queue,
            },
        )
        trigger_id = created.json()["id"]
        following = asyncio.create_task(stack.cli("triggers", "logs", trigger_id, "--follow"))
        for _ in range(300):
            lines = (await client.get(f"/api/v2/triggers/{trigger_id}/logs")).json()["lines"]
            if sum("tick" in line["message"] for line in lines) >= 3:
                break
            await asyncio.sleep(0.1)
        assert not following.done()  # still following a trigger that runs
        assert (await client.delete(f"/api/v2/triggers/{trigger_id}")).status_code == 200
        code, output = await asyncio.wait_for(following, 60)
    assert code == 0, output
    ticks = re.findall(r"tick (\d+)", output)
    assert len(ticks) >= 3 and ticks == [str(n) for n in range(1, len(ticks) + 1)], output  # none twice


def command_tree() -> Iterator[tuple[list[str], Any]]:
    """Every command of ``airlock``, the lazily registered ones (api, db, worker) loaded."""
    root = typer.main.get_command(airlock.cli.app)
    context_type = type(root.make_context("airlock", [], resilient_parsing=True))

    def walk(command: Any, context: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        for name in getattr(command, "list_commands", lambda _: [])(context):
            sub = command.get_command(context, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            yield from walk(sub, context_type(sub, info_name=name, parent=context), [*path, name])

    yield from walk(root, context_type(root, info_name="airlock"), [])


def test_every_command_and_option_has_help() -> None:
    tree = list(command_tree())
    paths = {" ".join(path) for path, _ in tree}
    assert {"connections test", "triggers list", "triggers show", "dev", "api", "db upgrade"} <= paths
    assert {"workers add", "workers list", "workers revoke", "worker"} <= paths
    assert {f"connections {c}" for c in ("list", "get", "add", "edit", "delete", "test")} <= paths
    assert {"tests list", "tests show", "jobs list", "triggers logs", "triggers cancel"} <= paths
    assert not any(path.startswith("tokens") for path in paths)  # `airlock tokens worker` is gone
    env = {**os.environ, "COLUMNS": "200"}
    for path, command in tree:
        where = f"airlock {' '.join(path)}".strip()
        assert (command.help or "").strip(), f"{where} has no help text"
        shown = subprocess.run(
            [sys.executable, "-m", "airlock.cli", *path, "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert shown.returncode == 0, (where, shown.stdout, shown.stderr)
        flat = " ".join(shown.stdout.split())
        assert " ".join(command.help.split()[:6]) in flat, (where, shown.stdout)
        for param in command.params:
            help_text = getattr(param, "help", None)
            assert (help_text or "").strip(), f"{where}: {param.opts or param.name} has no help text"
            if not getattr(param, "hidden", False):
                assert " ".join(help_text.split()[:4]) in flat, (where, param.name, shown.stdout)
