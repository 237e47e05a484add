"""How the console shows a ``greeting`` connection: host and port, and the word the server must say."""

from airlock.sdk import ConnectionForm

GREETING_FORM = ConnectionForm(
    hidden=frozenset({"schema", "login", "password"}),
    labels={"extra": "Extra: the greeting expected"},
    placeholders={"host": "greeter.example.internal", "extra": '{"expect": "HELLO"}'},
)
