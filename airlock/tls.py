"""TLS for the links Airlock opens: HTTPS to the API (with a client certificate where the API asks for
one) and TLS to Temporal; and the rule that a credential never crosses a network in clear unless the
operator says that network is trusted.

Certificates and keys are given as a path to a PEM file or as the PEM text itself (a provisioned
worker's env carries its CA bundle and client certificate inline, so one file moves to its host).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

PEM_MARKER = "-----BEGIN"
PLAINTEXT_OPT_IN = "AIRLOCK_ALLOW_PLAINTEXT=true"


class PlaintextRefused(SystemExit):
    """A credential would cross a non-loopback network in clear, and nobody said it was trusted."""


def read_pem(value: str, what: str) -> bytes:
    """``value``'s PEM: the text itself, or the content of the file it names."""
    if value.lstrip().startswith(PEM_MARKER):
        return value.strip().encode() + b"\n"
    try:
        data = Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {value!r}: {exc.strerror}") from None
    if PEM_MARKER.encode() not in data:
        raise ValueError(f"{what}: {value!r} holds no PEM block")
    return data


def is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_host(address: str) -> str:
    """The host of ``host:port`` (``[v6]:port`` too)."""
    return urlsplit(f"//{address}").hostname or address


def client_context(ca: str | None, cert: str | None, key: str | None, *, what: str) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca`` (the system's roots when None) and
    presents ``cert``/``key`` when given."""
    context = ssl.create_default_context()
    if ca:
        context.load_verify_locations(cadata=read_pem(ca, f"{what} CA").decode())
    if cert or key:
        if not (cert and key):
            raise ValueError(f"{what}: a client certificate needs its key, and a key its certificate")
        with _memory_file(read_pem(cert, f"{what} client certificate")) as cert_path:
            with _memory_file(read_pem(key, f"{what} client key")) as key_path:
                context.load_cert_chain(cert_path, key_path)
    return context


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    # ssl loads a certificate chain only from a path: an anonymous in-memory file keeps an inline key
    # off the disk.
    fd = os.memfd_create("airlock-pem", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as handle:
            handle.write(data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def refuse_plaintext(link: str, host: str, *, allowed: bool) -> None:
    if not allowed and not is_loopback(host):
        raise PlaintextRefused(
            f"refusing to reach {link} at {host} without TLS: credentials would cross the network "
            f"in clear. Configure TLS, or set {PLAINTEXT_OPT_IN} if this network is trusted"
        )


def describe_tls_error(exc: BaseException) -> str | None:
    """What went wrong in a TLS handshake, in words, when ``exc`` (or its cause) is one; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"the server's certificate was not accepted: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            reason = current.reason or str(current)
            if "CERTIFICATE_REQUIRED" in reason or "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason:
                return f"the server refused this client's certificate (TLS alert {reason})"
            return f"TLS handshake failed ({reason})"
        current = current.__cause__ or current.__context__
    return None


def probe_handshake(
    url: str, context: ssl.SSLContext, *, presents_certificate: bool, timeout: float = 5.0
) -> str | None:
    """Why ``url``'s server refuses a TLS connection from ``context``, seen from a connection that sends
    nothing; None when it accepts one. A TLS 1.3 server checks a client's certificate after the
    handshake, and a client that has sent its request by then usually sees only a reset: the server's
    alert is lost with the unread request. With nothing sent, the alert arrives."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(min(timeout, 1.0))
                try:
                    tls.recv(1)
                except TimeoutError:
                    return None  # the server waits for a request: it took the certificate
                lacking = "" if presents_certificate else " (this client presents none)"
                return (
                    "the server closed the connection right after the TLS handshake, before any "
                    f"request: it did not accept this client's certificate{lacking}"
                )
    except (ssl.SSLError, OSError) as exc:
        return describe_tls_error(exc) or f"{type(exc).__name__}: {exc}"
