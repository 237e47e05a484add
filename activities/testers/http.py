"""HTTP(S) endpoint check through httpx."""

from __future__ import annotations

import httpx

from airlock.connection import ConnectionFields


def test_http(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    if not conn.host:
        return False, "an http test needs a host"
    port = f":{conn.port}" if conn.port else ""
    path = str(conn.extra.get("path") or conn.schema_ or "")
    url = f"{conn.conn_type}://{conn.host}{port}/{path.lstrip('/')}"
    auth = (conn.login or "", conn.password or "") if conn.login or conn.password else None
    expected = conn.extra.get("expected_status")
    try:
        response = httpx.request(
            str(conn.extra.get("method", "GET")),
            url,
            auth=auth,
            timeout=timeout,
            verify=bool(conn.extra.get("verify", True)),
        )
    except httpx.ConnectError as exc:
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return False, f"unknown host {conn.host!r}"
        if "Connection refused" in text:
            return False, f"connection refused by {conn.host}{port}"
        return False, f"cannot connect to {url}: {text}"
    except httpx.TimeoutException:
        return False, f"timed out after {timeout:g} s waiting for {url}"
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    ok = response.status_code == int(expected) if expected is not None else response.status_code < 400
    return ok, f"{url} returned status {response.status_code}"
