"""Segmentation for real: the API, Temporal and the metadata DB in a ``control`` network namespace, a
worker and its target in an ``edge`` namespace, one veth pair between them. The worker reaches
Temporal and the API and tests its target; it has no route to the database.

Safety (see ``tests/netns.py``): private addresses the host does not use, no default route in either
namespace, routes checked with ``ip route get`` before any traffic, every client run inside a
namespace (the host sends nothing to these addresses), everything torn down in ``finally``."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airlock import search_attributes
from airlock.devstack import DevSecrets, api_env, temporal_command, worker_env
from airlock.version import LATEST_EXECUTION_API_VERSION
from tests import pgcluster
from tests.netns import Namespace, Segment, netns_unavailable, segment
from tests.reliability import record
from tests.stack import unique

REPO = Path(__file__).resolve().parents[2]
DB_PORT, TEMPORAL_PORT, API_PORT, TARGET_PORT = 5432, 7233, 8080, 8000
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in search_attributes.ALL}


@pytest.mark.slow
def test_edge_worker_reaches_temporal_and_the_api_but_never_the_database(
    dev_secrets: DevSecrets, tmp_path: Path
) -> None:
    reason = netns_unavailable()
    if reason is not None:
        print(f"segmentation test skipped: {reason}")
        pytest.skip(reason)
    pgcluster.require()
    started = time.monotonic()
    with segment() as seg:
        try:
            # Before any traffic: every address stays on the veth or lo, and nothing routes out.
            checks = seg.verify_routes()
            print("route checks before traffic:\n  " + "\n  ".join(checks))
            with pgcluster.private_cluster(
                DB_PORT,
                listen_addresses=seg.db_ip,
                trust=[f"{seg.db_ip}/32"],
                netns=seg.control.name,
                databases=["airlock"],
            ) as pg:
                try:
                    _run_scenario(seg, pg, dev_secrets, tmp_path, started, len(checks))
                finally:
                    seg.stop_processes()  # before the cluster goes, so the API never sees it vanish
        except BaseException:
            print(seg.log_tails())
            raise


def _run_scenario(
    seg: Segment, pg: pgcluster.PgCluster, secrets: DevSecrets, tmp_path: Path, started: float, checks: int
) -> None:
    control, edge = seg.control, seg.edge
    api_inside = f"http://127.0.0.1:{API_PORT}"  # how the test reaches the API: from inside control
    admin = {"AIRLOCK_API_TOKEN": secrets.admin_token}

    temporal = temporal_command(
        {"ip": "0.0.0.0", "port": TEMPORAL_PORT, "headless": True, "search_attributes": SEARCH_ATTRIBUTES},
    )
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    server = seg.spawn(control, "temporal", temporal, env=plain_env, log_dir=tmp_path)
    _wait_port(seg, control, "127.0.0.1", TEMPORAL_PORT, server)
    database_url = pg.url(host=seg.db_ip, database="airlock")
    api = seg.spawn(
        control,
        "api",
        [sys.executable, "-m", "airlock.cli", "api", "--host", "0.0.0.0", "--port", str(API_PORT)],
        env=api_env(
            secrets,
            temporal_address=f"127.0.0.1:{TEMPORAL_PORT}",
            database_url=database_url,
            # What provisioned workers are told: the API and Temporal as the edge reaches them.
            AIRLOCK_WORKER_API_URL=f"http://{seg.control_ip}:{API_PORT}",
            AIRLOCK_WORKER_TEMPORAL_ADDRESS=f"{seg.control_ip}:{TEMPORAL_PORT}",
        ),
        log_dir=tmp_path,
        cwd=REPO,
    )
    _wait_port(seg, control, "127.0.0.1", API_PORT, api)
    health = seg.client(control, "http", "GET", f"{api_inside}/health")
    assert health["status"] == 200, health

    target_dir = tmp_path / "target"
    target_dir.mkdir()
    target = seg.spawn(
        edge,
        "target",
        [
            sys.executable,
            "-m",
            "http.server",
            str(TARGET_PORT),
            "--bind",
            seg.edge_ip,
            "--directory",
            str(target_dir),
        ],
        env=plain_env,
        log_dir=tmp_path,
    )
    _wait_port(seg, edge, seg.edge_ip, TARGET_PORT, target)
    stack_ready = time.monotonic() - started

    queue = unique("edge")
    env = worker_env(_provision(seg, api_inside, admin, "edge-1", queue), AIRLOCK_JOB_HEARTBEAT_INTERVAL="1")
    # Invariant 1: a worker is given no database URL or credential at all.
    assert not [k for k in env if "DATABASE" in k.upper()], sorted(env)
    spawned = time.monotonic()
    worker = seg.spawn(
        edge, "worker", [sys.executable, "-m", "airlock.cli", "worker"], env=env, log_dir=tmp_path, cwd=REPO
    )
    registered = seg.client(control, "wait-job", api_inside, queue, "60", env=admin)
    assert registered["ok"], "the edge worker never registered its job through the API"
    to_registered = time.monotonic() - spawned
    identity = registered["job"]["hostname"]
    assert identity.endswith(f":{worker.pid}"), (identity, worker.pid)

    # The edge target, tested by the edge worker, submitted through the API from inside control.
    submitted = time.monotonic()
    ok_test = _connection_test(
        seg,
        api_inside,
        admin,
        {"conn_type": "http", "host": seg.edge_ip, "port": TARGET_PORT, "queue": queue},
    )
    edge_test_seconds = time.monotonic() - submitted
    assert ok_test["state"] == "success", ok_test
    assert ok_test["worker"] == identity, (ok_test["worker"], identity)

    # The edge has no route to the database: the kernel says so, and real attempts fail.
    code, routes, err = edge.route_get(seg.db_ip)
    assert code != 0 and not routes and "unreachable" in err.lower(), (code, routes, err)
    to_db = seg.client(edge, "connect", seg.db_ip, str(DB_PORT), "5")
    assert to_db["ok"] is False and to_db["errno"] == errno.ENETUNREACH, to_db
    # Nor through control's veth address: the database does not listen there.
    via_veth = seg.client(edge, "connect", seg.control_ip, str(DB_PORT), "5")
    assert via_veth["ok"] is False and via_veth["errno"] == errno.ECONNREFUSED, via_veth
    # The same probes succeed where they should, so the failures above are the segmentation at work.
    assert seg.client(edge, "connect", seg.control_ip, str(API_PORT), "5")["ok"] is True
    assert seg.client(control, "connect", seg.db_ip, str(DB_PORT), "5")["ok"] is True

    db_tests = []
    for host in (seg.db_ip, seg.control_ip):
        body = {
            "conn_type": "postgres",
            "host": host,
            "port": DB_PORT,
            "login": "postgres",
            "schema": "airlock",
            "queue": queue,
            "timeout": 10,
        }
        result = _connection_test(seg, api_inside, admin, body)
        # It ran on the edge worker (not refused for want of one) and could not reach the database.
        assert result["state"] == "failed" and result["worker"] == identity, result
        db_tests.append(f"{host}: {result['result_message']}")
    print("postgres tests from the edge:\n  " + "\n  ".join(db_tests))

    edge_b_report = _second_segment(seg, tmp_path, api_inside, admin, queue, identity, env)

    assert pg.running()
    total = time.monotonic() - started
    record(
        "segmentation: edge worker in its own network namespace",
        1,
        f"edge target test success on worker {identity}; edge -> DB: no route (ENETUNREACH), "
        f"via control's veth refused, 2 postgres tests from the edge failed; {edge_b_report}; "
        f"{checks} route checks passed before any traffic",
        f"stack up in {stack_ready:.1f} s, worker start to registered {to_registered:.1f} s, "
        f"edge connection test {edge_test_seconds:.2f} s (submit to terminal, incl. client start), "
        f"whole test {total:.1f} s",
    )


def _second_segment(
    seg: Segment,
    tmp_path: Path,
    api_inside: str,
    admin: dict[str, str],
    queue_a: str,
    identity_a: str,
    env_a: dict[str, str],
) -> str:
    """edge-b, with its own worker and target: its tests run there; from edge-a nothing of edge-b can
    be fetched, neither over the network nor through the API with edge-a's credential."""
    control, edge_a, edge_b = seg.control, seg.edge, seg.edge_b
    queue_b = unique("edge-b")
    env_b = worker_env(
        _provision(seg, api_inside, admin, "edge-b-1", queue_b),
        # edge-b reaches control through its own veth.
        AIRLOCK_API_URL=f"http://{seg.control_b_ip}:{API_PORT}",
        AIRLOCK_TEMPORAL_ADDRESS=f"{seg.control_b_ip}:{TEMPORAL_PORT}",
        AIRLOCK_JOB_HEARTBEAT_INTERVAL="1",
    )
    assert env_b["AIRLOCK_PAYLOAD_KEYS"] != env_a["AIRLOCK_PAYLOAD_KEYS"]
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    target_dir = tmp_path / "target-b"
    target_dir.mkdir()
    target = seg.spawn(
        edge_b,
        "target-b",
        [
            sys.executable,
            "-m",
            "http.server",
            str(TARGET_PORT),
            "--bind",
            seg.edge_b_ip,
            "--directory",
            str(target_dir),
        ],
        env=plain_env,
        log_dir=tmp_path,
    )
    _wait_port(seg, edge_b, seg.edge_b_ip, TARGET_PORT, target)
    worker_b = seg.spawn(
        edge_b,
        "worker-b",
        [sys.executable, "-m", "airlock.cli", "worker"],
        env=env_b,
        log_dir=tmp_path,
        cwd=REPO,
    )
    registered = seg.client(control, "wait-job", api_inside, queue_b, "60", env=admin)
    assert registered["ok"], "the edge-b worker never registered its job through the API"
    identity_b = registered["job"]["hostname"]
    assert identity_b.endswith(f":{worker_b.pid}"), (identity_b, worker_b.pid)

    target_b = {"conn_type": "http", "host": seg.edge_b_ip, "port": TARGET_PORT}
    on_b = _connection_test(seg, api_inside, admin, {**target_b, "queue": queue_b})
    assert on_b["state"] == "success" and on_b["worker"] == identity_b, on_b
    # edge-a's worker cannot reach edge-b's target: no route between the segments.
    from_a = _connection_test(seg, api_inside, admin, {**target_b, "queue": queue_a, "timeout": 5})
    assert from_a["state"] == "failed" and from_a["worker"] == identity_a, from_a
    probe = seg.client(edge_a, "connect", seg.edge_b_ip, str(TARGET_PORT), "5")
    assert probe["ok"] is False and probe["errno"] == errno.ENETUNREACH, probe

    # Nor through the API: edge-a's credential, from inside edge-a, gets nothing of edge-b.
    api_from_a = f"http://{seg.control_ip}:{API_PORT}/execution"
    as_a = {
        "AIRLOCK_API_TOKEN": env_a["AIRLOCK_WORKER_TOKEN"],
        "AIRLOCK_API_VERSION": LATEST_EXECUTION_API_VERSION,
    }
    pending = seg.client(
        control,
        "http",
        "POST",
        f"{api_inside}/api/v2/connections/test",
        json.dumps({**target_b, "queue": queue_b}),
        env=admin,
    )
    assert pending["status"] == 202, pending
    b_test = pending["body"]["id"]
    claim = seg.client(
        edge_a,
        "http",
        "POST",
        f"{api_from_a}/connection-tests/{b_test}/claim",
        json.dumps({"worker": "a"}),
        env=as_a,
    )
    read = seg.client(edge_a, "http", "GET", f"{api_from_a}/connection-tests/{b_test}/connection", env=as_a)
    job = seg.client(
        edge_a,
        "http",
        "POST",
        f"{api_from_a}/jobs",
        json.dumps({"hostname": "a", "queues": [queue_b]}),
        env=as_a,
    )
    assert (claim["status"], read["status"], job["status"]) == (403, 403, 403), (claim, read, job)
    done = seg.client(control, "wait-test", api_inside, b_test, "60", env=admin)
    assert done["ok"] and done["test"]["worker"] == identity_b, done
    return (
        f"edge-b target test success on worker {identity_b}, from edge-a: no route (ENETUNREACH) "
        "and claim/connection/job registration for edge-b refused (403)"
    )


def _provision(seg: Segment, api: str, admin: dict[str, str], name: str, queue: str) -> dict[str, str]:
    """``POST /api/v2/workers`` from inside control: the worker's env, as the API hands it out."""
    body = json.dumps({"name": name, "queues": [queue]})
    provisioned = seg.client(seg.control, "http", "POST", f"{api}/api/v2/workers", body, env=admin)
    assert provisioned["status"] == 201, provisioned
    env: dict[str, str] = provisioned["body"]["env"]
    return env


def _wait_port(
    seg: Segment, ns: Namespace, host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Short rounds, so a process that died at start fails the test at once (its log is printed).
        assert proc.poll() is None, f"what should listen on {host}:{port} exited with {proc.returncode}"
        if seg.client(ns, "wait-port", host, str(port), "3")["ok"]:
            return
    raise AssertionError(f"nothing listens on {host}:{port} in {ns.name} after {timeout} s")


def _connection_test(seg: Segment, api: str, admin: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    submitted = seg.client(
        seg.control, "http", "POST", f"{api}/api/v2/connections/test", json.dumps(body), env=admin
    )
    assert submitted["status"] == 202, submitted
    done = seg.client(seg.control, "wait-test", api, submitted["body"]["id"], "60", env=admin)
    assert done["ok"], f"test did not end: {done}"
    test: dict[str, Any] = done["test"]
    return test
