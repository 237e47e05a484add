"""Where the tests find PostgreSQL, MariaDB and Redis.

In order: an ``AIRLOCK_TEST_*_URL`` override, the local service on loopback, a testcontainers
container where a Docker engine answers. In CI (``CI=true``) a missing database is an error, not a skip.
"""

from __future__ import annotations

import atexit
import os
import socket
from functools import cache
from typing import Any

import pytest


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _unavailable(name: str, env: str) -> Any:
    message = f"{name} is required: start it on loopback, set {env}, or provide a Docker engine"
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{message} (CI never skips database tests)")
    pytest.skip(message)


@cache
def postgres_url() -> str:
    if url := os.environ.get("AIRLOCK_TEST_POSTGRES_URL"):
        return url
    if _listening("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/test"
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine").start()
        atexit.register(container.stop)
        return str(container.get_connection_url()).replace("+psycopg2", "")
    return str(_unavailable("PostgreSQL", "AIRLOCK_TEST_POSTGRES_URL"))


@cache
def mariadb_url() -> str:
    if url := os.environ.get("AIRLOCK_TEST_MYSQL_URL"):
        return url
    if _listening("127.0.0.1", 3306):
        return "mysql://root@127.0.0.1:3306/test"
    if _docker_available():
        from testcontainers.mysql import MySqlContainer

        container = MySqlContainer("mariadb:11", username="root", password="test", dbname="test").start()
        atexit.register(container.stop)
        return str(container.get_connection_url()).replace("+pymysql", "")
    return str(_unavailable("MariaDB", "AIRLOCK_TEST_MYSQL_URL"))


@cache
def redis_url() -> str:
    if url := os.environ.get("AIRLOCK_TEST_REDIS_URL"):
        return url
    if _listening("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    return str(_unavailable("Redis", "AIRLOCK_TEST_REDIS_URL"))
