"""The child-process runner: fresh processes per call, all of them killed when the call ends (normally
or at the deadline, even those that left the session), resource limits on the driver, and no worker
secret in its environment."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activities.testers import available_conn_types, fork_server_preload
from tests.stack import unique
from worker.isolation import DriverLimits, ForkServer
from worker.main import SECRET_VARIABLES, forget_secrets_in_environment


@pytest.fixture(scope="module")
def forks() -> ForkServer:
    os.environ["AIRLOCK_WORKER_TOKEN"] = "worker-secret-token"
    os.environ["AIRLOCK_PAYLOAD_KEYS"] = '{"k1/queue:q": "payload-secret-key"}'
    os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = "authorization=Bearer collector-secret"
    forget_secrets_in_environment()
    server = ForkServer(preload=["tests.isolation_targets"])
    server.start()
    return server


@pytest.fixture(scope="module")
def tight() -> ForkServer:
    """The same fork server, with small limits."""
    return ForkServer(
        preload=["tests.isolation_targets"],
        limits=DriverLimits(memory_mb=256, open_files=64, cpu_seconds=1, max_processes=4),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        # A zombie is dead for our purposes.
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False


async def _gone(*pids: int) -> bool:
    for _ in range(20):
        if not any(map(_alive, pids)):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_each_call_is_a_fresh_session_without_worker_secrets(forks: ForkServer) -> None:
    first = await forks.run("tests.isolation_targets:environment", {}, timeout=10)
    second = await forks.run("tests.isolation_targets:environment", {}, timeout=10)
    assert first.output and second.output
    assert first.output["pid"] != second.output["pid"] != os.getpid()
    assert first.output["sid"] != os.getsid(0)  # out of the worker's session
    assert not SECRET_VARIABLES & set(first.output["names"])


async def test_deadline_kills_the_child_and_what_it_spawned(forks: ForkServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    result = await forks.run(
        "tests.isolation_targets:hang_with_grandchild",
        {"pid_file": str(pid_file)},
        timeout=2,
        on_tick=tick,
        tick=0.2,
    )
    assert result.timed_out and result.output is None
    assert ticks >= 5  # the activity kept heartbeating while it waited
    child, grandchild = map(int, pid_file.read_text().split())
    assert await _gone(child, grandchild)


async def test_a_crashing_child_gives_no_output(forks: ForkServer) -> None:
    result = await forks.run("tests.isolation_targets:crash", {}, timeout=10)
    assert not result.timed_out and result.output is None and result.exitcode == 3
    assert result.error == "the driver exited with status 3 without a result"


async def test_a_grandchild_in_its_own_session_dies_when_the_driver_returns(
    forks: ForkServer, tmp_path: Path
) -> None:
    result = await forks.run(
        "tests.isolation_targets:setsid_grandchild", {"pid_file": str(tmp_path / "pid")}, timeout=10
    )
    assert result.output is not None, result.error
    assert await _gone(result.output["grandchild"])


async def test_a_grandchild_in_its_own_session_dies_at_the_deadline(
    forks: ForkServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    result = await forks.run(
        "tests.isolation_targets:setsid_grandchild", {"pid_file": str(pid_file), "hang": True}, timeout=1
    )
    assert result.timed_out
    assert await _gone(int(pid_file.read_text()))


async def test_a_double_forked_daemon_dies_when_the_driver_returns(forks: ForkServer) -> None:
    result = await forks.run("tests.isolation_targets:daemon", {}, timeout=10)
    assert result.output is not None, result.error
    assert await _gone(result.output["daemon"])


async def test_a_driver_that_allocates_without_bound_fails_and_the_next_one_runs(tight: ForkServer) -> None:
    started = time.monotonic()
    result = await tight.run("tests.isolation_targets:allocate_forever", {}, timeout=20)
    assert not result.timed_out and result.output is None
    assert result.error == "the driver ran out of memory (limit 256 MB)"
    assert time.monotonic() - started < 10
    after = await tight.run("tests.isolation_targets:environment", {}, timeout=10)
    assert after.output is not None, after.error


async def test_a_driver_opens_at_most_its_limit_of_files(tight: ForkServer) -> None:
    result = await tight.run("tests.isolation_targets:open_files", {}, timeout=10)
    assert result.output is not None, result.error
    assert result.output["limit"] == [64, 64]
    assert result.output["errno"] == errno.EMFILE and 50 < result.output["opened"] < 64


async def test_a_driver_that_spins_is_stopped_by_its_cpu_limit(tight: ForkServer) -> None:
    result = await tight.run("tests.isolation_targets:spin", {}, timeout=20)
    assert not result.timed_out and result.error == "the driver used up its CPU time (1 s)"


async def test_a_driver_that_forks_too_many_processes_is_killed_with_all_of_them(
    tight: ForkServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    request = {"count": 10, "pid_file": str(pid_file)}
    result = await tight.run("tests.isolation_targets:fork_many", request, timeout=20)
    assert not result.timed_out and result.error == "the driver ran more than 4 processes (killed)"
    assert await _gone(*map(int, pid_file.read_text().split()))


async def test_real_drivers_run_within_the_default_limits(forks: ForkServer, tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "app.db"
    sqlite3.connect(database).close()
    request = {"fields": {"conn_type": "sqlite", "host": str(database)}, "timeout": 5}
    result = await forks.run("activities.testers.child:run", request, timeout=10)
    assert result.output is not None and result.output["ok"], result


def test_the_fork_server_loads_no_temporal_code() -> None:
    """Each test forks twice from the fork server: the less it holds, the less each fork copies
    (Temporal's SDK and its protobufs would be a fifth of it, and no driver needs them)."""
    preload = fork_server_preload(available_conn_types())
    script = (
        "import importlib, json, sys\n"
        f"for name in {preload!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.partition('.')[0] for name in sys.modules})))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    )
    assert "psycopg" in loaded  # the drivers are there
    assert not {"temporalio", "google"} & set(loaded)


def test_a_child_does_not_run_the_workers_main_script_again(tmp_path: Path) -> None:
    """Under the ``airlock`` console script, running it again in each child would import the whole
    CLI twice per test."""
    script = tmp_path / "main_script.py"
    script.write_text(
        "import asyncio, json\n"
        "from worker.isolation import ForkServer\n"
        "RAN_AS_MAIN = True\n"
        "if __name__ == '__main__':\n"
        "    server = ForkServer(preload=['tests.isolation_targets'])\n"
        "    run = server.run('tests.isolation_targets:main_module_ran', {}, timeout=10)\n"
        "    print(json.dumps(asyncio.run(run).output))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, check=True, cwd=root, env=env)
    assert json.loads(out.stdout) == {"ran": False}


async def test_a_running_worker_shows_no_secret_in_its_proc_environ(make_stack) -> None:
    """Driver code runs as the worker's uid and could read /proc/<pid>/environ of the worker and of its
    fork server: the block the worker started with still names its secrets, but their values are gone,
    and its children never had them. Over mutual TLS, its client key is one of them."""
    stack = await make_stack(tls=True)
    queue = unique("environ")
    env = await stack.provision("environ", [queue])
    await stack.start_worker(queue, name="environ", **env)
    await stack.wait_worker(queue)
    worker = stack.workers[0]
    secrets = [
        env["AIRLOCK_WORKER_TOKEN"],
        *json.loads(env["AIRLOCK_PAYLOAD_KEYS"]).values(),
        # Not the key's last line: that is its public half, which the certificate carries too.
        *env["AIRLOCK_API_CLIENT_KEY"].splitlines()[1:-2],
    ]
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
    assert b"AIRLOCK_PAYLOAD_KEYS=" in environ and b"AIRLOCK_API_CLIENT_KEY=" in environ
    children = _descendants(worker.pid)
    assert children, "the worker's fork server is its child"
    for pid in (worker.pid, *children):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        leaked = [secret[:8] for secret in secrets if secret.encode() in environ]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert not leaked, f"process {pid} ({command}) holds secrets starting {leaked}"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *_descendants(child)]
    return found
