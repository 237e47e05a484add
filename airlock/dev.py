"""``airlock dev``: the Temporal dev server, the API, a worker and a triggerer, on their embedded defaults.

The stack's processes run in their own process group: a terminal's Ctrl-C reaches ``airlock dev`` alone,
which then stops them in the reverse order of their start (workers while the API can still record
that they left, the API while Temporal still answers it). Each also gets SIGTERM if ``airlock dev``
itself dies, so none outlives it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from airlock.devstack import (
    api_env,
    caller_settings,
    ensure_secrets,
    load_config,
    temporal_command,
    ui_codec_env_file,
    worker_env,
)

START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) during the start: stop what runs, and that is a success."""


class StackFailed(Exception):
    """A process of the stack could not start or died on its own; the message says which and why."""


@dataclass
class StackProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def ended(self) -> str:
        code = self.popen.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        return f"the {self.name} exited on its own ({how}); its log: {self.log}{_tail(self.log)}"


def _tail(log: Path, lines: int = 5) -> str:
    try:
        last = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line}" for line in last)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when ``airlock dev`` dies, however it dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class DevStack:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[StackProcess] = []
        self.stop_requested = False

    def request_stop(self, *_: object) -> None:
        self.stop_requested = True

    def start(self, key: str, name: str, command: list[str], env: dict[str, str]) -> StackProcess:
        """Start one process, ``name`` in messages and its output in ``logs/<key>.log``."""
        log_path = self.logs / f"{key}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_parent,
            )
        process = StackProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def check(self) -> None:
        """Raise for a stop request first (a process exiting after Ctrl-C is stopping, not failing),
        then for any process that ended."""
        if self.stop_requested:
            raise Interrupted
        for process in self.processes:
            if process.popen.poll() is not None:
                raise StackFailed(process.ended())

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackFailed(f"{what} within {timeout:.0f} s; logs: {self.logs}/")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
                try:
                    process.popen.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait()


def run_dev(config_path: Path) -> int:
    config = load_config(config_path)
    state_dir = Path(config.get("state_dir", ".airlock"))
    logs = state_dir / "logs"
    stack = DevStack(logs)
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    try:
        _start(stack, config, state_dir)
        while True:
            stack.check()
            time.sleep(0.2)
    except Interrupted:
        print("Stopping…", flush=True)
        stack.stop_all()
        print("Airlock stopped.", flush=True)
        return 0
    except StackFailed as exc:
        print(f"airlock dev: {exc}", file=sys.stderr, flush=True)
        print("Stopping the rest of the stack.", file=sys.stderr, flush=True)
        stack.stop_all()
        return 2
    finally:
        stack.stop_all()


def _start(stack: DevStack, config: dict[str, Any], state_dir: Path) -> None:
    dev = ensure_secrets(state_dir)
    stack.logs.mkdir(exist_ok=True)
    temporal, api, worker = config["temporal"], config["api"], config.get("worker", {})
    triggerer = config.get("triggerer")
    temporal_host, temporal_port = str(temporal.get("ip", "127.0.0.1")), int(temporal.get("port", 7233))
    temporal_address = f"{temporal_host}:{temporal_port}"
    api_url = f"http://{api['host']}:{api['port']}"
    # Every setting the caller exports takes effect here as it would on any API or worker.
    caller = caller_settings()
    ui_url = temporal_ui_url(temporal)
    # The console links each test to its workflow in the Temporal UI.
    links = {"AIRLOCK_TEMPORAL_UI_URL": ui_url} if ui_url else {}
    env = api_env(
        dev, temporal_address=temporal_address, database_url=api["database_url"], **{**links, **caller}
    )
    airlock = [sys.executable, "-m", "airlock.cli"]

    ui_env_file = ui_codec_env_file(temporal, dev.codec_token, state_dir)
    stack.start("temporal", "Temporal dev server", temporal_command(temporal, ui_env_file=ui_env_file), env)
    stack.wait_until(
        partial(_listening, temporal_host, temporal_port), f"nothing listens on {temporal_address}"
    )
    stack.start("api", "API", [*airlock, "api", "--host", api["host"], "--port", str(api["port"])], env)
    stack.wait_until(lambda: _healthy(api_url), f"the API at {api_url} did not become healthy")

    def start_worker(name: str, queues: list[str], *flags: str) -> StackProcess:
        provisioned = _provision(api_url, dev.admin_token, state_dir, name, queues, triggerer=bool(flags))
        # A local stack tests local targets.
        local = {"AIRLOCK_EGRESS_ALLOW_LOOPBACK": "true"}
        if "AIRLOCK_MAX_CONNECTION_TEST_CONCURRENCY" in caller:
            # Its one worker runs as many tests at once as a raised cap lets run (unless told otherwise).
            local["AIRLOCK_MAX_CONCURRENT_TESTS"] = caller["AIRLOCK_MAX_CONNECTION_TEST_CONCURRENCY"]
        process_env = worker_env({**local, **caller, **provisioned})
        return stack.start(name, name, [*airlock, "worker", *flags], process_env)

    queues = list(worker.get("queues", ["default"]))
    workers = [start_worker("worker", queues)]
    trigger_queues = list((triggerer or {}).get("queues", ["triggers"]))
    if triggerer:
        capacity = str(triggerer.get("capacity", 1000))
        workers.append(start_worker("triggerer", trigger_queues, "--triggerer", "--capacity", capacity))
    # "Up" means a test or trigger submitted now finds a live worker for its queue.
    for process in workers:
        stack.wait_until(
            partial(_registered, api_url, dev.admin_token, process.popen.pid),
            f"the {process.name} did not register with the API",
        )

    print(banner(config, launcher()), flush=True)


def banner(config: dict[str, Any], airlock: str) -> str:
    """What ``airlock dev`` prints once the stack is up; ``airlock`` is how to run the CLI from here."""
    temporal, api = config["temporal"], config["api"]
    triggerer = config.get("triggerer")
    state_dir = Path(config.get("state_dir", ".airlock"))
    temporal_host = temporal.get("ip", "127.0.0.1")
    ui = temporal_ui_url(temporal) or "off (headless)"
    queues = ", ".join(config.get("worker", {}).get("queues", ["default"]))
    trigger_queues = ", ".join(triggerer.get("queues", ["triggers"])) if triggerer else "-"
    return (
        f"Airlock is up.\n"
        f"  console      http://{api['host']}:{api['port']}/ui (sign in with the API token)\n"
        f"  API          http://{api['host']}:{api['port']}/docs\n"
        f"  Temporal UI  {ui}\n"
        f"  Temporal     {temporal_host}:{temporal.get('port', 7233)}\n"
        f"  worker       queues {queues}\n"
        f"  triggerer    queues {trigger_queues}\n"
        f"  API token    {state_dir / 'admin.token'} (the CLI reads it from there)\n"
        f"  logs         {state_dir / 'logs'}/\n"
        f"Try: {airlock} connections test --uri tcp://{api['host']}:{api['port']}\n"
        f"Ctrl-C stops everything."
    )


def temporal_ui_url(temporal: dict[str, Any]) -> str | None:
    """Where the dev server's Web UI answers; None when it runs headless."""
    if temporal.get("headless"):
        return None
    return f"http://{temporal.get('ip', '127.0.0.1')}:{temporal.get('ui_port', 8233)}"


def launcher() -> str:
    """How to run ``airlock`` from here: the script next to this interpreter, as short as it gets."""
    script = Path(sys.executable).parent / "airlock"
    if not script.exists():
        return "airlock"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _provision(
    api_url: str, admin_token: str, state_dir: Path, name: str, queues: list[str], *, triggerer: bool
) -> dict[str, str]:
    """The dev worker's env, provisioned through the API like any worker's (``airlock workers add``),
    once: kept in the state directory (0600) for the next ``airlock dev``. A file for other queues (the
    config changed) is replaced by a new worker."""
    path = state_dir / f"{name}.env.json"
    if path.exists():
        env: dict[str, str] = json.loads(path.read_text())
        if env.get("AIRLOCK_QUEUES") == ",".join(sorted(set(queues))):
            return env
    request = {
        "name": f"dev-{name}-{secrets.token_hex(3)}",
        "queues": queues,
        "triggerer": triggerer,
        "expires_in_days": 3650,
    }
    try:
        response = httpx.post(
            f"{api_url}/api/v2/workers",
            json=request,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise StackFailed(f"provisioning the {name} failed: {type(exc).__name__}") from None
    if response.status_code != 201:
        raise StackFailed(f"provisioning the {name} failed: {response.status_code} {response.text[:300]}")
    env = {**response.json()["env"], "AIRLOCK_API_URL": api_url}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(env, handle)
    return env


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _registered(api_url: str, admin_token: str, pid: int) -> bool:
    """A worker's liveness job names it ``host:pid``."""
    try:
        response = httpx.get(
            f"{api_url}/api/v2/jobs",
            params={"alive": True},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and any(
        job["hostname"].endswith(f":{pid}") for job in response.json()["jobs"]
    )
