"""The console's forms for Airlock's own conn types: the fields each tester reads, and what goes in
them. Registered in ``pyproject.toml`` (``airlock.connection_forms``) beside each tester; data only,
so the API can load it without a driver."""

from __future__ import annotations

from airlock.sdk.forms import ConnectionForm

POSTGRES = ConnectionForm(
    labels={"schema": "Database"},
    placeholders={
        "host": "db.example.internal",
        "port": "5432",
        "extra": '{"sslmode": "require"}',
    },
)
MYSQL = ConnectionForm(
    labels={"schema": "Database"},
    placeholders={
        "host": "db.example.internal",
        "port": "3306",
        "extra": '{"charset": "utf8mb4", "ssl": {"check_hostname": true}}',
    },
)
SQLITE = ConnectionForm(
    hidden=frozenset({"port", "schema", "login", "password", "extra"}),
    labels={"host": "Database file (on the worker)"},
    placeholders={"host": "/var/lib/app/app.db"},
)
HTTP = ConnectionForm(
    labels={"host": "Host or base URL", "schema": "Path", "login": "Login (basic auth)"},
    placeholders={
        "host": "api.example.internal or https://api.example.internal",
        "schema": "health",
        "extra": '{"method": "HEAD", "expected_status": [200, 204], "verify": true}',
    },
)
REDIS = ConnectionForm(
    labels={"schema": "Database number", "login": "Username (ACL)"},
    placeholders={"host": "cache.example.internal", "port": "6379", "schema": "0", "extra": '{"ssl": true}'},
)
TCP = ConnectionForm(
    hidden=frozenset({"schema", "login", "password", "extra"}),
    placeholders={"host": "service.example.internal", "port": "443"},
)
