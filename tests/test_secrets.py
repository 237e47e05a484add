"""What counts as a secret and how it is hidden: one list of secret-looking keys for the API's masks
and the workers' scrubbing, and a scrub that neither reveals a password nor mangles the message."""

from __future__ import annotations

import base64

import pytest

from airlock.connection import ConnectionFields
from airlock.secrets import MASK, connection_secrets, mask, scrub, sensitive_values, unmask


@pytest.mark.parametrize(
    ("message", "password", "shown"),
    [
        # A short password is a word of its own where it leaks, never a piece of another word.
        (
            "authentication failed for user 'nosuchrole'",
            "e",
            "authentication failed for user 'nosuchrole'",
        ),
        ("user root denied", "o", "user root denied"),
        ("password e is wrong", "e", "password *** is wrong"),
        ("login as root:o@db failed", "o", "login as root:***@db failed"),
        ('password "pw1" rejected', "pw1", 'password "***" rejected'),
        # A long one is hidden wherever it stands, glued to other text or not.
        ("token=Xhunter2-secretY", "hunter2-secret", "token=X***Y"),
        # URL-quoted forms too.
        ("dsn: postgres://u:p%40ss%2F1@h", "p@ss/1", "dsn: postgres://u:***@h"),
    ],
)
def test_scrub_hides_the_password_without_mangling_the_message(
    message: str, password: str, shown: str
) -> None:
    assert scrub(message, password) == shown


def test_scrub_prefers_the_longest_secret_and_ignores_empty_ones() -> None:
    assert scrub("a secret-plus b", None, "", "secret", "secret-plus") == "a *** b"
    assert scrub("nothing here", None, "") == "nothing here"


def test_nested_secret_keys_are_masked_and_kept() -> None:
    extra = {
        "sslmode": "require",
        "api_token": "tok-1",
        "headers": {"Authorization": "Bearer abc", "Accept": "json"},
        "hosts": [{"password": "pw"}, {"name": "n"}],
        "empty_secret": "",
    }
    masked = mask(extra)
    assert masked == {
        "sslmode": "require",
        "api_token": MASK,
        "headers": {"Authorization": MASK, "Accept": "json"},
        "hosts": [{"password": MASK}, {"name": "n"}],
        "empty_secret": "",
    }
    # Sending the masked form back keeps every stored secret; a changed value replaces it.
    masked["headers"]["Accept"] = "xml"
    assert unmask(masked, extra) == {**extra, "headers": {"Authorization": "Bearer abc", "Accept": "xml"}}


def test_the_worker_side_finds_the_same_secrets_the_api_masks() -> None:
    conn = ConnectionFields(
        conn_type="http",
        login="u",
        password="pw-9",
        extra={"headers": {"Authorization": "Bearer tok-abc"}, "url": "https://x:urlpw@h/"},
    )
    found = set(connection_secrets(conn))
    assert {"pw-9", "u:pw-9", base64.b64encode(b"u:pw-9").decode()} <= found
    assert {"Bearer tok-abc", "tok-abc", "urlpw"} <= found
    assert set(sensitive_values(conn.extra)) == {"Bearer tok-abc", "tok-abc", "urlpw"}
