"""The public plugin API (``airlock.sdk``): a third party's package, written against it alone, is
installed into this venv with pip, and its tester and its trigger run end to end on real workers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.sdk import ConnectionForm
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
    # The console's form for the type, as the plugin declares it (read in a process of its own: a
    # process reads the registry once).
    form = json.loads(
        _python(
            "import json; from airlock.plugins import connection_forms as f; print(json.dumps(f()['greeting'].as_json()))"
        )
    )
    assert form["hidden"] == ["login", "password", "schema"]
    assert form["labels"]["extra"] == "Extra: the greeting expected" and form["labels"]["host"] == "Host"


def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_form_that_does_not_load_leaves_its_type_with_every_field(tmp_path: Path) -> None:
    """A plugin's broken form module, or an entry that is not a ConnectionForm, costs that conn type
    its labels, not the console: the entries are installed for real, as a distribution's metadata."""
    dist = tmp_path / "broken_forms-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-forms\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[airlock.connection_forms]\nmissing = no_such_module:FORM\nnot_a_form = json:dumps\n"
    )
    out = _python(
        "from airlock.plugins import connection_forms as f; print(sorted(f()))", PYTHONPATH=str(tmp_path)
    )
    assert "'missing'" not in out and "'not_a_form'" not in out and "'postgres'" in out
    assert "connection form missing (no_such_module:FORM) did not load" in out
    assert "connection form not_a_form (json:dumps) is a" in out


def test_a_form_naming_a_field_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="'hots' is not a connection form field"):
        ConnectionForm(hidden=frozenset({"hots"}))  # type: ignore[arg-type]
