"""HTTP and HTTPS: send one request with httpx and judge the response status."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from activities.testers import as_bool, find_cause, missing, network_failure, scrubbed, timed_out
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied
from worker import egress

# A connection test asks "does it answer?": methods that change nothing on the server.
METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCHEMES = ("http", "https")


class BadExtra(ValueError):
    pass


def build_url(conn: ConnectionFields) -> str:
    assert conn.host is not None
    path = conn.schema_
    if "://" in conn.host:
        base = conn.host.rstrip("/")
    else:
        scheme = conn.conn_type.lower() if conn.conn_type.lower() in SCHEMES else "http"
        # Airflow's HTTP hook reads the scheme from ``schema``; connections imported from it
        # say schema=https, which must not become a path.
        if path in SCHEMES:
            scheme, path = path, None
        base = f"{scheme}://{conn.host}"
    if conn.port:
        base += f":{conn.port}"
    segments = [part.strip("/") for part in (path, conn.extra.get("path")) if isinstance(part, str) and part]
    return base + "/" + "/".join(segment for segment in segments if segment)


def expected_statuses(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    try:
        return frozenset(int(v) for v in values if not isinstance(v, bool))
    except (TypeError, ValueError):
        raise BadExtra(
            f"extra expected_status must be a status code or a list of them, not {value!r}"
        ) from None


def request_options(conn: ConnectionFields) -> tuple[str, frozenset[int] | None, dict[str, str]]:
    method = str(conn.extra.get("method") or "GET").upper()
    if method not in METHODS:
        raise BadExtra(f"unsupported HTTP method {method!r} (use one of {', '.join(sorted(METHODS))})")
    headers = conn.extra.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadExtra("extra headers must be an object of header names to values")
    try:
        allowed_headers = egress.request_headers(headers)
    except ValueError as exc:
        raise BadExtra(f"extra headers: {exc}") from None
    return method, expected_statuses(conn.extra.get("expected_status")), allowed_headers


@scrubbed
def test_http(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host")
    if problem:
        return False, problem
    try:
        method, expected, headers = request_options(conn)
    except BadExtra as exc:
        return False, str(exc)
    url = httpx.URL(build_url(conn))
    # Credentials go in the Authorization header, never in the URL a message shows.
    shown = f"{method} {url.copy_with(username=None, password=None)}"
    auth = (conn.login, conn.password or "") if conn.login else None
    # Redirects are not followed (httpx's default): the status of this URL is the answer.
    transport = egress.transport(egress.current_policy(), verify=as_bool(conn.extra.get("verify"), True))
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            # Streaming leaves the body unread: the status is the whole answer.
            with client.stream(method, url, auth=auth, headers=headers) as response:
                status = response.status_code
                phrase = response.reason_phrase
    except EgressDenied as exc:
        return False, f"{shown}: {exc}"
    except httpx.HTTPError as exc:
        return False, f"{shown}: {classify(exc, url, timeout)}"
    ok = status in expected if expected is not None else status < 400
    message = f"{shown} returned status {status} {phrase}".rstrip()
    if not ok and expected is not None:
        message += f", expected {' or '.join(str(s) for s in sorted(expected))}"
    return ok, message


def classify(exc: httpx.HTTPError, url: httpx.URL, timeout: float) -> str:
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    if isinstance(exc, httpx.ConnectTimeout):
        return f"{timed_out(timeout)} connecting to {host}:{port}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{timed_out(timeout)} waiting for the response"
    cert = find_cause(exc, ssl.SSLCertVerificationError)
    if cert is not None:
        return f"TLS certificate verification failed for {host}: {cert.verify_message}"
    tls = find_cause(exc, ssl.SSLError)
    if tls is not None:
        return f"TLS handshake with {host}:{port} failed: {tls.reason or tls}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL: {exc}"
    return network_failure(exc, host, port, timeout) or f"{type(exc).__name__}: {exc}"
