"""Three network namespaces for the segmentation test: ``control``, joined by one veth pair each to
two edge segments, ``edge`` and ``edge_b``, which have no route to each other.

Safety is the point of this module. Every address it hands out comes from a private /24 of 10/8
that neither the host's addresses nor its routes cover; both ends of the veth pair live inside the
namespaces (none in the host's), no namespace has a default route, and ``verify_routes`` checks
with ``ip route get`` that each address used stays on the veth or on ``lo`` before any traffic.
The host namespace itself sends nothing to these addresses: the test runs its clients inside a
namespace (``client_main`` below, via ``ip netns exec``). ``segment()`` kills what it started (by
process group, then any pid left inside the namespaces) and deletes the namespaces, even on error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Never the host's environment variables that could route traffic elsewhere (a proxy, say).
_DROPPED_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def clean_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.lower() not in _DROPPED_ENV}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (probed for real), or None when ``ip netns add`` works."""
    name = f"airlock-probe-{uuid.uuid4().hex[:6]}"
    try:
        done = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host has an address in or a route to, in any table (not the default)."""
    found: list[ipaddress.IPv4Network] = []
    for entry in json.loads(_ip("-j", "-4", "addr").stdout or "[]"):
        for info in entry.get("addr_info", []):
            found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst")
        if dst and dst != "default":
            found.append(ipaddress.IPv4Network(dst, strict=False))
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10/8 that no host address or host route overlaps."""
    taken = _host_networks()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.{random.randint(64, 254)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 found on this host")


@dataclass
class Namespace:
    name: str

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )

    def route_get(self, address: str) -> tuple[int, list[dict[str, Any]], str]:
        done = self.run("ip", "-j", "route", "get", address)
        routes = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []
        return done.returncode, routes, done.stderr.strip()

    def routes(self) -> list[dict[str, Any]]:
        done = self.run("ip", "-j", "-4", "route", "show", "table", "all")
        routes: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return routes

    def tx_packets(self, device: str) -> int:
        """How many packets ``device`` (inside this namespace) has sent so far."""
        done = self.run("ip", "-s", "-j", "link", "show", "dev", device)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: ip -s link show {device}: {done.stderr.strip()}")
        packets: int = json.loads(done.stdout)[0]["stats64"]["tx"]["packets"]
        return packets

    def pids(self) -> list[int]:
        done = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in done.stdout.split()]


@dataclass
class Segment:
    control: Namespace
    edge: Namespace
    subnet: ipaddress.IPv4Network
    control_ip: str
    edge_ip: str
    # The metadata DB's address: on control's lo, outside the veth's /30, so the edge has no route to it.
    db_ip: str
    control_if: str
    edge_if: str
    # The second segment: its own veth pair to control, on another /30.
    edge_b: Namespace
    control_b_ip: str
    edge_b_ip: str
    control_b_if: str
    edge_b_if: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def spawn(
        self,
        ns: Namespace,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` inside ``ns`` in its own process group, output to ``log_dir/name.log``."""
        log_path = log_dir / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ns.command(*args),
                env=clean_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
            )
        self.processes.append(proc)
        return proc

    def client(
        self, ns: Namespace, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> dict[str, Any]:
        """Run ``client_main ARGS`` inside ``ns``; its one line of JSON output, parsed."""
        code = "from tests.netns import client_main; client_main()"
        done = subprocess.run(
            ns.command(sys.executable, "-c", code, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=clean_env({**os.environ, **(env or {})}),
            cwd=Path(__file__).resolve().parent.parent,
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(
                f"client {args} in {ns.name} failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for name, path in self.logs.items():
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ({path}) ---\n" + "\n".join(tail))
        return "\n".join(out)

    def verify_routes(self) -> list[str]:
        """Before any traffic: each address used stays on the veth or lo, no namespace has a default
        route, and the edge has no route to the database. Returns the checks made, for the report."""
        checks: list[str] = []
        for ns in self.namespaces:
            defaults = [r for r in ns.routes() if r.get("dst") == "default"]
            assert not defaults, f"{ns.name} has a default route: {defaults}"
            checks.append(f"{ns.name}: no default route")
        expected = {
            (self.control.name, self.edge_ip): self.control_if,
            (self.control.name, self.control_ip): "lo",
            (self.control.name, self.db_ip): "lo",
            (self.control.name, "127.0.0.1"): "lo",
            (self.edge.name, self.control_ip): self.edge_if,
            (self.edge.name, self.edge_ip): "lo",
            (self.edge.name, "127.0.0.1"): "lo",
            (self.control.name, self.edge_b_ip): self.control_b_if,
            (self.control.name, self.control_b_ip): "lo",
            (self.edge_b.name, self.control_b_ip): self.edge_b_if,
            (self.edge_b.name, self.edge_b_ip): "lo",
            (self.edge_b.name, "127.0.0.1"): "lo",
        }
        by_name = {ns.name: ns for ns in self.namespaces}
        for (name, address), device in expected.items():
            code, routes, err = by_name[name].route_get(address)
            assert code == 0 and routes, f"{name}: ip route get {address} failed: {err}"
            assert [r.get("dev") for r in routes] == [device], f"{name}: {address} routes via {routes}"
            assert "gateway" not in routes[0], f"{name}: {address} goes through a gateway: {routes}"
            checks.append(f"{name}: {address} via {device}")
        unreachable = (
            (self.edge, self.db_ip),
            (self.edge_b, self.db_ip),
            (self.edge, self.edge_b_ip),
            (self.edge, self.control_b_ip),
            (self.edge_b, self.edge_ip),
            (self.edge_b, self.control_ip),
        )
        for ns, address in unreachable:
            code, routes, err = ns.route_get(address)
            assert code != 0 and not routes, f"{ns.name} has a route to {address}: {routes}"
            checks.append(f"{ns.name}: {address} unreachable ({err})")
        for net in _host_networks():
            assert not self.subnet.overlaps(net), f"{self.subnet} overlaps the host's {net}"
        checks.append(f"host: nothing of {self.subnet} on its addresses or routes")
        return checks

    @property
    def namespaces(self) -> tuple[Namespace, ...]:
        return (self.control, self.edge, self.edge_b)

    def stop_processes(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _set_up(segment: Segment) -> None:
    control = segment.control
    for ns in segment.namespaces:
        _ip("netns", "add", ns.name)
    for edge, control_if, edge_if in (
        (segment.edge, segment.control_if, segment.edge_if),
        (segment.edge_b, segment.control_b_if, segment.edge_b_if),
    ):
        # Both ends are created straight inside the namespaces: the host never holds either one.
        _ip(
            "link",
            "add",
            control_if,
            "netns",
            control.name,
            "type",
            "veth",
            "peer",
            "name",
            edge_if,
            "netns",
            edge.name,
        )
    prefix = 30
    for ns, device, address in (
        (control, segment.control_if, segment.control_ip),
        (segment.edge, segment.edge_if, segment.edge_ip),
        (control, segment.control_b_if, segment.control_b_ip),
        (segment.edge_b, segment.edge_b_if, segment.edge_b_ip),
    ):
        # IPv6 off: no link-local or router chatter, only the addresses chosen here.
        ns.run("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        ns.run("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        for args in (
            ("link", "set", "lo", "up"),
            ("addr", "add", f"{address}/{prefix}", "dev", device),
            ("link", "set", device, "up"),
        ):
            done = ns.run("ip", *args)
            if done.returncode != 0:
                raise RuntimeError(f"{ns.name}: ip {' '.join(args)}: {done.stderr.strip()}")
    done = control.run("ip", "addr", "add", f"{segment.db_ip}/32", "dev", "lo")
    if done.returncode != 0:
        raise RuntimeError(f"{control.name}: adding {segment.db_ip} to lo: {done.stderr.strip()}")


@contextlib.contextmanager
def segment() -> Iterator[Segment]:
    """edge <-veth-> control <-veth-> edge_b, on a fresh private /24; always torn down."""
    tag = uuid.uuid4().hex[:6]
    subnet = free_subnet()
    hosts = list(subnet.hosts())
    seg = Segment(
        control=Namespace(f"airlock-ctl-{tag}"),
        edge=Namespace(f"airlock-edge-{tag}"),
        subnet=subnet,
        control_ip=str(hosts[0]),  # .1 and .2: the veth's /30
        edge_ip=str(hosts[1]),
        db_ip=str(hosts[8]),  # .9: outside the /30
        control_if=f"al-c-{tag}",
        edge_if=f"al-e-{tag}",
        edge_b=Namespace(f"airlock-edgeb-{tag}"),
        control_b_ip=str(hosts[4]),  # .5 and .6: the second veth's /30
        edge_b_ip=str(hosts[5]),
        control_b_if=f"al-cb-{tag}",
        edge_b_if=f"al-eb-{tag}",
    )
    try:
        _set_up(seg)
        yield seg
    finally:
        seg.stop_processes()
        for ns in seg.namespaces:
            # Anything still inside a namespace we made is ours (a daemonised child, say).
            for pid in ns.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in seg.namespaces:
            _ip("netns", "del", ns.name, check=False)
        leftovers = [ns.name for ns in seg.namespaces if ns.name in _ip("netns", "list").stdout]
        assert not leftovers, f"namespaces left behind: {leftovers}"


def client_main(argv: Sequence[str] | None = None) -> None:
    """A tiny client run *inside* a namespace (``python -c``): the host never dials these addresses.

    ``http METHOD URL [JSON]``, ``wait-port HOST PORT TIMEOUT``, ``wait-job API QUEUE TIMEOUT``,
    ``wait-test API ID TIMEOUT``, ``connect HOST PORT TIMEOUT``. Prints one JSON line. For an
    ``https://`` API: ``AIRLOCK_API_CA`` verifies it, ``AIRLOCK_API_CLIENT_CERT``/``_KEY`` are the
    client certificate it asks for (each a path or the PEM itself, as a worker takes them)."""
    import socket

    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0)
    if command == "connect":
        host, port, timeout = args[0], int(args[1]), float(args[2])
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result: dict[str, Any] = {"ok": True}
        except OSError as exc:
            result = {"ok": False, "errno": exc.errno, "error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = time.monotonic() - started
        print(json.dumps(result))
        return
    if command == "wait-port":
        host, port, timeout = args[0], int(args[1]), float(args[2])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((host, port)) == 0:
                    print(json.dumps({"ok": True}))
                    return
            time.sleep(0.1)
        print(json.dumps({"ok": False}))
        return

    import httpx

    token = os.environ.get("AIRLOCK_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if os.environ.get("AIRLOCK_API_VERSION"):
        headers["Airlock-API-Version"] = os.environ["AIRLOCK_API_VERSION"]
    verify: Any = True
    if os.environ.get("AIRLOCK_API_CA"):
        from airlock.tls import client_context

        verify = client_context(
            os.environ["AIRLOCK_API_CA"],
            os.environ.get("AIRLOCK_API_CLIENT_CERT"),
            os.environ.get("AIRLOCK_API_CLIENT_KEY"),
            what="client_main",
        )
    with httpx.Client(headers=headers, timeout=30, trust_env=False, verify=verify) as http:
        if command == "http":
            method, url = args[0], args[1]
            body = json.loads(args[2]) if len(args) > 2 else None
            response = http.request(method, url, json=body)
            try:
                data: Any = response.json()
            except ValueError:
                data = response.text
            print(json.dumps({"status": response.status_code, "body": data}))
        elif command == "wait-job":
            api, queue, timeout = args[0], args[1], float(args[2])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    jobs = http.get(f"{api}/api/v2/jobs", params={"alive": True}).json()["jobs"]
                    for job in jobs:
                        if queue in job["queues"]:
                            print(json.dumps({"ok": True, "job": job}))
                            return
                time.sleep(0.2)
            print(json.dumps({"ok": False}))
        elif command == "wait-test":
            api, test_id, timeout = args[0], args[1], float(args[2])
            deadline = time.monotonic() + timeout
            body = {}
            while time.monotonic() < deadline:
                body = http.get(f"{api}/api/v2/connections/test/{test_id}").json()
                if body["state"] in ("success", "failed"):
                    break
                time.sleep(0.1)
            print(json.dumps({"ok": body.get("state") in ("success", "failed"), "test": body}))
        else:
            raise SystemExit(f"unknown command {command!r}")
