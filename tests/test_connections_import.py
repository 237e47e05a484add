"""``airlock connections import``: an Airflow export and ``AIRFLOW_CONN_*`` variables saved through a
real API, each entry reported, a malformed one refused alone, then tested on a real worker. The
formats themselves are read in tests/test_airflow_import.py."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from tests import secret_scan, services


async def test_an_airflow_export_is_imported_reported_and_tested(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue("import")
    pg = make_url(services.postgres_url())
    password = secret_scan.password()
    async with stack.client() as client:
        kept = {"connection_id": "kept", "conn_type": "tcp", "host": "127.0.0.1", "port": 1}
        assert (await client.post("/api/v2/connections", json=kept)).status_code == 201
    target = {"conn_type": "postgres", "host": pg.host, "port": pg.port, "schema": pg.database}
    export = {
        "warehouse": {
            **target,
            "login": pg.username,
            "password": password,
            "extra": '{"sslmode": "disable"}',
        },
        "nobody": {**target, "login": "airlock_nobody", "password": password, "extra": ""},
        "broken": {**target, "port": "not-a-port", "password": password},
        "kept": {"conn_type": "postgres", "host": "elsewhere"},
    }
    exported = tmp_path / "connections.json"
    exported.write_text(json.dumps(export))

    code, output = await stack.cli(
        "connections", "import", str(exported), "--test", "--queue", queue, "--json"
    )
    report = json.loads(output)
    assert code == 2, output  # an entry was refused
    results = {r["connection_id"]: (r["result"], r["detail"]) for r in report["connections"]}
    assert results["warehouse"] == ("created", None) and results["nobody"] == ("created", None)
    assert results["kept"][0] == "skipped" and results["broken"][0] == "refused"
    assert results["broken"][1].startswith("port: "), results
    tests = {t["connection_id"]: t for t in report["tests"]}
    assert sorted(tests) == ["nobody", "warehouse"]
    assert tests["warehouse"]["state"] == "success" and tests["warehouse"]["queue"] == queue
    assert tests["nobody"]["state"] == "failed" and "airlock_nobody" in tests["nobody"]["result_message"]

    # From the environment, replacing what is saved: every field the variable gives, the rest cleared.
    uri = f"postgres://{pg.username}:{quote(password, safe='')}@{pg.host}:{pg.port}/{pg.database}"
    code, output = await stack.cli(
        "connections",
        "import",
        "--from-env",
        "--existing",
        "update",
        "--test",
        "--queue",
        queue,
        AIRFLOW_CONN_KEPT=uri,
        COLUMNS="200",
    )
    assert code == 0, output
    assert "kept" in output and "updated" in output and "success" in output, output
    async with stack.client() as client:
        saved = (await client.get("/api/v2/connections/kept")).json()
    assert (saved["conn_type"], saved["host"], saved["port"], saved["has_password"]) == (
        "postgres",
        pg.host,
        pg.port,
        True,
    )
