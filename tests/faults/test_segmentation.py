"""Segmentation for real: the API, Temporal and the metadata DB in a ``control`` network namespace, a
worker and its target in an ``edge`` namespace, one veth pair between them. The worker reaches
Temporal and the API and tests its target; it has no route to the database.

Every link an edge worker opens is mutual TLS, with certificates from a test CA: the API serves HTTPS
and asks for a client certificate; Temporal listens on control's loopback only, and the edges reach it
through a TLS-terminating proxy in control (``tests/tlsproxy.py``) that asks for one too. The workers
get the CA and a client certificate signed for them from their provisioning, and are not allowed
plaintext: one given a plain ``http://`` API URL refuses to start, before sending a packet.

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
from tests import pgcluster, secret_scan
from tests.netns import Namespace, Segment, clean_env, netns_unavailable, segment
from tests.pki import TestPKI
from tests.reliability import record
from tests.stack import pem_body, unique

REPO = Path(__file__).resolve().parents[2]
DB_PORT, TEMPORAL_PORT, API_PORT, TARGET_PORT = 5432, 7233, 8080, 8000
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in search_attributes.ALL}
# The name the workers expect on the Temporal proxy's certificate, whichever address they dial.
TEMPORAL_SERVER_NAME = "temporal.test"


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
    pki = TestPKI(tmp_path / "pki")
    # The API as the test reaches it (control's loopback) and as each edge does (its veth address).
    api_cert = pki.server(seg.control_ip, seg.control_b_ip, "127.0.0.1")
    temporal_cert = pki.server(TEMPORAL_SERVER_NAME, seg.control_ip, seg.control_b_ip)
    admin_cert = pki.client("segmentation-admin")
    api_inside = f"https://127.0.0.1:{API_PORT}"  # how the test reaches the API: from inside control
    admin = {
        "AIRLOCK_API_TOKEN": secrets.admin_token,
        "AIRLOCK_API_CA": str(pki.ca_file),
        "AIRLOCK_API_CLIENT_CERT": str(admin_cert.cert_file),
        "AIRLOCK_API_CLIENT_KEY": str(admin_cert.key_file),
    }

    # Temporal on control's loopback only: the edges reach it through the proxy's TLS, or not at all.
    temporal = temporal_command(
        {"ip": "127.0.0.1", "port": TEMPORAL_PORT, "headless": True, "search_attributes": SEARCH_ATTRIBUTES},
    )
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    server = seg.spawn(control, "temporal", temporal, env=plain_env, log_dir=tmp_path)
    proxy = seg.spawn(
        control,
        "temporal-tls-proxy",
        [
            sys.executable,
            "-m",
            "tests.tlsproxy",
            "--listen",
            f"{seg.control_ip}:{TEMPORAL_PORT}",
            "--listen",
            f"{seg.control_b_ip}:{TEMPORAL_PORT}",
            "--backend",
            f"127.0.0.1:{TEMPORAL_PORT}",
            "--cert",
            str(temporal_cert.cert_file),
            "--key",
            str(temporal_cert.key_file),
            "--client-ca",
            str(pki.ca_file),
        ],
        env=plain_env,
        log_dir=tmp_path,
        cwd=REPO,
    )
    _wait_port(seg, control, "127.0.0.1", TEMPORAL_PORT, server)
    # Not a probe connection: it would count as a refused handshake in the proxy's report.
    _wait_log(seg.logs["temporal-tls-proxy"], "listening on ", proxy)
    database_url = pg.url(host=seg.db_ip, database="airlock")
    api = seg.spawn(
        control,
        "api",
        [sys.executable, "-m", "airlock.cli", "api", "--host", "0.0.0.0", "--port", str(API_PORT)],
        env=api_env(
            secrets,
            temporal_address=f"127.0.0.1:{TEMPORAL_PORT}",
            database_url=database_url,
            # HTTPS, and every client must present a certificate from the test CA.
            AIRLOCK_TLS_CERT_FILE=str(api_cert.cert_file),
            AIRLOCK_TLS_KEY_FILE=str(api_cert.key_file),
            AIRLOCK_TLS_CLIENT_CA_FILE=str(pki.ca_file),
            # What provisioned workers are told: the API and Temporal as the edge reaches them, the CA
            # to verify both with, and a client certificate signed by that CA, for both.
            AIRLOCK_WORKER_API_URL=f"https://{seg.control_ip}:{API_PORT}",
            AIRLOCK_WORKER_TEMPORAL_ADDRESS=f"{seg.control_ip}:{TEMPORAL_PORT}",
            AIRLOCK_WORKER_API_CA_FILE=str(pki.ca_file),
            AIRLOCK_WORKER_CLIENT_CA_CERT_FILE=str(pki.ca_file),
            AIRLOCK_WORKER_CLIENT_CA_KEY_FILE=str(pki.ca_key_file),
            AIRLOCK_WORKER_TEMPORAL_TLS="true",
            AIRLOCK_WORKER_TEMPORAL_TLS_CA_FILE=str(pki.ca_file),
            AIRLOCK_WORKER_TEMPORAL_TLS_SERVER_NAME=TEMPORAL_SERVER_NAME,
        ),
        log_dir=tmp_path,
        cwd=REPO,
    )
    _wait_port(seg, control, "127.0.0.1", API_PORT, api)
    health = seg.client(control, "http", "GET", f"{api_inside}/health", env=admin)
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
    # Its provisioning made it a TLS client of both links, and nothing lets it fall back to plaintext.
    _assert_tls_env(env)
    refusal = _plain_api_refused(seg, env)
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
    proxied = _proxy_report(seg, proxy)
    total = time.monotonic() - started
    record(
        "segmentation: edge worker in its own network namespace",
        1,
        f"edge workers over mutual TLS to the API and to Temporal (via the TLS proxy: {proxied}); "
        f"{refusal}; "
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
        # edge-b reaches control through its own veth (both certificates name that address too).
        AIRLOCK_API_URL=f"https://{seg.control_b_ip}:{API_PORT}",
        AIRLOCK_TEMPORAL_ADDRESS=f"{seg.control_b_ip}:{TEMPORAL_PORT}",
        AIRLOCK_JOB_HEARTBEAT_INTERVAL="1",
    )
    assert env_b["AIRLOCK_PAYLOAD_KEYS"] != env_a["AIRLOCK_PAYLOAD_KEYS"]
    _assert_tls_env(env_b)
    assert env_b["AIRLOCK_API_CLIENT_CERT"] != env_a["AIRLOCK_API_CLIENT_CERT"]
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

    # Nor through the API: edge-a's credential and client certificate, from inside edge-a, get
    # nothing of edge-b.
    api_from_a = f"https://{seg.control_ip}:{API_PORT}/execution"
    as_a = {
        "AIRLOCK_API_TOKEN": env_a["AIRLOCK_WORKER_TOKEN"],
        "AIRLOCK_API_VERSION": LATEST_EXECUTION_API_VERSION,
        **{k: env_a[k] for k in ("AIRLOCK_API_CA", "AIRLOCK_API_CLIENT_CERT", "AIRLOCK_API_CLIENT_KEY")},
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
    # What no log of any process here may show: the credential, the payload keys, the client key.
    secret_scan.register(env["AIRLOCK_WORKER_TOKEN"], secret_scan.TOKEN)
    for key in json.loads(env["AIRLOCK_PAYLOAD_KEYS"]).values():
        secret_scan.register(key, secret_scan.KEY)
    secret_scan.register(pem_body(env["AIRLOCK_API_CLIENT_KEY"]), secret_scan.KEY)
    return env


def _assert_tls_env(env: dict[str, str]) -> None:
    """A provisioned edge worker's env: HTTPS to the API and TLS to Temporal, each with the test CA
    inline and a client certificate, and no opt-in to plaintext."""
    assert env["AIRLOCK_API_URL"].startswith("https://"), env["AIRLOCK_API_URL"]
    assert env["AIRLOCK_TEMPORAL_TLS"] == "true"
    assert env["AIRLOCK_TEMPORAL_TLS_SERVER_NAME"] == TEMPORAL_SERVER_NAME
    for name in ("AIRLOCK_API_CA", "AIRLOCK_TEMPORAL_TLS_CA"):
        assert env[name].startswith("-----BEGIN CERTIFICATE-----"), name
    for name in ("AIRLOCK_API_CLIENT_CERT", "AIRLOCK_TEMPORAL_TLS_CERT"):
        assert "-----BEGIN CERTIFICATE-----" in env[name], name
    for name in ("AIRLOCK_API_CLIENT_KEY", "AIRLOCK_TEMPORAL_TLS_KEY"):
        assert "PRIVATE KEY-----" in env[name], name
    assert "AIRLOCK_ALLOW_PLAINTEXT" not in env, "edge workers must not be allowed plaintext"


def _plain_api_refused(seg: Segment, env: dict[str, str]) -> str:
    """The edge worker's own env, but a plain ``http://`` API URL: it refuses to start (status 2,
    saying why), and the edge's veth sends not one packet meanwhile."""
    plain_url = f"http://{seg.control_ip}:{API_PORT}"
    sent_before = seg.edge.tx_packets(seg.edge_if)
    done = subprocess.run(
        seg.edge.command(sys.executable, "-m", "airlock.cli", "worker"),
        env=clean_env({**env, "AIRLOCK_API_URL": plain_url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    sent = seg.edge.tx_packets(seg.edge_if) - sent_before
    refusal = f"refusing to reach the API at {seg.control_ip} without TLS"
    assert done.returncode == 2 and refusal in done.stderr, (done.returncode, done.stderr[-2000:])
    assert sent == 0, f"the refused worker's namespace sent {sent} packets on {seg.edge_if}"
    return f"a worker given {plain_url} refused to start (exit 2, 0 packets sent)"


def _proxy_report(seg: Segment, proxy: subprocess.Popen[bytes]) -> str:
    """Stop the Temporal TLS proxy and read its stats: each edge's listener carried connections to
    Temporal, and no handshake was refused (nobody tried plaintext or a foreign certificate)."""
    proxy.terminate()
    proxy.wait(timeout=15)
    lines = seg.logs["temporal-tls-proxy"].read_text(errors="replace").splitlines()
    stats = json.loads(next(line for line in reversed(lines) if line.startswith("stats "))[len("stats ") :])
    per_edge = {}
    for name, ip in (("edge", seg.control_ip), ("edge-b", seg.control_b_ip)):
        listener = stats[f"{ip}:{TEMPORAL_PORT}"]
        assert listener["handshake_errors"] == [], listener
        count = sum(listener["connections"].values())
        assert count >= 1, f"no connection to Temporal through {ip}: {stats}"
        per_edge[name] = count
    return ", ".join(f"{name} {count} connection(s)" for name, count in per_edge.items())


def _wait_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{path.name}: exited with {proc.returncode} before printing {text!r}"
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path.name}: no {text!r} after {timeout} s")


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
