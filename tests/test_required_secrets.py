"""The API refuses to start with a weak or missing secret, and says which: a 3-byte JWT secret, an
empty admin or codec token."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from api.core.config import SECRET_MINIMUMS, Settings
from api.main import create_app
from tests.reliability import record

WEAK = [
    ("jwt_secret", "abc", "AIRLOCK_JWT_SECRET is too short (3 bytes; at least 32)"),
    ("admin_token", "", "AIRLOCK_ADMIN_TOKEN is not set"),
    ("codec_token", "", "AIRLOCK_CODEC_TOKEN is not set"),
    ("codec_token", "x" * (SECRET_MINIMUMS["codec_token"] - 1), "AIRLOCK_CODEC_TOKEN is too short"),
    ("fernet_key", "", "AIRLOCK_FERNET_KEY is not set"),
    ("payload_key", "", "AIRLOCK_PAYLOAD_KEY is not set"),
    # Optional, but held to the same rule when set; `airlock dev` does not make it.
    ("metrics_token", "short", "AIRLOCK_METRICS_TOKEN is too short (5 bytes; at least 24)"),
]


def _env(dev_secrets: Any, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env.update({f"AIRLOCK_{name.upper()}": value for name, value in asdict(dev_secrets).items()})
    env["AIRLOCK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'never.db'}"
    env.update({f"AIRLOCK_{name.upper()}": value for name, value in overrides.items()})
    return env


@pytest.mark.parametrize("name, value, message", WEAK)
async def test_api_refuses_to_start_with_a_weak_secret(
    dev_secrets: Any, tmp_path: Path, name: str, value: str, message: str
) -> None:
    settings = Settings(
        **{**asdict(dev_secrets), name: value}, database_url=f"sqlite:///{tmp_path / 'never.db'}"
    )
    app = create_app(settings)
    with pytest.raises(SystemExit) as refused:
        async with app.router.lifespan_context(app):
            pass
    assert message in str(refused.value)
    assert ("airlock dev" in str(refused.value)) is (name in SECRET_MINIMUMS)
    assert value == "" or value not in str(refused.value).replace(message, "")
    assert not (tmp_path / "never.db").exists(), "the API touched the database before refusing"


def test_airlock_api_exits_naming_the_variable(dev_secrets: Any, tmp_path: Path) -> None:
    env = _env(dev_secrets, tmp_path, jwt_secret="abc", admin_token="")
    proc = subprocess.run(
        [sys.executable, "-m", "airlock.cli", "api", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "AIRLOCK_JWT_SECRET is too short (3 bytes; at least 32)" in output, output
    assert "AIRLOCK_ADMIN_TOKEN is not set" in output, output
    assert not (tmp_path / "never.db").exists(), "airlock api migrated before refusing"
    record(
        "weak secrets at start",
        len(WEAK) + 1,
        "each refused, naming the variable",
        "API lifespan, `airlock api`",
    )
