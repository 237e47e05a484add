"""The real parts, started for tests: a Temporal dev server, the API (in-process uvicorn on a free
port), workers as child processes (``airlock worker``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import WorkflowExecutionDescription, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from airlock.devstack import DevSecrets, api_env, worker_env
from api.core.config import Settings
from api.deps import Runtime
from api.main import GRACEFUL_SHUTDOWN_SECONDS, KEEP_ALIVE_SECONDS, create_app, tls_options
from api.temporal.reaper import ConnectionTestReaper
from tests import secret_scan
from tests.pki import ClientCert, TestPKI, client_context

TERMINAL = {"success", "failed"}


def stack_settings(
    secrets: DevSecrets, temporal_address: str, database_url: str, /, **overrides: Any
) -> Settings:
    """API settings for a throwaway stack: its own control queue, the given secrets and database."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "temporal_address": temporal_address,
        "fernet_key": secrets.fernet_key,
        "payload_key": secrets.payload_key,
        "jwt_secret": secrets.jwt_secret,
        "admin_token": secrets.admin_token,
        "codec_token": secrets.codec_token,
        "control_queue": f"control-{uuid.uuid4().hex[:8]}",
        # Every workflow path the tests take is checked for non-determinism.
        "workflow_sandbox": True,
    }
    return Settings(**{**values, **overrides})


@dataclass(frozen=True)
class StackTLS:
    """HTTPS with client certificates required, on a test CA: the API presents a certificate for
    127.0.0.1, signs each provisioned worker a client certificate, and the harness (its clients, the
    CLI) presents ``admin``."""

    pki: TestPKI
    admin: ClientCert

    @classmethod
    def create(cls, directory: Path) -> StackTLS:
        pki = TestPKI(directory)
        return cls(pki, pki.client("harness"))

    def api_settings(self) -> dict[str, Any]:
        server = self.pki.server("127.0.0.1", "localhost")
        return {
            "tls_cert_file": server.cert_file,
            "tls_key_file": server.key_file,
            "tls_client_ca_file": self.pki.ca_file,
            "worker_api_ca_file": self.pki.ca_file,
            "worker_client_ca_cert_file": self.pki.ca_file,
            "worker_client_ca_key_file": self.pki.ca_key_file,
        }

    def client_context(self) -> ssl.SSLContext:
        return client_context(self.pki.ca_file, self.admin)

    def cli_env(self) -> dict[str, str]:
        return {
            "AIRLOCK_API_CA": str(self.pki.ca_file),
            "AIRLOCK_API_CLIENT_CERT": str(self.admin.cert_file),
            "AIRLOCK_API_CLIENT_KEY": str(self.admin.key_file),
        }


def api_url(settings: Settings, port: int) -> str:
    return f"{'https' if settings.tls_cert_file else 'http'}://127.0.0.1:{port}"


@dataclass
class ApiServer:
    settings: Settings
    port: int
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return api_url(self.settings, self.port)

    async def start(self) -> None:
        # INFO with the access log, into the root logger: the secret scan reads what an operator
        # running the API with access logs would see (request paths included).
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_level="info",
            log_config=None,
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            **tls_options(self.settings),
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(300):
            if self.server.started:
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        raise TimeoutError("API did not start")

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


@dataclass
class ApiProcess:
    """The API as an operator runs it: ``airlock api`` in a child process, logging into ``log_path``
    with the process's own logging setup (the in-process ``ApiServer`` logs into the test process)."""

    settings: Settings
    secrets: DevSecrets
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    # How the harness verifies it (and the client certificate it presents) when it serves HTTPS.
    verify: ssl.SSLContext | bool = True
    # False: ``--no-migrate``, for replicas of a database an ``airlock db upgrade`` step migrated.
    migrate: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return api_url(self.settings, self.port)

    async def start(self) -> None:
        env = api_env(
            self.secrets,
            temporal_address=self.settings.temporal_address,
            database_url=self.settings.database_url,
            AIRLOCK_CONTROL_QUEUE=self.settings.control_queue,
            AIRLOCK_JOB_LIVENESS_TIMEOUT=str(self.settings.job_liveness_timeout),
            **self.env,
        )
        command = [
            sys.executable,
            "-m",
            "airlock.cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *([] if self.migrate else ["--no-migrate"]),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        async with httpx.AsyncClient(base_url=self.url, timeout=2, verify=self.verify) as client:
            for _ in range(600):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"airlock api exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("airlock api did not become healthy")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@dataclass
class Stack:
    secrets: DevSecrets
    temporal_address: str
    api: ApiServer | ApiProcess
    log_dir: Path
    tls: StackTLS | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Each worker's output, by pid.
    worker_logs: dict[int, Path] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.api.settings

    def reaper(self) -> ConnectionTestReaper:
        """A reaper on this replica's runtime, to run a pass now instead of waiting for the grace."""
        assert isinstance(self.api, ApiServer) and self.api.server is not None
        runtime: Runtime = self.api.server.config.app.state.runtime
        assert runtime.temporal is not None
        return ConnectionTestReaper(runtime.temporal, self.settings, runtime.sessions, runtime.box)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api.url,
            headers={"Authorization": f"Bearer {token or self.secrets.admin_token}"},
            timeout=30,
            verify=self.tls.client_context() if self.tls else True,
        )

    async def provision(self, name: str, queues: list[str], *, triggerer: bool = False) -> dict[str, str]:
        """A worker's env from ``POST /api/v2/workers`` (under a unique name, so tests can reuse one)."""
        request = {
            "name": f"{name.lower()}-{uuid.uuid4().hex[:6]}",
            "queues": queues,
            "triggerer": triggerer,
            "expires_in_days": 1,
        }
        async with self.client() as client:
            response = await client.post("/api/v2/workers", json=request)
        assert response.status_code == 201, response.text
        env: dict[str, str] = response.json()["env"]
        secret_scan.register(env["AIRLOCK_WORKER_TOKEN"], secret_scan.TOKEN)
        for key in json.loads(env["AIRLOCK_PAYLOAD_KEYS"]).values():
            secret_scan.register(key, secret_scan.KEY)
        if "AIRLOCK_API_CLIENT_KEY" in env:
            secret_scan.register(pem_body(env["AIRLOCK_API_CLIENT_KEY"]), secret_scan.KEY)
        # The API's answer when the stack set worker_api_url (replicas behind a proxy, say); otherwise
        # this API's own URL, since the default names no test's port.
        if "worker_api_url" in self.settings.model_fields_set:
            return env
        return {**env, "AIRLOCK_API_URL": self.api.url}

    async def start_worker(self, *queues: str, name: str = "test", **env: str) -> subprocess.Popen[bytes]:
        triggerer = env.get("AIRLOCK_TRIGGERER", "").lower() == "true"
        process_env = worker_env(
            await self.provision(name, list(queues), triggerer=triggerer),
            **{
                "AIRLOCK_JOB_HEARTBEAT_INTERVAL": "1",
                "AIRLOCK_EGRESS_ALLOW_LOOPBACK": "true",  # every target of the suite listens on 127.0.0.1
                **env,
            },
        )
        log_path = self.log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "airlock.cli", "worker"],
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        self.worker_logs[proc.pid] = log_path
        return proc

    async def serve_queue(self, prefix: str = "net", workers: int = 1) -> str:
        """A fresh queue with live workers on it: tests never share queues."""
        queue = unique(prefix)
        for n in range(workers):
            await self.start_worker(queue, name=f"{prefix}-{n}")
        await self.wait_worker(queue)
        return queue

    async def wait_worker(self, queue: str, timeout: float = 30) -> dict[str, Any]:
        async with self.client() as client:
            for _ in range(int(timeout * 10)):
                jobs = (await client.get("/api/v2/jobs", params={"alive": True})).json()["jobs"]
                for job in jobs:
                    if queue in job["queues"]:
                        return dict(job)
                await asyncio.sleep(0.1)
        raise TimeoutError(f"no worker registered for {queue}")

    async def cli(self, *args: str, stdin: str | None = None, **env_overrides: str) -> tuple[int, str]:
        """Run ``airlock ARGS`` against this stack, as a user would: exit status and output (stdout and
        stderr together), with ``stdin`` as its input. ``env_overrides`` set more of the environment
        (``COLUMNS``, say)."""
        env = {
            **os.environ,
            "AIRLOCK_API_TOKEN": self.secrets.admin_token,
            "AIRLOCK_API_URL": self.api.url,
            **(self.tls.cli_env() if self.tls else {}),
            **env_overrides,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "airlock.cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(None if stdin is None else stdin.encode())
        # `airlock workers add` without --env-file prints a worker's credential and its queues' keys: its
        # purpose. Nothing else prints one, or any password.
        handing_out = args[:2] == ("workers", "add") and "--env-file" not in args
        forbidden = secret_scan.NOT_KEYS_OR_TOKENS if handing_out else secret_scan.EVERYTHING
        secret_scan.SESSION.check_output(out.decode(), f"output of airlock {' '.join(args[:2])}", forbidden)
        return proc.returncode or 0, out.decode()

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.workers.clear()


async def wait_terminal(client: httpx.AsyncClient, test_id: str, timeout: float = 120) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        response = await client.get(f"/api/v2/connections/test/{test_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["state"] in TERMINAL:
            return body
        await asyncio.sleep(0.1)
    raise TimeoutError(f"test {test_id} did not end within {timeout} s")


def pem_body(pem: str) -> str:
    """The longest line of a PEM block: what a leak of it shows, whichever way it is wrapped."""
    return max(pem.splitlines(), key=len)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def started(handle: WorkflowHandle[Any, Any], timeout: float = 30) -> WorkflowExecutionDescription:
    """The workflow's description once it exists: the API starts a workflow just after answering."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await handle.describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)
