"""Where the tests find PostgreSQL, MariaDB and Redis.

In order: an ``AIRLOCK_TEST_*_URL`` override, the local service on loopback, a testcontainers
container where a Docker engine answers (kept for the session). In CI (``CI=true``) a missing
service is an error, never a skip: a suite that silently skips its database tests proves nothing.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
from collections.abc import Callable
from typing import Any, NoReturn

import pytest


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@functools.cache
def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    # No client library, no socket, no permission, a daemon that is down: all mean "no Docker".
    except Exception:
        return False
    return True


def _keep(container: Any) -> Any:
    """Start a container for the rest of the session and stop it when the interpreter exits."""
    container.start()
    atexit.register(container.stop)
    return container


def _postgres_container() -> str:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14 kept the modules at the top level
        from testcontainers.postgres import PostgresContainer
    c = _keep(PostgresContainer("postgres:16-alpine", username="postgres", password="test", dbname="test"))
    return f"postgresql://postgres:test@{c.get_container_host_ip()}:{c.get_exposed_port(5432)}/test"


def _mariadb_container() -> str:
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:
        from testcontainers.mysql import MySqlContainer
    c = _keep(MySqlContainer("mariadb:11", username="root", password="test", dbname="test"))
    return f"mysql://root:test@{c.get_container_host_ip()}:{c.get_exposed_port(3306)}/test"


def _redis_container() -> str:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer
    c = _keep(RedisContainer("redis:7-alpine"))
    return f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0"


@functools.cache
def _locate(env: str, port: int, local_url: str, container: Callable[[], str]) -> str | None:
    if url := os.environ.get(env):
        return url
    if _listening("127.0.0.1", port):
        return local_url
    if _docker_available():
        return container()
    return None


def _unavailable(name: str, env: str, port: int) -> NoReturn:
    where = f"set {env}, run it on 127.0.0.1:{port}, or provide a Docker engine"
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{name} is required in CI: {where}")
    pytest.skip(f"{name} is not available: {where}")


def postgres_url() -> str:
    env, port = "AIRLOCK_TEST_POSTGRES_URL", 5432
    url = _locate(env, port, "postgresql://postgres@127.0.0.1:5432/test", _postgres_container)
    return url or _unavailable("PostgreSQL", env, port)


def mariadb_url() -> str:
    env, port = "AIRLOCK_TEST_MYSQL_URL", 3306
    url = _locate(env, port, "mysql://root@127.0.0.1:3306/test", _mariadb_container)
    return url or _unavailable("MariaDB", env, port)


def redis_url() -> str:
    env, port = "AIRLOCK_TEST_REDIS_URL", 6379
    url = _locate(env, port, "redis://127.0.0.1:6379/0", _redis_container)
    return url or _unavailable("Redis", env, port)
