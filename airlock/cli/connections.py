"""``airlock connections list | get | add | edit | delete | test``.

A password is never an argument (it would stay in the shell's history and in ``ps``): it is read from
stdin (``--password-stdin``) or asked for without echo (``--ask-password``), unless a ``--uri`` carries it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.text import Text

from airlock.cli.common import (
    DEFAULT_API_URL,
    EXIT_OK,
    EXIT_TEST_FAILED,
    ApiUrl,
    AsJson,
    checked,
    fail,
    out,
    print_json,
    print_resource,
    print_rows,
    public_api,
)
from airlock.cli.connections_import import import_connections
from airlock.connection import InvalidURI, parse_uri

app = typer.Typer(
    help="Connections: list, read, add, edit, delete, and test them on a worker of their network.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ConnectionId = Annotated[str, typer.Argument(help="The connection's id.")]
ConnType = Annotated[
    str | None, typer.Option(help="Its type: postgres, mysql, http, redis, tcp, sqlite, ...")
]
Host = Annotated[str | None, typer.Option(help="Host name or address (a file path for sqlite).")]
Port = Annotated[int | None, typer.Option(min=0, max=65535, help="TCP port.")]
Login = Annotated[str | None, typer.Option(help="User name.")]
Schema = Annotated[str | None, typer.Option(help="Schema: the database name for most types.")]
Extra = Annotated[str | None, typer.Option(help='Extra, a JSON object: \'{"sslmode": "require"}\'.')]
Description = Annotated[str | None, typer.Option(help="Free text.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (its first line).")
]
AskPassword = Annotated[bool, typer.Option("--ask-password", help="Ask for the password, without echo.")]


def _password(from_stdin: bool, ask: bool) -> str | None:
    if from_stdin and ask:
        raise typer.BadParameter("give one of them", param_hint="--password-stdin / --ask-password")
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if ask:
        answer: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return answer
    return None


def _extra(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc.msg}", param_hint="--extra") from None
    if not isinstance(extra, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--extra")
    return extra


def _given(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


@app.command("list")
def list_connections(
    search: Annotated[str | None, typer.Option(help="Only those whose id or host contains this.")] = None,
    conn_type: Annotated[str | None, typer.Option(help="Only connections of this type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, by id.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="How many to skip.")] = 0,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """List saved connections, by id (never a password)."""
    params = _given(search=search, conn_type=conn_type, limit=limit, offset=offset)
    with public_api(api_url) as api:
        body = checked(api.get("/api/v2/connections", params=params), "listing connections")
    if as_json:
        print_json(body)
        return
    print_rows(
        ("id", "type", "host", "port", "schema", "login", "password"),
        [
            (
                c["connection_id"],
                c["conn_type"],
                c["host"],
                c["port"],
                c["schema"],
                c["login"],
                "set" if c["has_password"] else None,
            )
            for c in body["connections"]
        ],
    )


@app.command("get")
def get(connection_id: ConnectionId, as_json: AsJson = False, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Show a saved connection: its fields, extra with sensitive values as ***, never the password."""
    with public_api(api_url) as api:
        body = checked(api.get(f"/api/v2/connections/{connection_id}"), "reading the connection")
    print_resource(body, as_json)


@app.command("add")
def add(
    connection_id: ConnectionId,
    conn_type: ConnType = None,
    uri: Annotated[
        str | None,
        typer.Option(
            help="All its fields at once, Airflow's URI form: conn_type://login:password@host:port/schema?extra=..."
        ),
    ] = None,
    host: Host = None,
    port: Port = None,
    login: Login = None,
    schema: Schema = None,
    extra: Extra = None,
    description: Description = None,
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Save a new connection."""
    fields = _given(
        conn_type=conn_type,
        host=host,
        port=port,
        login=login,
        schema=schema,
        extra=_extra(extra),
        password=_password(password_stdin, ask_password),
    )
    if uri is not None:
        if fields:
            raise typer.BadParameter("give either --uri or the fields, not both", param_hint="--uri")
        try:
            fields = parse_uri(uri)
        except InvalidURI as exc:
            raise typer.BadParameter(str(exc), param_hint="--uri") from None
    if "conn_type" not in fields:
        raise typer.BadParameter("a new connection needs a type (or a --uri)", param_hint="--conn-type")
    request = {"connection_id": connection_id, **fields, **_given(description=description)}
    with public_api(api_url) as api:
        body = checked(api.post("/api/v2/connections", json=request), "adding the connection")
    if as_json:
        print_json(body)
    else:
        out.print(f"connection {body['connection_id']} added")


@app.command("edit")
def edit(
    connection_id: ConnectionId,
    conn_type: ConnType = None,
    host: Host = None,
    port: Port = None,
    login: Login = None,
    schema: Schema = None,
    extra: Annotated[
        str | None,
        typer.Option(help="Extra, a JSON object, replacing the saved one (*** keeps a sensitive value)."),
    ] = None,
    description: Description = None,
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    clear_password: Annotated[
        bool, typer.Option("--clear-password", help="Remove the saved password.")
    ] = False,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Change a saved connection: the fields given change, the others keep their value."""
    changes = _given(
        conn_type=conn_type,
        host=host,
        port=port,
        login=login,
        schema=schema,
        extra=_extra(extra),
        description=description,
        password=_password(password_stdin, ask_password),
    )
    if clear_password:
        if "password" in changes:
            raise typer.BadParameter(
                "clear the password or give a new one, not both", param_hint="--clear-password"
            )
        changes["password"] = None
    if not changes:
        raise typer.BadParameter("nothing to change: give a field to change", param_hint="OPTIONS")
    with public_api(api_url) as api:
        body = checked(
            api.patch(f"/api/v2/connections/{connection_id}", json=changes), "editing the connection"
        )
    if as_json:
        print_json(body)
    else:
        out.print(f"connection {body['connection_id']} changed")


app.command("import")(import_connections)


@app.command("delete")
def delete(connection_id: ConnectionId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Delete a saved connection. Its tests stay in the history."""
    with public_api(api_url) as api:
        checked(api.delete(f"/api/v2/connections/{connection_id}"), "deleting the connection")
    out.print(f"connection {connection_id} deleted")


TERMINAL = {"success", "failed"}
STYLE = {
    "pending": "yellow",
    "queued": "cyan",
    "running": "blue",
    "success": "bold green",
    "failed": "bold red",
}


@app.command("test")
def test(
    uri: Annotated[
        str | None,
        typer.Option(
            help="An unsaved connection, Airflow's URI form: conn_type://[login[:password]@]host[:port][/schema]."
        ),
    ] = None,
    conn_id: Annotated[str | None, typer.Option(help="A saved connection's id.")] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Task queue of the workers that should run it (default: the server's default queue)."
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(min=1, help="Seconds the driver may take (default: the server's, 60)."),
    ] = None,
    save_as: Annotated[
        str | None, typer.Option(help="With --uri: save the connection under this id if the test succeeds.")
    ] = None,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Test a connection on a worker and wait for the result.

    Exits 0 when the test succeeded, 1 when it failed, 2 on a usage or service error.
    """
    if (uri is None) == (conn_id is None):
        raise typer.BadParameter(
            "give one of them: --uri for an unsaved connection, --conn-id for a saved one",
            param_hint="--uri / --conn-id",
        )
    if save_as is not None and uri is None:
        raise typer.BadParameter(
            "only goes with --uri (a saved connection is saved already)", param_hint="--save-as"
        )
    body: dict[str, Any] = {"uri": uri} if uri is not None else {"connection_id": conn_id}
    if save_as is not None:
        body.update(connection_id=save_as, commit_on_success=True)
    if queue is not None:
        body["queue"] = queue
    if timeout is not None:
        body["timeout"] = timeout
    with public_api(api_url) as api:
        test = checked(api.post("/api/v2/connections/test", json=body), "submitting the test")
        if not as_json:
            out.print(Text.assemble("test ", (test["id"], "bold"), " on queue ", (test["queue"], "bold")))
        shown = None
        try:
            while True:
                if test["state"] != shown and not as_json:
                    out.print(
                        Text.assemble("  ", (test["state"], STYLE.get(test["state"], "")), _worker_note(test))
                    )
                shown = test["state"]
                if shown in TERMINAL:
                    break
                time.sleep(0.25)
                test = checked(api.get(f"/api/v2/connections/test/{test['id']}"), "reading the test")
        except KeyboardInterrupt:
            fail(f"interrupted; test {test['id']} goes on: GET /api/v2/connections/test/{test['id']}")
    if as_json:
        print_json(test)
    else:
        out.print(test.get("result_message") or "")
    raise typer.Exit(EXIT_OK if test["state"] == "success" else EXIT_TEST_FAILED)


def _worker_note(test: dict[str, Any]) -> str:
    return f" on {test['worker']}" if test.get("worker") and test["state"] == "running" else ""
