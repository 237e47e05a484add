"""Redis: connect with redis-py and send PING."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from activities.testers import as_bool, missing, network_failure, scrubbed, timed_out
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied, pinned_resolution
from worker.egress import current_policy

DEFAULT_PORT = 6379


def database_number(conn: ConnectionFields) -> int:
    if conn.schema_ and conn.schema_.isdigit():
        return int(conn.schema_)
    db = conn.extra.get("db")
    return int(db) if isinstance(db, int | str) and str(db).isdigit() else 0


def tls_options(extra: dict[str, Any]) -> dict[str, Any]:
    if not as_bool(extra.get("ssl"), False):
        return {}
    options: dict[str, Any] = {"ssl": True}
    if isinstance(extra.get("ssl_cert_reqs"), str):
        options["ssl_cert_reqs"] = extra["ssl_cert_reqs"]
    return options


@scrubbed
def test_redis(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host")
    if problem:
        return False, problem
    assert conn.host is not None
    port = conn.port or DEFAULT_PORT
    db = database_number(conn)
    client = redis.Redis(
        host=conn.host,
        port=port,
        username=conn.login,
        password=conn.password,
        db=db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # redis-py retries with backoff by default; a test reports the first failure at once.
        retry=Retry(NoBackoff(), 0),
        **tls_options(conn.extra),
    )
    try:
        # redis-py resolves the name itself (and keeps it for TLS): it gets the checked addresses.
        with pinned_resolution(current_policy(), conn.host, port):
            client.ping()
            version = server_version(client)
    except EgressDenied as exc:
        return False, str(exc)
    except redis.RedisError as exc:
        return False, classify(exc, conn, conn.host, port, db, timeout)
    except OSError as exc:  # the name did not resolve, before the driver was called
        message = network_failure(exc, conn.host, port, timeout)
        return False, message or f"cannot connect to {conn.host}:{port}: {exc}"
    finally:
        client.close()
    return True, f"Redis {version}: PING ok" if version else "Redis: PING ok"


def server_version(client: redis.Redis) -> str | None:
    # An ACL user may be allowed PING but not INFO; the version is then simply left out.
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
    except redis.RedisError:
        return None
    version = info.get("redis_version")
    return str(version) if version else None


def classify(
    exc: redis.RedisError, conn: ConnectionFields, host: str, port: int, db: int, timeout: float
) -> str:
    user = conn.login or "default"
    # AuthenticationError subclasses ConnectionError, so it is checked first.
    if isinstance(exc, redis.AuthenticationError):
        return f"authentication failed for user {user!r}"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"user {user!r} is not allowed to run PING: {exc}"
    if isinstance(exc, redis.ResponseError) and "DB index" in str(exc):
        return f"database {str(db)!r} does not exist on {host}:{port}"
    if isinstance(exc, redis.ResponseError) and "NOAUTH" in str(exc).upper():
        return f"authentication failed for user {user!r}: the server requires a password"
    network = network_failure(exc, host, port, timeout)
    if network:
        return network
    if isinstance(exc, redis.TimeoutError):
        return timed_out(timeout)
    return f"Redis at {host}:{port}: {exc}"
