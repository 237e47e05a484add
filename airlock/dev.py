"""``airlock dev``: the Temporal dev server, the API and one worker, on their embedded defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from airlock.devstack import api_env, ensure_secrets, load_config, temporal_command, wait_for_port, worker_env

LOGGING_VARIABLES = ("AIRLOCK_LOG_FORMAT", "AIRLOCK_LOG_LEVEL")


def run_dev(config_path: Path) -> int:
    config = load_config(config_path)
    state_dir = Path(config.get("state_dir", ".airlock"))
    dev = ensure_secrets(state_dir)
    temporal, api, worker = config["temporal"], config["api"], config.get("worker", {})
    temporal_address = f"{temporal.get('ip', '127.0.0.1')}:{temporal.get('port', 7233)}"
    api_url = f"http://{api['host']}:{api['port']}"
    # The children's environments are built from scratch: carry the logging choice over to each.
    logging_env = {name: os.environ[name] for name in LOGGING_VARIABLES if name in os.environ}
    env = api_env(dev, temporal_address=temporal_address, database_url=api["database_url"], **logging_env)
    worker_token = _worker_token(env, state_dir)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, command: list[str], process_env: dict[str, str]) -> None:
        log = open(logs / f"{name}.log", "ab")
        procs.append(subprocess.Popen(command, env=process_env, stdout=log, stderr=subprocess.STDOUT))

    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    # Ctrl-C reaches every process of the stack at once (one process group): the ones that exit
    # because of it are stopping, not failing.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        start("temporal", temporal_command(temporal, dev.codec_token), env)
        wait_for_port(temporal.get("ip", "127.0.0.1"), int(temporal.get("port", 7233)))
        airlock = [sys.executable, "-m", "airlock.cli"]
        start("api", [*airlock, "api", "--host", api["host"], "--port", str(api["port"])], env)
        _wait_healthy(api_url, procs[-1])
        queues = list(worker.get("queues", ["default"]))
        start(
            "worker",
            [*airlock, "worker"],
            worker_env(
                payload_key=dev.payload_key,
                worker_token=worker_token,
                temporal_address=temporal_address,
                api_url=api_url,
                queues=queues,
                **logging_env,
            ),
        )
        triggerer = config.get("triggerer")
        if triggerer:
            start(
                "triggerer",
                [*airlock, "worker", "--triggerer", "--capacity", str(triggerer.get("capacity", 1000))],
                worker_env(
                    payload_key=dev.payload_key,
                    worker_token=worker_token,
                    temporal_address=temporal_address,
                    api_url=api_url,
                    queues=list(triggerer.get("queues", ["triggers"])),
                    **logging_env,
                ),
            )
        ui = f"http://{temporal.get('ip', '127.0.0.1')}:{temporal.get('ui_port', 8233)}"
        print(
            f"Airlock is up.\n"
            f"  API          {api_url}/docs\n"
            f"  Temporal UI  {ui}\n"
            f"  Temporal     {temporal_address}\n"
            f"  worker       queues {', '.join(queues)}\n"
            f"  triggerer    queues {', '.join((triggerer or {}).get('queues', [])) or '-'}\n"
            f"  API token    {state_dir / 'admin.token'} (the CLI reads it from there)\n"
            f"  logs         {logs}/\n"
            f"Try: airlock connections test --uri tcp://127.0.0.1:{api['port']}\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        while not stop:
            time.sleep(0.5)
            exited = next((p for p in procs if p.poll() is not None), None)
            if exited is not None and not stop:
                print(f"a process of the stack exited with status {exited.returncode}; see {logs}/")
                return 2
    finally:
        _stop_all(procs)
    print("Airlock stopped.")
    return 0


def _worker_token(env: dict[str, str], state_dir: Path) -> str:
    path = state_dir / "worker.token"
    if not path.exists():
        token = subprocess.run(
            [sys.executable, "-m", "airlock.cli", "tokens", "worker", "--name", "dev"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token)
    return path.read_text().strip()


def _wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the API exited during start; see .airlock/logs/api.log")
        try:
            if httpx.get(f"{api_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not become healthy within {timeout:.0f} s")


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 15
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
