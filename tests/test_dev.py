"""``airlock dev`` (what ``make dev`` runs) as a terminal drives it: Ctrl-C stops the whole stack with
status 0, and a process of the stack that dies on its own ends it with status 2 and says which."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from airlock.devstack import DEFAULT_CONFIG, free_port, load_config
from tests import secret_scan
from tests.reliability import record

REPO = Path(__file__).resolve().parent.parent
UP = "Airlock is up."


def dev_config(tmp_path: Path) -> Path:
    """temporal-dev.yaml as shipped, on free ports, headless, with its state under ``tmp_path``."""
    config = load_config(REPO / DEFAULT_CONFIG)
    state = tmp_path / "state"
    config["state_dir"] = str(state)
    config["temporal"].update(port=free_port(), headless=True, db_filename=str(state / "temporal.db"))
    config["api"].update(port=free_port(), database_url=f"sqlite:///{state / 'airlock.db'}")
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    state: Path
    lines: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None or text in self.output, f"airlock dev ended early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def children(self) -> dict[int, str]:
        """The stack's processes (pid -> command line), as the kernel lists them under `airlock dev`."""
        found = {}
        for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
            try:
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue
        self.seen |= set(found)
        return found


@contextlib.contextmanager
def running_dev(tmp_path: Path, config: Path, env: dict[str, str] | None = None) -> Iterator[DevRun]:
    """``airlock dev`` in its own process group and session, as a terminal's foreground job; ``env``:
    more of its environment."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "airlock.cli", "dev", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = DevRun(proc, tmp_path / "state")

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        # Whatever the stack left behind (the tests assert nothing does) goes too.
        for pid in run.seen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        state = run.state
        for name, kind in (("admin.token", secret_scan.TOKEN), ("payload.key", secret_scan.KEY)):
            if (state / name).exists():
                secret_scan.register((state / name).read_text().strip(), kind)
        secret_scan.SESSION.check_output(run.output, "output of airlock dev")


@pytest.fixture
def airlock_dev(tmp_path: Path) -> Iterator[DevRun]:
    with running_dev(tmp_path, dev_config(tmp_path)) as run:
        yield run


def test_ctrl_c_stops_the_stack_with_status_0(airlock_dev: DevRun) -> None:
    airlock_dev.wait_for(UP, timeout=120)
    stack = airlock_dev.children()
    assert len(stack) == 4, stack  # Temporal, API, worker, triggerer
    started = time.monotonic()
    # What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
    os.killpg(airlock_dev.proc.pid, signal.SIGINT)
    status = airlock_dev.proc.wait(timeout=60)
    took = time.monotonic() - started
    time.sleep(0.2)
    output = airlock_dev.output
    assert status == 0, output
    assert "Airlock stopped." in output and "exited with status" not in output, output
    assert "Traceback" not in output, output
    # Nothing of the stack outlives it, and the workers left while the API could still record it.
    assert not [pid for pid in stack if Path(f"/proc/{pid}").exists()], output
    with contextlib.closing(sqlite3.connect(airlock_dev.state / "airlock.db")) as db:
        jobs = sorted(db.execute("select kind, state from job").fetchall())
    assert jobs == [("triggerer", "completed"), ("worker", "completed")], jobs
    record("airlock dev: Ctrl-C", 1, "status 0, 'Airlock stopped.'", f"stopped in {took:.1f} s")


def test_a_process_that_dies_on_its_own_ends_the_stack_with_status_2(airlock_dev: DevRun) -> None:
    airlock_dev.wait_for(UP, timeout=120)
    stack = airlock_dev.children()
    worker = [pid for pid, command in stack.items() if command.endswith(" worker ")]
    assert len(worker) == 1, stack
    os.kill(worker[0], signal.SIGKILL)
    status = airlock_dev.proc.wait(timeout=60)
    time.sleep(0.2)
    output = airlock_dev.output
    assert status == 2, output
    assert "the worker exited on its own (killed by SIGKILL)" in output, output
    assert "worker.log" in output and "Airlock stopped." not in output, output
    assert not [pid for pid in stack if Path(f"/proc/{pid}").exists()], output


def test_ctrl_c_while_the_stack_starts_stops_it_with_status_0(airlock_dev: DevRun) -> None:
    deadline = time.monotonic() + 60
    while not (airlock_dev.state / "logs" / "api.log").exists():
        assert time.monotonic() < deadline and airlock_dev.proc.poll() is None, airlock_dev.output
        time.sleep(0.05)
    airlock_dev.children()
    os.killpg(airlock_dev.proc.pid, signal.SIGINT)
    status = airlock_dev.proc.wait(timeout=60)
    time.sleep(0.2)
    output = airlock_dev.output
    assert status == 0, output
    assert UP not in output and "Airlock stopped." in output and "Traceback" not in output, output
    assert not [pid for pid in airlock_dev.seen if Path(f"/proc/{pid}").exists()], output


def test_the_stack_provisions_its_workers_and_keeps_the_codec_token_out_of_command_lines(
    tmp_path: Path,
) -> None:
    """With the Temporal UI on: its codec endpoint reaches the dev server through a 0600 env file, so
    no process's command line (readable by every user, in ps) carries the codec token; the worker and
    the triggerer are provisioned through the API like any worker, each with its queues only; and the
    settings the caller exports take effect in the stack's processes."""
    config_path = dev_config(tmp_path)
    config = yaml.safe_load(config_path.read_text())
    ui_port = free_port()
    config["temporal"].update(headless=False, ui_port=ui_port)
    config_path.write_text(yaml.safe_dump(config))
    exported = {"AIRLOCK_MAX_REQUEST_BYTES": "2048", "AIRLOCK_MAX_CONNECTION_TEST_CONCURRENCY": "16"}
    with running_dev(tmp_path, config_path, exported) as run:
        run.wait_for(UP, timeout=120)
        token = (run.state / "codec.token").read_text().strip()
        secret_scan.register(token, secret_scan.TOKEN)
        stack = run.children()
        assert len(stack) == 4, stack
        assert not [command for command in stack.values() if token in command], stack
        # Read without httpx: the UI hands its codec endpoint, token included, to the browsers it serves.
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10) as answer:
            settings = json.load(answer)
        assert settings["Codec"]["Endpoint"].endswith(f"/codec/ui/{token}")
        for name in ("worker", "triggerer"):
            env_file = run.state / f"{name}.env.json"
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
            env = json.loads(env_file.read_text())
            secret_scan.register(env["AIRLOCK_WORKER_TOKEN"], secret_scan.TOKEN)
            queues = env["AIRLOCK_QUEUES"].split(",")
            assert sorted(json.loads(env["AIRLOCK_PAYLOAD_KEYS"])) == sorted(f"k1/queue:{q}" for q in queues)
        # The API's body limit is the caller's, and the worker runs as many tests at once as the raised cap.
        admin = (run.state / "admin.token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{config['api']['port']}/api/v2/connections/test",
            data=json.dumps({"uri": "tcp://127.0.0.1:1", "extra": {"pad": "x" * 4096}}).encode(),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413
        (worker,) = [pid for pid, command in stack.items() if command.endswith(" worker ")]
        assert b"AIRLOCK_MAX_CONCURRENT_TESTS=16\0" in Path(f"/proc/{worker}/environ").read_bytes()
        with contextlib.closing(sqlite3.connect(run.state / "airlock.db")) as db:
            rows = sorted(db.execute("select triggerer, queues from worker_credential").fetchall())
        assert [triggerer for triggerer, _ in rows] == [0, 1], rows
