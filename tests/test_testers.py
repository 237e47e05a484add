"""The connection testers against real services, called in-process and through the isolated child."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pymysql
import pytest
import redis

from activities.testers import UnknownConnType, available_conn_types, child, load_tester
from airlock import plugins
from airlock.connection import ConnectionFields
from airlock.secrets import scrub
from tests import secret_scan, services

REPO = Path(__file__).resolve().parents[1]
# URL quoting changes every one of these characters, so both forms of a leak are caught; both come
# from the secret scan's registry, so the session scan looks for them everywhere too.
WRONG = secret_scan.password("wr0ng-P@ss/w%rd-")
RIGHT = secret_scan.password("right-")
TEST_USER = "airlock_t"
UNKNOWN_HOST = "no-such-host.invalid"
BUILT_IN = {"http", "https", "mariadb", "mysql", "postgres", "postgresql", "redis", "sqlite", "tcp"}

Run = Callable[..., tuple[bool, str]]


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every target here listens on loopback, which a worker refuses unless configured (tests/test_egress.py).
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", "true")


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    login: str | None
    password: str | None
    db: str | None

    @classmethod
    def from_url(cls, url: str) -> Server:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        return cls(
            parts.hostname,
            parts.port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            parts.path.lstrip("/") or None,
        )

    def fields(self, conn_type: str, **overrides: Any) -> ConnectionFields:
        values: dict[str, Any] = {
            "conn_type": conn_type,
            "host": self.host,
            "port": self.port,
            "login": self.login,
            "password": self.password,
            "schema": self.db,
        }
        return ConnectionFields.model_validate(values | overrides)


def make(**values: Any) -> ConnectionFields:
    return ConnectionFields.model_validate(values)


def run_in_child(conn: ConnectionFields, timeout: float = 5) -> tuple[bool, str]:
    request = json.dumps({"fields": conn.model_dump(by_alias=True), "timeout": timeout})
    proc = subprocess.run(
        [sys.executable, "-m", "activities.testers.child"],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    answer = json.loads(lines[0])
    assert set(answer) == {"ok", "message"}
    return answer["ok"], answer["message"]


def run_direct(conn: ConnectionFields, timeout: float = 5) -> tuple[bool, str]:
    return load_tester(conn.conn_type)(conn, timeout)


@pytest.fixture(params=["direct", "child"])
def run(request: pytest.FixtureRequest) -> Run:
    return run_direct if request.param == "direct" else run_in_child


def assert_ok(result: tuple[bool, str], pattern: str) -> None:
    ok, message = result
    assert ok is True, message
    assert re.search(pattern, message), message
    assert_no_secret(message)


def assert_failed(result: tuple[bool, str], pattern: str) -> None:
    ok, message = result
    assert ok is False, message
    assert re.search(pattern, message), message
    assert_no_secret(message)


def assert_no_secret(message: str) -> None:
    for secret in (WRONG, RIGHT):
        for form in (
            secret,
            quote(secret, safe=""),
            base64.b64encode(f"{TEST_USER}:{secret}".encode()).decode(),
        ):
            assert form not in message


# --- services -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Server:
    return Server.from_url(services.postgres_url())


@pytest.fixture(scope="module")
def maria() -> Server:
    return Server.from_url(services.mariadb_url())


@pytest.fixture(scope="module")
def rds() -> Server:
    return Server.from_url(services.redis_url())


@pytest.fixture(scope="module")
def maria_user(maria: Server) -> Iterator[str]:
    """A MariaDB user with a password, so that a wrong password is really rejected."""
    admin = pymysql.connect(
        host=maria.host, port=maria.port, user=maria.login, password=maria.password or "", autocommit=True
    )
    account = f"'{TEST_USER}'@'%'"
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS {account}")
            cur.execute(f"CREATE USER {account} IDENTIFIED BY {admin.escape(RIGHT)}")
            cur.execute(f"GRANT SELECT ON `{maria.db}`.* TO {account}")
        yield TEST_USER
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS {account}")
        admin.close()


@pytest.fixture(scope="module")
def redis_user(rds: Server) -> Iterator[str]:
    """A Redis ACL user with a password; the shared server's own configuration is left alone."""
    admin = redis.Redis(host=rds.host, port=rds.port, username=rds.login, password=rds.password)
    admin.execute_command("ACL", "SETUSER", TEST_USER, "reset", "on", f">{RIGHT}", "~*", "+@all")
    try:
        yield TEST_USER
    finally:
        admin.execute_command("ACL", "DELUSER", TEST_USER)
        admin.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections (in the kernel backlog) and never says a word: drivers wait on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


class Handler(BaseHTTPRequestHandler):
    routes = {"/": 200, "/ok": 200, "/created": 201, "/down": 503}
    basic_auth = "Basic " + base64.b64encode(f"alice:{RIGHT}".encode()).decode()

    def do_GET(self) -> None:
        if self.path == "/auth":
            status = 200 if self.headers.get("Authorization") == self.basic_auth else 401
        else:
            status = self.routes.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


# --- the registry ---------------------------------------------------------------------------


def test_every_built_in_tester_is_available() -> None:
    assert set(available_conn_types()) >= BUILT_IN
    # Through the module: pytest would collect a bare ``tester_entry_points`` as a test.
    assert plugins.tester_entry_points()["postgresql"].value == "activities.testers.postgres:test_postgres"


def test_unknown_conn_type_names_what_is_available() -> None:
    with pytest.raises(
        UnknownConnType, match=r"no tester for conn_type 'nosuch' is installed on this worker"
    ):
        load_tester("nosuch")
    with pytest.raises(UnknownConnType, match=r"\(available: .*postgres.*\)"):
        load_tester("nosuch")


def test_scrub_replaces_raw_and_quoted_forms() -> None:
    message = f"a {WRONG} b {quote(WRONG, safe='')} c"
    assert scrub(message, None, "", WRONG) == "a *** b *** c"


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.parametrize("conn_type", ["postgres", "postgresql"])
def test_postgres_select_1(run: Run, pg: Server, conn_type: str) -> None:
    assert_ok(run(pg.fields(conn_type)), r"^PostgreSQL \d+\.\d+: select 1 ok$")


def test_postgres_unknown_role_is_an_authentication_failure(run: Run, pg: Server) -> None:
    result = run(pg.fields("postgres", login="airlock_no_such_role", password=WRONG))
    assert_failed(result, r"^authentication failed for user 'airlock_no_such_role'")


def test_postgres_unknown_database(run: Run, pg: Server) -> None:
    result = run(pg.fields("postgres", schema="airlock_no_such_db"))
    assert_failed(result, r"^database 'airlock_no_such_db' does not exist$")


def test_postgres_passes_libpq_options_from_extra(run: Run, pg: Server) -> None:
    # "cursor" and "iam" are Airflow hook options libpq would reject: left out, not passed on. The
    # connection's own fields win over the same keys in extra.
    extra = {
        "sslmode": "disable",
        "application_name": "airlock-tester",
        "connect_timeout": 1,
        "dbname": "airlock_no_such_db",
        "cursor": "dictcursor",
        "iam": False,
    }
    assert_ok(run(pg.fields("postgres", extra=extra)), "select 1 ok")
    result = run(pg.fields("postgres", extra={"sslmode": "bogus"}))
    assert_failed(result, r'invalid sslmode value: "bogus"')
    # sslrootcert names no file as "system" (the OS's CA store): passed on, to a server without TLS.
    result = run(pg.fields("postgres", extra={"sslmode": "verify-full", "sslrootcert": "system"}))
    assert_failed(result, "server does not support SSL")


@pytest.mark.parametrize(
    "option", ["sslkeylogfile", "sslkey", "sslcert", "sslrootcert", "sslcrl", "passfile"]
)
def test_postgres_extra_reads_and_writes_no_worker_file(
    run: Run, pg: Server, tmp_path: Path, option: str
) -> None:
    # libpq 18 creates or appends to sslkeylogfile; the others read the file they name.
    target = tmp_path / "worker-file"
    result = run(pg.fields("postgres", extra={"sslmode": "prefer", option: str(target)}))
    assert_failed(result, rf"^extra '{option}' (is not allowed|may only be system)")
    assert str(target) not in result[1]
    assert not target.exists()


def test_postgres_extra_refuses_options_outside_the_allowlist(run: Run, pg: Server) -> None:
    ok, message = run(pg.fields("postgres", extra={"options": "-c default_transaction_read_only=off"}))
    assert ok is False
    assert message.startswith("extra 'options' is not allowed for a PostgreSQL connection")
    assert "sslmode" in message and "application_name" in message and "off" not in message
    assert_failed(
        run(pg.fields("postgres", extra={"hostaddr": "10.0.0.1"})), r"^extra 'hostaddr' is not allowed"
    )
    assert_failed(
        run(pg.fields("postgres", extra={"sslmode": {"mode": "disable"}})),
        r"^extra 'sslmode' must be a string or an integer, not dict$",
    )


# --- MariaDB --------------------------------------------------------------------------------


@pytest.mark.parametrize("conn_type", ["mysql", "mariadb"])
def test_mysql_select_1(run: Run, maria: Server, conn_type: str) -> None:
    assert_ok(run(maria.fields(conn_type)), r"^(MariaDB|MySQL) \d+\.\d+\.\d+: select 1 ok$")


def test_mysql_user_with_right_password(run: Run, maria: Server, maria_user: str) -> None:
    assert_ok(run(maria.fields("mysql", login=maria_user, password=RIGHT)), "select 1 ok")


def test_mysql_wrong_password(run: Run, maria: Server, maria_user: str) -> None:
    result = run(maria.fields("mysql", login=maria_user, password=WRONG))
    assert_failed(result, rf"^authentication failed for user '{maria_user}'$")


def test_mysql_extra_ssl_reads_no_worker_file(run: Run, maria: Server, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    result = run(maria.fields("mysql", extra={"ssl": {"key": str(key), "ca": str(key), "cipher": "HIGH"}}))
    assert_failed(result, r"^extra ssl keys not allowed for a MySQL connection: 'ca', 'key' ")


def test_mysql_unknown_database(run: Run, maria: Server) -> None:
    assert_failed(
        run(maria.fields("mysql", schema="airlock_no_such_db")),
        r"^database 'airlock_no_such_db' does not exist$",
    )


def test_mysql_database_without_grant(run: Run, maria: Server, maria_user: str) -> None:
    result = run(maria.fields("mysql", login=maria_user, password=RIGHT, schema="mysql"))
    assert_failed(result, rf"^user '{maria_user}' has no access to database 'mysql'$")


# --- Redis ----------------------------------------------------------------------------------


def test_redis_ping(run: Run, rds: Server) -> None:
    assert_ok(run(rds.fields("redis")), r"^Redis \d+\.\d+\.\d+: PING ok$")


def test_redis_acl_user_with_right_password(run: Run, rds: Server, redis_user: str) -> None:
    assert_ok(run(rds.fields("redis", login=redis_user, password=RIGHT)), "PING ok")


def test_redis_wrong_password(run: Run, rds: Server, redis_user: str) -> None:
    result = run(rds.fields("redis", login=redis_user, password=WRONG))
    assert_failed(result, rf"^authentication failed for user '{redis_user}'$")


def test_redis_database_out_of_range(run: Run, rds: Server) -> None:
    assert_failed(run(rds.fields("redis", schema="99")), r"^database '99' does not exist on ")


# --- HTTP -----------------------------------------------------------------------------------


def http_fields(port: int, **overrides: Any) -> ConnectionFields:
    return ConnectionFields.model_validate(
        {"conn_type": "http", "host": "127.0.0.1", "port": port} | overrides
    )


def test_http_200(run: Run, web: int) -> None:
    assert_ok(run(http_fields(web, schema="ok")), rf"^GET http://127.0.0.1:{web}/ok returned status 200 OK$")
    assert_ok(
        run(http_fields(web, extra={"path": "/ok"})), rf"^GET http://127.0.0.1:{web}/ok returned status 200"
    )


def test_http_airflow_schema_is_the_scheme(run: Run, web: int) -> None:
    assert_ok(run(http_fields(web, schema="http")), rf"^GET http://127.0.0.1:{web}/ returned status 200")


def test_http_503(run: Run, web: int) -> None:
    result = run(http_fields(web, schema="down"))
    assert_failed(result, rf"^GET http://127.0.0.1:{web}/down returned status 503 Service Unavailable$")


def test_http_expected_status(run: Run, web: int) -> None:
    assert_ok(run(http_fields(web, schema="down", extra={"expected_status": 503})), "returned status 503")
    result = run(http_fields(web, schema="created", extra={"expected_status": ["200"]}))
    assert_failed(result, r"returned status 201 Created, expected 200$")


def test_http_method(run: Run, web: int) -> None:
    assert_ok(
        run(http_fields(web, schema="ok", extra={"method": "head"})),
        r"^HEAD http://\S+/ok returned status 200",
    )
    assert_failed(run(http_fields(web, extra={"method": "BREW"})), r"^unsupported HTTP method 'BREW'")
    # A test asks whether the server answers; it changes nothing there.
    assert_failed(
        run(http_fields(web, extra={"method": "post"})),
        r"^unsupported HTTP method 'POST' \(use one of GET, HEAD, OPTIONS\)",
    )


def test_http_headers_that_belong_to_the_connection_are_refused(run: Run, web: int) -> None:
    for name in ("Host", "transfer-encoding", "Connection"):
        result = run(http_fields(web, schema="ok", extra={"headers": {name: "x"}}))
        assert_failed(result, rf"^extra headers: header '{name}' may not be set")
    assert_ok(run(http_fields(web, schema="ok", extra={"headers": {"X-Probe": "1"}})), "returned status 200")


def test_http_basic_auth(run: Run, web: int) -> None:
    assert_ok(run(http_fields(web, schema="auth", login="alice", password=RIGHT)), "returned status 200")
    result = run(http_fields(web, schema="auth", login="alice", password=WRONG))
    assert_failed(result, r"/auth returned status 401 Unauthorized$")


def test_https_to_a_plain_http_server_fails_the_tls_handshake(run: Run, web: int) -> None:
    result = run(http_fields(web, conn_type="https"))
    assert_failed(result, rf"^GET https://127.0.0.1:{web}/: TLS handshake with 127.0.0.1:{web} failed: ")


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("create table t (x int)")
    db.close()
    return path


def test_sqlite_file(run: Run, sqlite_db: Path) -> None:
    before = sorted(sqlite_db.parent.iterdir())
    pattern = r"^SQLite \d+\.\d+\.\d+: select 1 ok \(1 tables\)$"
    assert_ok(run(make(conn_type="sqlite", host=str(sqlite_db))), pattern)
    assert_ok(
        run(ConnectionFields.model_validate({"conn_type": "sqlite", "schema": str(sqlite_db)})), pattern
    )
    # Read-only: no journal, no WAL, nothing new next to the database.
    assert sorted(sqlite_db.parent.iterdir()) == before


def test_sqlite_missing_file_is_not_created(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = run(make(conn_type="sqlite", host=str(path)))
    assert_failed(result, rf"^SQLite database file '{re.escape(str(path))}' does not exist$")
    assert not path.exists()


def test_sqlite_not_a_database(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 20)
    assert_failed(run(make(conn_type="sqlite", host=str(path))), r"is not a SQLite database$")


def test_sqlite_directory(run: Run, tmp_path: Path) -> None:
    assert_failed(run(make(conn_type="sqlite", host=str(tmp_path))), r"is a directory$")


# --- TCP ------------------------------------------------------------------------------------


def test_tcp_open_port(run: Run, listening_port: int) -> None:
    fields = make(conn_type="tcp", host="127.0.0.1", port=listening_port)
    assert_ok(run(fields), rf"^TCP connection to 127.0.0.1:{listening_port} ok$")


def test_tcp_needs_a_port(run: Run) -> None:
    assert_failed(run(make(conn_type="tcp", host="127.0.0.1")), r"^port is required for a tcp connection$")


# --- failures every network tester classifies the same way ---------------------------------

NETWORK = ["postgres", "mysql", "redis", "http", "tcp"]


@pytest.mark.parametrize("conn_type", NETWORK)
def test_connection_refused(run: Run, conn_type: str, closed_port: int) -> None:
    fields = make(conn_type=conn_type, host="127.0.0.1", port=closed_port, login="u", password=WRONG)
    assert_failed(run(fields), rf"connection refused by 127\.0\.0\.1:{closed_port}$")


@pytest.mark.parametrize("conn_type", NETWORK)
def test_unknown_host(run: Run, conn_type: str) -> None:
    fields = make(conn_type=conn_type, host=UNKNOWN_HOST, port=1234, login="u", password=WRONG)
    # Without a reachable resolver the lookup fails temporarily instead; both name the host.
    assert_failed(run(fields), rf"(unknown host|cannot resolve host) '{UNKNOWN_HOST}'")


@pytest.mark.parametrize("conn_type", ["postgres", "mysql", "redis", "http"])
def test_silent_server_times_out(run: Run, conn_type: str, silent_port: int) -> None:
    fields = make(conn_type=conn_type, host="127.0.0.1", port=silent_port, login="u", password=WRONG)
    # libpq cannot wait less than 2 s; the others use the 1 s they are given.
    expected = 2 if conn_type == "postgres" else 1
    assert_failed(run(fields, 1), rf"timed out after {expected} s")


@pytest.mark.parametrize("conn_type", [*NETWORK, "sqlite"])
def test_missing_host(run: Run, conn_type: str) -> None:
    result = run(make(conn_type=conn_type, port=1234, password=WRONG))
    assert_failed(result, rf"^host (\(the database file path\) )?is required for a {conn_type} connection$")


# --- the child process ----------------------------------------------------------------------


def child_raw(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *(args or ("-m", "activities.testers.child"))]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30, cwd=REPO)


def test_child_unknown_conn_type() -> None:
    ok, message = run_in_child(make(conn_type="nosuch", password=WRONG))
    assert ok is False
    assert message.startswith("no tester for conn_type 'nosuch' is installed on this worker (available: ")
    assert "postgres" in message
    assert_no_secret(message)


def test_child_rejects_invalid_requests_without_echoing_the_password() -> None:
    request = {"fields": {"conn_type": "tcp", "host": "h", "port": 99999, "password": WRONG}, "timeout": 1}
    for stdin in (json.dumps(request), "not json", json.dumps({"timeout": 1})):
        proc = child_raw(stdin)
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer["ok"] is False
        assert answer["message"].startswith("invalid request: ")
        assert_no_secret(answer["message"])
    assert "port" in json.loads(child_raw(json.dumps(request)).stdout)["message"]


def test_child_reports_a_tester_exception_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
        raise RuntimeError(f"driver said {conn.login}:{conn.password} and {quote(WRONG, safe='')}")

    monkeypatch.setattr(child, "load_tester", lambda conn_type: explode)
    fields = make(conn_type="tcp", host="h", port=1, login=TEST_USER, password=WRONG)
    answer = child.run({"fields": fields.model_dump(by_alias=True), "timeout": 1})
    assert answer == {"ok": False, "message": "RuntimeError: driver said *** and ***"}


def test_child_rejects_a_malformed_tester_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "load_tester", lambda conn_type: lambda conn, timeout: ("yes", 1))
    answer = child.run({"fields": {"conn_type": "tcp"}, "timeout": 1})
    assert answer == {"ok": False, "message": "the tcp tester returned str, int instead of (bool, str)"}


def test_child_output_survives_a_tester_that_prints() -> None:
    script = (
        "import os\n"
        "from activities.testers import child\n"
        "def noisy(conn, timeout):\n"
        "    print('from python'); os.write(1, b'from C\\n')\n"
        "    return True, 'fine'\n"
        "child.load_tester = lambda conn_type: noisy\n"
        "child.main()\n"
    )
    proc = child_raw(json.dumps({"fields": {"conn_type": "tcp"}, "timeout": 1}), "-c", script)
    assert proc.stdout.splitlines() == ['{"ok": true, "message": "fine"}']
    assert "from python" in proc.stderr and "from C" in proc.stderr
