"""The egress policy of testers and triggers (airlock/egress.py, worker/egress.py).

Real sockets on loopback only: a destination off this machine is only ever checked, with every
``connect`` made to fail the test, so that nothing is sent anywhere.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from activities.testers import load_tester
from activities.triggers.http import HttpTrigger
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied, EgressPolicy, EgressRule, pinned_resolution
from tests.stack import unique, wait_terminal
from worker import egress
from worker.config import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = EgressPolicy(allow_loopback=True)
REFUSED = "is not allowed on this worker"


def check(policy: EgressPolicy, address: str, port: int = 80) -> str | None:
    return policy.refusal(ipaddress.ip_address(address), port)


# --- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address it reaches
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # 169.254.169.254 through NAT64
        ("fd00:ec2::254", "cloud metadata service"),
        ("100.100.100.200", "cloud metadata service"),
        ("0.0.0.0", "unspecified address"),
        ("0.1.2.3", "unspecified address"),
        ("::", "unspecified address"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved address"),
    ],
)
def test_the_default_policy_refuses(address: str, reason: str) -> None:
    assert check(EgressPolicy(), address) == reason


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "fd12::1", "8.8.8.8", "2001:db8::1"]
)
def test_the_default_policy_allows_public_and_private_unicast(address: str) -> None:
    assert check(EgressPolicy(), address) is None


def test_opt_ins_allow_loopback_and_link_local_but_never_the_rest() -> None:
    everything = EgressPolicy(allow_loopback=True, allow_link_local=True)
    for address in ("127.0.0.1", "::1", "169.254.169.254", "fe80::1", "fd00:ec2::254"):
        assert check(everything, address) is None, address
    assert check(LOOPBACK, "169.254.169.254") == "link-local"
    for address in ("0.0.0.0", "::", "224.0.0.1", "255.255.255.255"):
        assert check(everything, address) is not None, address


def test_cidr_and_port_allowlists() -> None:
    policy = EgressPolicy.model_validate(
        {"allow": ["10.0.0.0/8:5432-5439", "192.168.1.7", "[fd00::/8]:443", "*:8443"], "allow_loopback": True}
    )
    assert check(policy, "10.1.1.1", 5432) is None
    assert check(policy, "10.1.1.1", 5439) is None
    assert check(policy, "10.1.1.1", 80) == "outside the allowed networks and ports"
    assert check(policy, "192.168.1.7", 22) is None
    assert check(policy, "192.168.1.8", 22) == "outside the allowed networks and ports"
    assert check(policy, "fd00::5", 443) is None
    assert check(policy, "fd00::5", 80) is not None
    assert check(policy, "8.8.8.8", 8443) is None and check(policy, "2001:db8::1", 8443) is None
    # Loopback still needs a rule that covers it, the opt-in only lifts the category's refusal.
    assert check(policy, "127.0.0.1", 8443) is None
    assert check(policy, "127.0.0.1", 80) == "outside the allowed networks and ports"
    assert [str(rule) for rule in policy.allow] == [
        "10.0.0.0/8:5432-5439",
        "192.168.1.7/32",
        "[fd00::/8]:443",
        "*:8443",
    ]


@pytest.mark.parametrize(
    "rule", ["", "10.0.0.0/33", "example.com", "10.0.0.0/8:0", "10.0.0.0/8:80-70", "*:x", "[::1]x"]
)
def test_malformed_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="egress rule"):
        EgressRule.parse(rule)


def test_the_message_names_the_address_and_the_reason() -> None:
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy().check("169.254.169.254", 80)
    assert str(caught.value) == "egress to 169.254.169.254:80 is not allowed on this worker: link-local"
    with pytest.raises(
        EgressDenied, match=r"^egress to \[::1\]:6379 .*: loopback \(db\.local resolves to ::1\)$"
    ):
        EgressPolicy().check("::1", 6379, "db.local")


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [_info("203.0.113.5"), _info("127.0.0.1")]
    monkeypatch.setattr("airlock.egress._real_getaddrinfo", lambda *args: answers)
    with pytest.raises(EgressDenied, match=r"127\.0\.0\.1:80 .*loopback \(mixed\.example resolves to"):
        EgressPolicy().resolve("mixed.example", 80)
    assert LOOPBACK.resolve("mixed.example", 80) == answers


def test_a_hostname_is_checked_after_dns() -> None:
    with pytest.raises(EgressDenied, match=r": loopback \(localhost resolves to (127\.0\.0\.1|::1)\)$"):
        EgressPolicy().resolve("localhost", 80)


def test_pinned_resolution_answers_the_driver_with_the_checked_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DNS rebinding: the first answer passes the check, a later one points at loopback.
    answers = iter([[_info("203.0.113.5")], [_info("127.0.0.1")]])
    monkeypatch.setattr("airlock.egress._real_getaddrinfo", lambda *args: next(answers))
    before = socket.getaddrinfo
    with pinned_resolution(EgressPolicy(), "rebind.example", 6379):
        # What a driver does (redis-py, socket.create_connection): it gets the answer that was checked.
        assert socket.getaddrinfo("rebind.example", 6379, 0, socket.SOCK_STREAM)[0][4][0] == "203.0.113.5"
        assert socket.getaddrinfo("rebind.example", 6379, 0, socket.SOCK_STREAM)[0][4][0] == "203.0.113.5"
        # Any other lookup inside the block is checked as it happens.
        with pytest.raises(EgressDenied, match="loopback"):
            socket.getaddrinfo("other.example", 80)
    assert socket.getaddrinfo is before


def _info(address: str, port: int = 80) -> tuple[Any, ...]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (family, socket.SOCK_STREAM, 6, "", (address, port))


# --- configuration ------------------------------------------------------------------------------


def test_worker_settings_per_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW", "10.0.0.0/8:5432, [fd00::/8]:443")
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LINK_LOCAL", "true")
    monkeypatch.setenv(
        "AIRLOCK_EGRESS_POLICIES", json.dumps({"lab": {"allow": ["*"], "allow_loopback": True}})
    )
    settings = WorkerSettings()
    default = settings.egress_policy(None)
    assert [str(r) for r in default.allow] == ["10.0.0.0/8:5432", "[fd00::/8]:443"]
    assert default.allow_link_local and not default.allow_loopback
    assert settings.egress_policy("other") == default
    lab = settings.egress_policy("lab")
    assert lab.allow_loopback and lab.allow_link_local  # what the queue leaves out is the worker's
    assert check(lab, "127.0.0.1", 22) is None and check(default, "127.0.0.1", 5432) == "loopback"
    # `airlock worker` re-validates its dumped settings with the CLI's flags on top.
    assert WorkerSettings.model_validate(settings.model_dump()).egress_policy("lab") == lab


def test_the_default_configuration_refuses_loopback_and_link_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRLOCK_EGRESS_ALLOW", "AIRLOCK_EGRESS_ALLOW_LOOPBACK", "AIRLOCK_EGRESS_ALLOW_LINK_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRLOCK_EGRESS_POLICIES", raising=False)
    assert WorkerSettings().egress_policy(None) == EgressPolicy()
    assert egress.current_policy() == EgressPolicy()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AIRLOCK_EGRESS_ALLOW", "10.0.0.0/8:99999"),
        ("AIRLOCK_EGRESS_POLICIES", '{"q": {"allow_loopbak": true}}'),
        ("AIRLOCK_EGRESS_POLICIES", '{"q": {"allow": ["nonsense"]}}'),
    ],
)
def test_a_bad_policy_stops_the_worker_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_an_applied_policy_wins_over_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", raising=False)
    with egress.applying(LOOPBACK):
        assert egress.current_policy() is LOOPBACK
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", "true")
    assert egress.current_policy().allow_loopback  # a changed environment is read again


# --- testers, against a real server on loopback ------------------------------------------------


class CountingServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CountingHandler)
        self.hits = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class CountingHandler(BaseHTTPRequestHandler):
    server: CountingServer

    def do_GET(self) -> None:
        self.server.hits += 1
        data = ("é" * 20).encode()  # two bytes a character: an excerpt can cut one in half
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[CountingServer]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOW", "ALLOW_LOOPBACK", "ALLOW_LINK_LOCAL", "POLICIES"):
        monkeypatch.delenv(f"AIRLOCK_EGRESS_{name}", raising=False)


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connect() in this process fails the test: a refusal must come before the first packet."""

    def connect(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)


def run_in_child(conn: ConnectionFields, **request: Any) -> tuple[bool, str]:
    payload = json.dumps({"fields": conn.model_dump(by_alias=True), "timeout": 5, **request})
    proc = subprocess.run(
        [sys.executable, "-m", "activities.testers.child"],
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    answer = json.loads(proc.stdout)
    return answer["ok"], answer["message"]


def fields(conn_type: str, host: str, port: int, **extra: Any) -> ConnectionFields:
    return ConnectionFields.model_validate({"conn_type": conn_type, "host": host, "port": port, **extra})


@pytest.mark.usefixtures("default_policy")
def test_http_test_to_loopback_is_refused_by_default(web: CountingServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        ok, message = load_tester("http")(fields("http", host, web.port), 5)
        assert not ok
        assert message.startswith(f"GET http://{host}:{web.port}/: egress to "), message
        assert message.endswith(("loopback", f"({host} resolves to 127.0.0.1)", f"({host} resolves to ::1)"))
        assert REFUSED in message
    ok, message = run_in_child(fields("http", "127.0.0.1", web.port))
    assert not ok and message.endswith(f"egress to 127.0.0.1:{web.port} {REFUSED}: loopback"), message
    assert web.hits == 0


def test_http_test_to_loopback_works_when_allowed(
    web: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with egress.applying(LOOPBACK):
        assert load_tester("http")(fields("http", "127.0.0.1", web.port), 5)[0]
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", "true")
    ok, message = run_in_child(fields("http", "127.0.0.1", web.port))
    assert ok and "returned status 200" in message, message
    assert web.hits == 2


def test_the_child_applies_its_queue_policy(web: CountingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", raising=False)
    monkeypatch.setenv("AIRLOCK_EGRESS_POLICIES", json.dumps({"lab": {"allow_loopback": True}}))
    conn = fields("tcp", "127.0.0.1", web.port)
    assert run_in_child(conn, queue="lab")[0]
    ok, message = run_in_child(conn, queue="prod")
    assert not ok and message == f"egress to 127.0.0.1:{web.port} {REFUSED}: loopback"


@pytest.mark.usefixtures("default_policy")
@pytest.mark.parametrize("conn_type", ["tcp", "redis", "mysql", "http"])
def test_loopback_is_refused_before_the_driver_connects(conn_type: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        ok, message = load_tester(conn_type)(fields(conn_type, "127.0.0.1", port), 2)
        assert not ok and message.endswith(f"egress to 127.0.0.1:{port} {REFUSED}: loopback"), message
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody knocked


@pytest.mark.usefixtures("default_policy", "no_connect")
@pytest.mark.parametrize("conn_type", ["tcp", "redis", "mysql", "http"])
def test_the_metadata_address_is_refused_without_a_packet(conn_type: str) -> None:
    ok, message = load_tester(conn_type)(fields(conn_type, "169.254.169.254", 80), 2)
    assert not ok and message.endswith(f"egress to 169.254.169.254:80 {REFUSED}: link-local"), message


@pytest.mark.usefixtures("no_connect")
def test_a_port_outside_the_allowlist_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW", "10.0.0.0/8:5432")
    ok, message = load_tester("tcp")(fields("tcp", "10.9.9.9", 22), 2)
    assert not ok and message == f"egress to 10.9.9.9:22 {REFUSED}: outside the allowed networks and ports"


# --- HttpTrigger ---------------------------------------------------------------------------------


async def test_http_trigger_to_loopback_fails_by_default(web: CountingServer, default_policy: None) -> None:
    for host in ("127.0.0.1", "localhost"):
        trigger = HttpTrigger(url=f"http://{host}:{web.port}/", poll_interval=0.2)
        with pytest.raises(EgressDenied, match=f"{REFUSED}: loopback"):
            async for _ in trigger.run():
                pass
    assert web.hits == 0


@pytest.mark.usefixtures("default_policy", "no_connect")
async def test_http_trigger_to_the_metadata_address_fails_without_a_packet() -> None:
    trigger = HttpTrigger(url="http://169.254.169.254/latest/meta-data/", poll_interval=0.2)
    with pytest.raises(
        EgressDenied, match=r"^egress to 169\.254\.169\.254:80 is not allowed on this worker: link-local$"
    ):
        await trigger.poll()


async def test_http_trigger_stores_the_status_and_an_excerpt_only_when_asked(web: CountingServer) -> None:
    with egress.applying(LOOPBACK):
        event = await HttpTrigger(url=f"http://127.0.0.1:{web.port}/").poll()
        assert event is not None and event.payload == {"status": 200}
        # 7 bytes: three whole "é" and half of one, which is left out rather than garbled.
        event = await HttpTrigger(url=f"http://127.0.0.1:{web.port}/", response_excerpt_bytes=7).poll()
        assert event is not None and event.payload == {"status": 200, "body": "ééé"}


# --- through the stack: a worker, its queues, its configuration --------------------------------


async def test_the_stack_applies_each_queue_policy(make_stack: Any, web: CountingServer) -> None:
    stack = await make_stack()
    lab = await stack.serve_queue("lab")  # the test stack opts its workers in to loopback
    prod = unique("prod")
    # The same worker configuration, with one queue's policy taking loopback back.
    await stack.start_worker(
        prod, name="prod", AIRLOCK_EGRESS_POLICIES=json.dumps({prod: {"allow_loopback": False}})
    )
    await stack.wait_worker(prod)
    url = f"http://127.0.0.1:{web.port}/"
    async with stack.client() as client:
        results = {}
        for queue in (lab, prod):
            r = await client.post("/api/v2/connections/test", json={"uri": url, "queue": queue})
            assert r.status_code == 202, r.text
            results[queue] = await wait_terminal(client, r.json()["id"])
    assert results[lab]["state"] == "success", results[lab]
    assert results[prod]["state"] == "failed", results[prod]
    assert f"egress to 127.0.0.1:{web.port} {REFUSED}: loopback" in results[prod]["result_message"]
    assert web.hits == 1


async def test_a_triggerer_applies_its_queue_policy(make_stack: Any, web: CountingServer) -> None:
    from tests.test_triggers import wait_trigger

    stack = await make_stack()
    lab, prod = unique("lab"), unique("prod")
    policies = json.dumps({prod: {"allow_loopback": False}})
    await stack.start_worker(
        lab, prod, name="triggerer", AIRLOCK_TRIGGERER="true", AIRLOCK_EGRESS_POLICIES=policies
    )
    await stack.wait_worker(prod)
    kwargs = {"url": f"http://127.0.0.1:{web.port}/", "poll_interval": 0.2}
    async with stack.client() as client:
        ended = {}
        for queue in (lab, prod):
            body = {"classpath": "airlock.triggers.HttpTrigger", "kwargs": kwargs, "queue": queue}
            r = await client.post("/api/v2/triggers", json=body)
            assert r.status_code == 201, r.text
            ended[queue] = await wait_trigger(client, r.json()["id"])
    assert ended[lab]["state"] == "fired", ended[lab]
    # The status, and nothing of the body: the trigger did not ask for an excerpt.
    assert json.loads(ended[lab]["event_payload"])["value"] == {"status": 200}
    assert ended[prod]["state"] == "failed", ended[prod]
    assert f"egress to 127.0.0.1:{web.port} {REFUSED}: loopback" in ended[prod]["failure"]
    assert web.hits == 1
