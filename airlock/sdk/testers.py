"""What a connection tester is: a function of a connection's fields and a timeout in seconds that
answers ``(ok, message)``. Part of the public plugin API: import it from :mod:`airlock.sdk`."""

from __future__ import annotations

from collections.abc import Callable

from airlock.connection import ConnectionFields

# Runs in a child process that is killed at the deadline; whatever it raises is a failed test, and
# its message is scrubbed of the connection's secrets before anyone sees it.
Tester = Callable[[ConnectionFields, float], tuple[bool, str]]
