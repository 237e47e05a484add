"""DESIGN.md invariant 1, machine-checked: worker-side code never loads the database layer or the API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement

FORBIDDEN = ("sqlalchemy", "alembic", "api", "fastapi", "cadwyn", "aiosqlite", "aiomysql", "jwt")


def test_worker_process_imports_no_database_layer() -> None:
    """Import everything a worker runs in a clean interpreter and inspect sys.modules."""
    script = (
        "import json, sys\n"
        "import worker.main, worker.config, worker.client, worker.liveness, worker.isolation, worker.cli\n"
        "import activities.connection_test, activities.trigger_run, activities.testers.child\n"
        "import airlock.cli, airlock.sdk, airlock.triggers\n"
        "from airlock.plugins import load_worker_role\n"
        "load_worker_role('worker'), load_worker_role('triggerer')\n"
        "import workflows.connection_test\n"
        "from activities.testers import available_conn_types, load_tester\n"
        "for name in available_conn_types(): load_tester(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    offending = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offending == []


def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Every distribution a `pip install` of these requirements pulls in, from installed metadata."""
    seen: set[str] = set()
    pending = [(r, extras) for r in requirements]
    while pending:
        raw, active = pending.pop()
        req = Requirement(raw)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        seen.add(name)
        dist = distribution(req.name)
        pending.extend((r, set(req.extras)) for r in dist.requires or [])
    return seen


def test_worker_install_carries_no_api_dependencies() -> None:
    """`pip install '.[worker]'` brings neither FastAPI, SQLAlchemy nor Alembic."""
    own = distribution("airlock")
    base = [r for r in own.requires or [] if "extra ==" not in r]
    worker_extra = [r.split(";")[0] for r in own.requires or [] if 'extra == "worker"' in r]
    closure = _closure(base + worker_extra, set())
    assert {"temporalio", "httpx", "psycopg", "pymysql", "redis"} <= closure
    assert not closure & {
        "fastapi",
        "sqlalchemy",
        "alembic",
        "cadwyn",
        "uvicorn",
        "aiosqlite",
        "aiomysql",
        "pyjwt",
    }


def test_worker_settings_have_no_database_url() -> None:
    from worker.config import WorkerSettings

    assert not [name for name in WorkerSettings.model_fields if "database" in name or "db_" in name]
