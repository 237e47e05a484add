"""The public plugin API (``airlock.sdk``): a third party's package, written against it alone, is
installed into this venv with pip, and its tester and its trigger run end to end on real workers."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, unique, wait_terminal
from tests.test_triggers import defer, wait_trigger

PACKAGE = Path(__file__).parent / "plugin_package"
DISTRIBUTION = "airlock-example-plugin"


def _pip(*args: str) -> None:
    # No index, no build isolation: the package builds with this venv's setuptools, offline.
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def installed_plugin() -> Iterator[None]:
    _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(PACKAGE))
    try:
        yield
    finally:
        _pip("uninstall", "-y", DISTRIBUTION)


@pytest.fixture
def greeting_server() -> Iterator[int]:
    """A line-based service that says HELLO to whoever connects."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HELLO from the example service\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


async def test_a_third_party_tester_and_trigger_run_end_to_end(
    make_stack, installed_plugin: None, greeting_server: int, tmp_path: Path
) -> None:
    stack: Stack = await make_stack()
    queue = await stack.serve_queue("plugin")
    worker = await stack.wait_worker(queue)
    assert "greeting" in worker["conn_types"]  # announced by the worker: the API has no such tester
    triggers = unique("plugin-trig")
    # The default allowlist: a registered trigger runs without being listed.
    await stack.start_worker(triggers, name="plugin-triggerer", AIRLOCK_TRIGGERER="true")
    await stack.wait_worker(triggers)
    async with stack.client() as client:
        good = await client.post(
            "/api/v2/connections/test",
            json={"conn_type": "greeting", "host": "127.0.0.1", "port": greeting_server, "queue": queue},
        )
        assert good.status_code == 202, good.text
        bad = await client.post(
            "/api/v2/connections/test",
            json={
                "conn_type": "greeting",
                "host": "127.0.0.1",
                "port": greeting_server,
                "extra": {"expect": "BONJOUR"},
                "queue": queue,
            },
        )
        assert bad.status_code == 202, bad.text
        passed = await wait_terminal(client, good.json()["id"])
        failed = await wait_terminal(client, bad.json()["id"])

        watched = tmp_path / "status.txt"
        ti = await defer(
            client,
            "airlock_example_plugin.triggers.WordInFileTrigger",
            {"path": str(watched), "word": "READY", "poll_interval": 0.2},
            queue=triggers,
        )
        await asyncio.sleep(1)
        watched.write_text("starting\nREADY at last\n")
        trigger = await wait_trigger(client, ti["trigger_id"])
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
        logs = (await client.get(f"/api/v2/triggers/{ti['trigger_id']}/logs")).json()["lines"]
    assert passed["state"] == "success", passed
    assert "greeted with 'HELLO from the example service'" in passed["result_message"]
    assert failed["state"] == "failed" and "expected 'BONJOUR'" in failed["result_message"]
    assert trigger["state"] == "fired", trigger
    event = json.loads(resumed["next_kwargs"])["event"]["value"]
    assert event == {"path": str(watched), "line": "READY at last"}
    assert any("does not exist yet" in line["message"] for line in logs)
