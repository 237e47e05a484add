"""Egress policy: where the testers and triggers of a worker may connect.

A connection's fields and a trigger's kwargs come from users; the worker sits inside a network an
administrator trusts. Without a policy a user could point a test or an ``HttpTrigger`` at the
worker's own loopback services or at the cloud metadata service (169.254.169.254) and read what
answers. So every destination is resolved *before* connecting, every address the name resolves to is
checked, and the connection is made to those checked addresses only: a name that resolves again
differently between the check and the connect (DNS rebinding) gains nothing.

What is refused:

* always: the unspecified address and "this network" (0.0.0.0/8, ``::``; Linux delivers them to the
  host itself), multicast, the limited broadcast address and reserved ranges;
* unless opted in: loopback (127.0.0.0/8, ``::1``), link-local (169.254.0.0/16, ``fe80::/10``) and
  the cloud metadata services that live elsewhere (``fd00:ec2::254``, ``100.100.100.200``);
* anything outside the policy's allow rules (CIDR, optionally with a port or a port range).

IPv4 addresses written inside IPv6 ones (``::ffff:127.0.0.1``, NAT64's ``64:ff9b::a.b.c.d``) are
judged as the IPv4 address they reach.

This module is plain policy (standard library and pydantic): which policy applies in a process, and
the HTTP plumbing, live in :mod:`worker.egress`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = tuple[Any, ...]

ANY_ADDRESS = "*"
# Every unicast address, public and private; the categories below are refused on top of it.
DEFAULT_ALLOW = (ANY_ADDRESS,)
MAX_PORT = 65535

# Connecting to these reaches the host itself (0.0.0.0 does on Linux) or many hosts at once.
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# Metadata services outside 169.254.0.0/16 (AWS over IPv6, Alibaba Cloud): refused with link-local,
# because they hand out the same instance credentials.
METADATA_ADDRESSES = frozenset(
    {ipaddress.IPv6Address("fd00:ec2::254"), ipaddress.IPv4Address("100.100.100.200")}
)


class EgressDenied(Exception):
    """A destination this worker's egress policy refuses; nothing was sent to it.

    Deliberately not an ``OSError``: drivers wrap socket errors into their own vague messages, and
    this one must reach the user as it is.
    """


@dataclass(frozen=True)
class EgressRule:
    """``10.0.0.0/8``, ``10.1.2.3:5432``, ``10.0.0.0/8:5432-5439``, ``[fd00::/8]:443``, ``*:443``."""

    networks: tuple[IPNetwork, ...]
    ports: tuple[int, int] = (1, MAX_PORT)

    @classmethod
    def parse(cls, value: object) -> EgressRule:
        if isinstance(value, EgressRule):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"an egress rule is a CIDR with an optional :port or :low-high, not {value!r}")
        text = value.strip()
        address, ports = text, ""
        if text.startswith("["):
            address, _, rest = text[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError(f"egress rule {text!r}: expected ':port' after ']'")
            ports = rest[1:]
        elif text.count(":") == 1:  # IPv4 or '*' with a port; a bare IPv6 CIDR has several colons
            address, _, ports = text.partition(":")
        try:
            networks: tuple[IPNetwork, ...] = (
                (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))
                if address == ANY_ADDRESS
                else (ipaddress.ip_network(address, strict=False),)
            )
        except ValueError as exc:
            raise ValueError(f"egress rule {text!r}: {exc}") from None
        return cls(networks, _port_range(text, ports) if ports else (1, MAX_PORT))

    def matches(self, address: IPAddress, port: int) -> bool:
        low, high = self.ports
        return low <= port <= high and any(address in network for network in self.networks)

    def __str__(self) -> str:
        if len(self.networks) == 2 and all(n.prefixlen == 0 for n in self.networks):
            address = ANY_ADDRESS
        else:
            network = self.networks[0]
            address = f"[{network}]" if network.version == 6 and self.ports != (1, MAX_PORT) else str(network)
        low, high = self.ports
        if (low, high) == (1, MAX_PORT):
            return address
        return f"{address}:{low}" if low == high else f"{address}:{low}-{high}"


def _port_range(rule: str, text: str) -> tuple[int, int]:
    low_text, _, high_text = text.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if high_text else low
    except ValueError:
        raise ValueError(f"egress rule {rule!r}: {text!r} is not a port or a port range") from None
    if not 1 <= low <= high <= MAX_PORT:
        raise ValueError(f"egress rule {rule!r}: ports must satisfy 1 <= low <= high <= {MAX_PORT}")
    return low, high


# How a rule reads from the environment or JSON (a string) and is written back (the same string).
Rule = Annotated[EgressRule, PlainValidator(EgressRule.parse), PlainSerializer(str)]


class EgressPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allow: tuple[Rule, ...] = tuple(EgressRule.parse(rule) for rule in DEFAULT_ALLOW)
    allow_loopback: bool = False
    allow_link_local: bool = False

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why ``address:port`` is refused, or None when the policy allows it."""
        ip = embedded_ipv4(address)
        if ip.is_unspecified or ip in THIS_NETWORK:
            return "unspecified address"
        if ip.is_multicast:
            return "multicast"
        if ip == LIMITED_BROADCAST:
            return "broadcast"
        if ip.is_loopback:
            if not self.allow_loopback:
                return "loopback"
        elif ip.is_link_local or ip in METADATA_ADDRESSES:
            if not self.allow_link_local:
                return "link-local" if ip.is_link_local else "cloud metadata service"
        elif ip.is_reserved:
            return "reserved address"
        if not any(rule.matches(ip, port) for rule in self.allow):
            return "outside the allowed networks and ports"
        return None

    def check(self, address: str, port: int, host: str | None = None) -> None:
        """Raise :class:`EgressDenied` unless ``address`` (an IP literal) may be reached on ``port``."""
        ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 zone id is not part of the address
        reason = self.refusal(ip, port)
        if reason is not None:
            where = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
            resolved = f" ({host} resolves to {ip})" if host and host.strip("[]") != str(ip) else ""
            raise EgressDenied(f"egress to {where} is not allowed on this worker: {reason}{resolved}")

    def resolve(self, host: str, port: int) -> list[AddrInfo]:
        """Resolve ``host`` now and check every address: the getaddrinfo results to connect to.

        One refused address refuses the name: which address a driver tries first is its business.
        ``socket.gaierror`` (unknown host) propagates for the caller to word.
        """
        infos = _real_getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        for info in infos:
            self.check(str(info[4][0]), port, host)
        return infos


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64_PREFIX:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def create_connection(policy: EgressPolicy, host: str, port: int, timeout: float) -> socket.socket:
    """``socket.create_connection`` to the addresses ``policy`` checked, in the order DNS gave them."""
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in policy.resolve(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last or OSError(f"{host!r} resolves to no address")


def checked_addresses(policy: EgressPolicy, host: str, port: int) -> list[str]:
    """The checked IP literals of ``host``: for a driver that takes the address apart from the name
    (libpq's ``hostaddr``), so that TLS still verifies the name while the socket goes to the address."""
    return list(dict.fromkeys(str(info[4][0]) for info in policy.resolve(host, port)))


# --- pinned resolution, for drivers that resolve names themselves -------------------------------

_real_getaddrinfo: Callable[..., list[AddrInfo]] = socket.getaddrinfo
_pin_lock = threading.Lock()


@contextlib.contextmanager
def pinned_resolution(policy: EgressPolicy, host: str, port: int) -> Iterator[None]:
    """Check ``host:port`` now, then run the block with every name lookup going through the policy.

    For drivers (PyMySQL, redis-py) that take a host name and resolve it themselves, keeping the
    name for TLS: inside the block ``socket.getaddrinfo`` answers ``host`` with the addresses checked
    on entry (no second lookup to rebind), and checks anything else it resolves. It replaces a
    process-wide function, so it is meant for the isolated child, which runs one tester; it refuses
    to nest rather than to interleave.
    """
    checked = {(host, port, 0, socket.SOCK_STREAM, 0, 0): policy.resolve(host, port)}

    def getaddrinfo(
        name: Any, service: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[AddrInfo]:
        key = (name, service, family, type, proto, flags)
        if key in checked:
            return checked[key]
        infos = _real_getaddrinfo(name, service, family, type, proto, flags)
        for info in infos:
            policy.check(str(info[4][0]), int(info[4][1]), str(name))
        return infos

    if not _pin_lock.acquire(blocking=False):
        raise RuntimeError("pinned_resolution is already active in this process")
    previous = socket.getaddrinfo
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]  # same call, typed loosely
    try:
        yield
    finally:
        socket.getaddrinfo = previous
        _pin_lock.release()
