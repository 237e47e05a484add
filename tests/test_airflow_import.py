"""Reading Airflow's connections: each format ``airflow connections export`` writes, ``AIRFLOW_CONN_*``
variables, a malformed entry refused alone, and no password in any message."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml

from airlock.cli.airflow_import import (
    ImportedConnection,
    ImportFileError,
    ImportResult,
    read_environment,
    read_export,
)
from airlock.connection import CONNECTION_ID_PATTERN, ConnectionFields

# Every character a URI must percent-encode in a password, and one no other text here holds.
PASSWORD = "Zq8@/%:#?&=Vault"
# How Airflow's Connection.get_uri() writes it.
ENCODED = quote(PASSWORD, safe="")

WAREHOUSE = ConnectionFields(
    conn_type="postgres",
    host="db.example.com",
    port=5432,
    login="admin",
    password=PASSWORD,
    schema_="app",
    extra={"sslmode": "require"},
)
WAREHOUSE_URI = f"postgres://admin:{ENCODED}@db.example.com:5432/app?sslmode=require"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def by_id(result: ImportResult) -> dict[str, ConnectionFields]:
    return {c.connection_id: c.fields for c in result.connections}


def reasons(result: ImportResult) -> dict[str, str]:
    for problem in result.problems:
        assert_no_password(problem.reason)
    return {p.connection_id: p.reason for p in result.problems}


def assert_no_password(text: str) -> None:
    assert PASSWORD not in text
    assert ENCODED not in text


def airflow_fields(**fields: Any) -> dict[str, Any]:
    """An entry as Airflow's export writes one: every field, unset ones null."""
    empty = dict.fromkeys(("description", "host", "login", "password", "schema", "port", "extra"))
    return {**empty, **fields}


EXPORTED = {
    "warehouse": airflow_fields(
        conn_type="postgres",
        description="the warehouse",
        host="db.example.com",
        login="admin",
        password=PASSWORD,
        schema="app",
        port=5432,
        extra=json.dumps({"sslmode": "require"}),
    ),
    # Airflow writes an unset field as "" as often as null, and a port as text.
    "cache": airflow_fields(
        conn_type="redis", host="cache", login="", password="", schema="", port="6379", extra=""
    ),
    "api": airflow_fields(conn_type="http", host="api.example.com", extra={"timeout": 3, "verify": True}),
}
EXPECTED = {
    "warehouse": WAREHOUSE,
    "cache": ConnectionFields(conn_type="redis", host="cache", port=6379),
    "api": ConnectionFields(conn_type="http", host="api.example.com", extra={"timeout": 3, "verify": True}),
}


def test_json_export(tmp_path: Path) -> None:
    result = read_export(write(tmp_path / "out.json", json.dumps(EXPORTED, indent=4)))

    assert result.problems == []
    assert by_id(result) == EXPECTED
    assert [c.description for c in result.connections] == ["the warehouse", None, None]


def test_yaml_export(tmp_path: Path) -> None:
    # Airflow writes .yaml with yaml.dump(..., default_flow_style=False): keys sorted.
    text = yaml.safe_dump(EXPORTED, default_flow_style=False)
    result = read_export(write(tmp_path / "out.yaml", text))

    assert result.problems == []
    assert by_id(result) == EXPECTED
    assert [c.connection_id for c in result.connections] == ["api", "cache", "warehouse"]
    assert read_export(write(tmp_path / "out.yml", text)) == result


def test_env_export_of_uris(tmp_path: Path) -> None:
    legacy_extra = urlencode({"__extra__": json.dumps({"options": {"statement_timeout": 5}})})
    text = "\n".join(
        [
            "# airflow connections export out.env",
            f"warehouse={WAREHOUSE_URI}",
            "",
            f"legacy=postgresql://{ENCODED}:{ENCODED}@old-db:5433/app?{legacy_extra}",
            "gcp=google-cloud-platform:///?key_path=%2Fkeys%2Fsa.json",
            "   # an indented comment",
        ]
    )
    result = read_export(write(tmp_path / "out.env", text))

    assert result.problems == []
    assert by_id(result) == {
        "warehouse": WAREHOUSE,
        # parse_uri's reading of a postgresql:// URI, as Airflow's: the postgres type.
        "legacy": ConnectionFields(
            conn_type="postgres",
            host="old-db",
            port=5433,
            login=PASSWORD,
            password=PASSWORD,
            schema_="app",
            extra={"options": {"statement_timeout": 5}},
        ),
        "gcp": ConnectionFields(conn_type="google_cloud_platform", extra={"key_path": "/keys/sa.json"}),
    }
    assert [c.description for c in result.connections] == [None, None, None]


def test_env_export_of_json(tmp_path: Path) -> None:
    # Connection.as_json(): empty fields left out, extra an object; to_dict() also repeats the id.
    warehouse = {
        "conn_type": "postgres",
        "description": "the warehouse",
        "host": "db.example.com",
        "login": "admin",
        "password": PASSWORD,
        "schema": "app",
        "port": 5432,
        "extra": {"sslmode": "require"},
    }
    reporting = {"conn_id": "reporting", "conn_type": "mysql", "host": "r", "extra": '{"charset": "utf8"}'}
    text = f"warehouse={json.dumps(warehouse)}\nreporting={json.dumps(reporting)}\n"
    result = read_export(write(tmp_path / "out.env", text))

    assert result.problems == []
    assert by_id(result) == {
        "warehouse": WAREHOUSE,
        "reporting": ConnectionFields(conn_type="mysql", host="r", extra={"charset": "utf8"}),
    }
    assert result.connections[0].description == "the warehouse"


def test_environment_variables() -> None:
    environ = {
        "PATH": "/usr/bin",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_WAREHOUSE": WAREHOUSE_URI,
        "AIRFLOW_CONN_REPORTING_DB": '  {"conn_type": "mysql", "host": "r", "password": '
        + json.dumps(PASSWORD)
        + ', "port": "3306", "extra": {"charset": "utf8"}, "description": "reports"}\n',
    }
    result = read_environment(environ)

    assert result.problems == []
    assert result.connections == [
        ImportedConnection("warehouse", WAREHOUSE, None),
        ImportedConnection(
            "reporting_db",
            ConnectionFields(
                conn_type="mysql", host="r", port=3306, password=PASSWORD, extra={"charset": "utf8"}
            ),
            "reports",
        ),
    ]


def test_malformed_json_entries_are_refused_alone(tmp_path: Path) -> None:
    good = {"conn_type": "postgres", "host": "h", "password": PASSWORD}
    entries = {
        "first": good,
        "listed": [PASSWORD],
        "port_text": {**good, "port": PASSWORD},
        "no_type": {"host": "h", "password": PASSWORD},
        "array_extra": {**good, "extra": json.dumps([PASSWORD])},
        "broken_extra": {**good, "extra": '{"token": "' + PASSWORD},
        "bad id!": good,
        "test": good,
        "misspelt": {"conn_type": "postgres", "passwd": PASSWORD},
        "long_host": {**good, "host": "h" * 501},
        "renamed": {**good, "conn_id": "elsewhere"},
        "last": good,
    }
    result = read_export(write(tmp_path / "out.json", json.dumps(entries)))

    assert [c.connection_id for c in result.connections] == ["first", "last"]
    problems = reasons(result)
    assert list(problems) == list(entries)[1:-1]
    assert problems["listed"] == "is an array, not a connection (an object of its fields, or a URI)"
    assert problems["port_text"].startswith("port: Input should be a valid integer")
    assert problems["no_type"] == "conn_type: Field required"
    assert problems["array_extra"] == "extra must be a JSON object, not an array"
    assert problems["broken_extra"].startswith("extra is not valid JSON: Unterminated string")
    assert problems["bad id!"] == f"connection_id: String should match pattern '{CONNECTION_ID_PATTERN}'"
    assert problems["test"] == "connection_id: Value error, 'test' is reserved"
    assert problems["misspelt"] == "passwd: Extra inputs are not permitted"
    assert re.fullmatch(r"host: .* at most 500 .*", problems["long_host"])
    assert problems["renamed"] == "its conn_id field names another connection"


def test_malformed_yaml_entries_are_refused_alone(tmp_path: Path) -> None:
    password = json.dumps(PASSWORD)
    text = f"""
good:
  conn_type: postgres
  password: {password}
1234:
  conn_type: postgres
  password: {password}
nothing:
text_port:
  conn_type: mysql
  port: not-a-port
  password: {password}
dated:
  conn_type: http
  password: {password}
  extra:
    since: 2020-01-01
"""
    result = read_export(write(tmp_path / "out.yaml", text))

    assert by_id(result) == {"good": ConnectionFields(conn_type="postgres", password=PASSWORD)}
    assert reasons(result) == {
        "1234": "the id was read as a number, not text: quote it",
        "nothing": "is null, not a connection (an object of its fields, or a URI)",
        "text_port": "port: Input should be a valid integer, unable to parse string as an integer",
        "dated": "extra holds values JSON cannot represent (dates, sets or a loop)",
    }


def test_malformed_env_entries_are_refused_alone(tmp_path: Path) -> None:
    lines = [
        f"good={WAREHOUSE_URI}",
        f"text_port=postgres://admin:{ENCODED}@db:port/app",
        f"no_scheme=admin:{ENCODED}@db",
        "protocol_host=http://https://api.example.com",
        'broken_json={"conn_type": "postgres", "password": ' + json.dumps(PASSWORD),
        "listed_extra=" + json.dumps({"conn_type": "http", "extra": json.dumps([PASSWORD])}),
        "empty=  ",
        f"twice={WAREHOUSE_URI}",
        f"twice={WAREHOUSE_URI}",
    ]
    result = read_export(write(tmp_path / "out.env", "\n".join(lines)))

    assert by_id(result) == {"good": WAREHOUSE}
    problems = reasons(result)
    assert problems == {
        "text_port": "invalid URI: URI has an invalid port: it must be a number from 0 to 65535",
        "no_scheme": "invalid URI: URI must look like conn_type://[login[:password]@]host[:port][/schema]",
        "protocol_host": problems["protocol_host"],
        "broken_json": problems["broken_json"],
        "listed_extra": "extra must be a JSON object, not an array",
        "empty": "has no value",
        "twice": "the id appears 2 times: keep one",
    }
    assert "own protocol" in problems["protocol_host"]
    assert problems["broken_json"].startswith("the value is not valid JSON: Expecting ',' delimiter")
    assert [p.connection_id for p in result.problems].count("twice") == 2


def test_malformed_environment_variables_are_refused_alone() -> None:
    environ = {
        "AIRFLOW_CONN_GOOD": WAREHOUSE_URI,
        "AIRFLOW_CONN_OUT_OF_RANGE": f"postgres://admin:{ENCODED}@db:99999/app",
        "AIRFLOW_CONN_BROKEN": '{"conn_type": "postgres", "password": ' + json.dumps(PASSWORD),
        "AIRFLOW_CONN_LISTED": f'{{"conn_type": "postgres", "extra": [{json.dumps(PASSWORD)}]}}',
    }
    result = read_environment(environ)

    assert by_id(result) == {"good": WAREHOUSE}
    problems = reasons(result)
    assert list(problems) == ["out_of_range", "broken", "listed"]
    assert problems["out_of_range"].startswith("invalid URI: URI has an invalid port")
    assert problems["broken"].startswith("the value is not valid JSON")
    assert problems["listed"] == "extra must be a JSON object, not an array"


@pytest.mark.parametrize("name", ["connections.txt", "connections"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, WAREHOUSE_URI)
    with pytest.raises(ImportFileError, match=r"unknown format") as raised:
        read_export(path)
    assert str(path) in str(raised.value)
    assert_no_password(str(raised.value))


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("list.json", json.dumps([{"conn_type": "postgres", "password": PASSWORD}]), "an array"),
        ("scalar.yaml", json.dumps(PASSWORD), "a string"),
        ("empty.yml", "", "null"),
    ],
)
def test_top_level_not_a_mapping(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ImportFileError, match=f"holds {kind}, not an object of connection ids") as raised:
        read_export(path)
    assert str(path) in str(raised.value)
    assert_no_password(str(raised.value))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("broken.json", '{"a": {"password": ' + json.dumps(PASSWORD), "not valid JSON"),
        ("broken.yaml", f"a:\n  password: {PASSWORD}: x\n", r"not valid YAML \(line 2, column 29\)"),
        ("tabbed.yaml", f"a:\n\tpassword: {PASSWORD}\n", r"not valid YAML \(line 2, column 1\)"),
        # A URI with its "conn_id=" lost: the text before its query's "=" holds the password.
        (
            "lost_id.env",
            f"good={WAREHOUSE_URI}\n{WAREHOUSE_URI}\n",
            "line 2 does not start with a connection id",
        ),
        (
            "lost_json_id.env",
            json.dumps({"password": PASSWORD}),
            "line 1 does not start with a connection id",
        ),
    ],
)
def test_unreadable_files_never_quote_their_content(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ImportFileError, match=expected) as raised:
        read_export(path)
    assert str(path) in str(raised.value)
    assert_no_password(str(raised.value))


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="cannot read it: No such file") as raised:
        read_export(tmp_path / "missing.json")
    assert "missing.json" in str(raised.value)

    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"a:\n  password: {PASSWORD}\u00e9\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"latin1\.yaml: not UTF-8 text") as raised:
        read_export(path)
    assert_no_password(str(raised.value))


def test_results_do_not_show_passwords(tmp_path: Path) -> None:
    result = read_export(write(tmp_path / "out.json", json.dumps(EXPORTED)))
    assert_no_password(repr(result))
    assert_no_password(str(result))
