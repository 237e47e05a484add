"""The secret scan (issue 4): recognisable secrets, and a scanner for every place they must not reach.

Every password and trigger secret the suite makes comes from ``password()`` or ``trigger_secret()``:
a fixed marker plus a random part, kept in a registry; the session's keys and tokens are added with
``register()``. At the end of the session the scanner has looked at every HTTP response body the test
process received, the CLI's output, the in-process API's log (stdlib and structlog, INFO and up, the
access log included), every ``*.log`` file of the session (worker logs among them), and the Temporal
history of every workflow on the session's dev server (raw protobuf bytes, and each payload decoded
with the project's codec). Any occurrence of a registered secret, raw, URL-quoted, JSON-escaped or
base64-encoded, any piece of a marked one, or any JWT where no token belongs, is a finding; the run
fails with the list.

Tokens the API mints are never seen by the tests, so any JWT (``eyJ...eyJ...``) or worker credential
(``aw1....``) counts, except in the few responses whose purpose is to hand one out
(``TOKEN_ENDPOINTS``); decoded payloads carry none (activity inputs carry ids). Responses that
deliver a workload's credentials to a worker may carry passwords and trigger secrets
(``CREDENTIAL_ENDPOINTS``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import secrets as random_source
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.converter import PayloadCodec

from airlock.codec import ENCODING, master_codec
from airlock.sdk import BaseTrigger, TriggerEvent

# Built from parts so that no source line (shown in a traceback, say) contains the marker itself.
MARKER = "Zq" + "SeCrEt" + "x7W"
PASSWORD, TRIGGER_SECRET, TOKEN, KEY = "password", "trigger secret", "token", "key"
KINDS = (PASSWORD, TRIGGER_SECRET, TOKEN, KEY)
# What may never appear in a place: everything, or everything but tokens (the CLI's output where its
# purpose is to hand one out).
EVERYTHING = frozenset(KINDS)
NOT_TOKENS = frozenset({PASSWORD, TRIGGER_SECRET, KEY})
NOT_KEYS_OR_TOKENS = frozenset({PASSWORD, TRIGGER_SECRET})
# Any JWT, and any provisioned worker's credential ("aw1.<name>.<secret>"), is a token.
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+|aw1\.[a-z0-9-]+\.[A-Za-z0-9_-]{40,}")
# The scanner's own tests plant leaks on purpose: workflows with this id prefix, and requests with
# this header (a token planted in a response), are theirs to check; the session scan leaves them out.
PLANTED_PREFIX = "secret-scan-planted-"
PLANTED_HEADER = "x-secret-scan-planted"

# (method, path pattern, kinds a response of that route may carry).
CREDENTIAL_ENDPOINTS: tuple[tuple[str, re.Pattern[str], frozenset[str]], ...] = (
    ("POST", re.compile(r"/execution/connection-tests/[^/]+/claim$"), frozenset({PASSWORD})),
    ("GET", re.compile(r"/execution/connection-tests/[^/]+/connection$"), frozenset({PASSWORD})),
    # Provisioning hands a worker its credential and its queues' payload keys, once.
    ("POST", re.compile(r"/api/v2/workers$"), frozenset({KEY})),
    ("GET", re.compile(r"/execution/triggers/[^/]+/connections/[^/]+$"), frozenset({PASSWORD})),
    ("POST", re.compile(r"/execution/triggers/[^/]+/workload$"), frozenset({TRIGGER_SECRET, PASSWORD})),
)
TOKEN_ENDPOINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # A task runner gets its Execution API token when it registers the task instance.
    ("POST", re.compile(r"/api/v2/task-instances$")),
    # A claim hands the worker a token for the workload it claimed.
    ("POST", re.compile(r"/execution/connection-tests/[^/]+/claim$")),
    ("POST", re.compile(r"/execution/triggers/[^/]+/workload$")),
    ("POST", re.compile(r"/api/v2/workers$")),
    ("POST", re.compile(r"/ui/workers$")),  # the console's form for it
    # Signing in to the console sets its session cookie (a signed token holding no credential).
    ("POST", re.compile(r"/ui/login$")),
)


@dataclass(frozen=True)
class Finding:
    where: str
    what: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: …{self.excerpt}…"


@dataclass
class Secret:
    value: str
    kind: str
    label: str
    forms: tuple[bytes, ...]


def _b64_middles(data: bytes) -> set[bytes]:
    """The base64 characters fixed by ``data`` alone, at each of the three alignments it can have
    inside a longer encoded string (standard and URL-safe alphabets)."""
    found: set[bytes] = set()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + data)
        first = -(-pad * 8 // 6)  # the first character with no bit of the padding
        last = (pad + len(data)) * 8 // 6  # past the last character with only data bits
        middle = encoded[first:last]
        if len(middle) >= 8:
            found.add(middle)
            found.add(middle.replace(b"+", b"-").replace(b"/", b"_"))
    return found


def forms_of(value: str) -> tuple[bytes, ...]:
    """Every way a secret shows up in a log, a body or a protobuf: as is, URL-quoted, JSON-escaped,
    and base64-encoded (a basic-auth header, a payload's data)."""
    texts = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}
    raw = {text.encode() for text in texts}
    for text in list(raw):
        raw |= _b64_middles(text)
    # Longest first: a form that contains another is reported (and removed) before it.
    return tuple(sorted(raw, key=len, reverse=True))


class Scanner:
    def __init__(self, marker: str = MARKER) -> None:
        self.marker = marker
        self.anchors = (marker.encode(), *_b64_middles(marker.encode()))
        self._lock = threading.Lock()
        # Time spent checking responses and outputs as they arrive, for the report.
        self.check_seconds = 0.0
        self.secrets: dict[str, Secret] = {}
        self.findings: list[Finding] = []
        self.counts: dict[str, int] = {
            "responses": 0,
            "cli outputs": 0,
            "log files": 0,
            "log lines": 0,
            "log bytes": 0,
            "workflows": 0,
            "history bytes": 0,
            "payloads decoded": 0,
            "payloads not decodable": 0,
        }

    # --- the registry ---------------------------------------------------------------------------

    def new(self, kind: str, around: str = "") -> str:
        """A fresh recognisable secret: ``around`` (characters a test needs), the marker, random hex."""
        return self.register(f"{around}{self.marker}{random_source.token_hex(6)}", kind)

    def register(self, value: str, kind: str) -> str:
        """Remember a secret made elsewhere (dev keys, minted tokens); it is scanned for from now on."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        if len(value) < 6:
            raise ValueError("a secret this short would match by chance: use new()")
        with self._lock:
            if value not in self.secrets:
                label = f"{kind} #{sum(s.kind == kind for s in self.secrets.values()) + 1}"
                self.secrets[value] = Secret(value, kind, label, forms_of(value))
        return value

    # --- scanning -------------------------------------------------------------------------------

    def find(self, data: bytes | str, where: str, forbidden: frozenset[str] = EVERYTHING) -> list[Finding]:
        """Each forbidden secret ``data`` holds (recorded nowhere)."""
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        found: list[Finding] = []
        with self._lock:
            registered = list(self.secrets.values())
        marked = any(anchor in raw for anchor in self.anchors)
        rest = raw
        for secret in registered:
            if not marked and self.marker in secret.value:
                continue  # no anchor, so no marked secret in any form: skip their forms
            for form in secret.forms:
                if form in rest:
                    if secret.kind in forbidden:
                        found.append(Finding(where, secret.label, self._excerpt(rest, form)))
                    rest = rest.replace(form, b"")
        # A piece of a marked secret (cut, or re-encoded some other way) is a leak as well.
        left = [anchor for anchor in self.anchors if anchor in rest] if marked else []
        if left:
            found.append(Finding(where, "part of a marked secret", self._excerpt(rest, left[0])))
        if TOKEN in forbidden:
            found += [Finding(where, "a JWT", self._excerpt(raw, m.group())) for m in JWT.finditer(raw)]
        return found

    def scan(self, data: bytes | str, where: str, forbidden: frozenset[str] = EVERYTHING) -> list[Finding]:
        """Like ``find``, and the findings count against the run."""
        found = self.find(data, where, forbidden)
        if found:
            with self._lock:
                self.findings += found
        return found

    def _excerpt(self, data: bytes, form: bytes) -> str:
        at = data.find(form)
        before = data[max(0, at - 40) : at].decode("utf-8", "replace")
        after = data[at + len(form) : at + len(form) + 40].decode("utf-8", "replace")
        return self.redact(f"{before}<SECRET>{after}").replace("\n", " ")

    def redact(self, text: str) -> str:
        """``text`` with every registered secret and JWT replaced: a report must not leak either."""
        with self._lock:
            values = sorted(self.secrets, key=len, reverse=True)
        for value in values:
            text = text.replace(value, f"<{self.secrets[value].label}>")
            text = text.replace(quote(value, safe=""), f"<{self.secrets[value].label}>")
        return JWT.sub(b"<JWT>", text.encode()).decode()

    # --- the places -----------------------------------------------------------------------------

    def check_response(self, response: httpx.Response) -> list[Finding]:
        method, path = response.request.method, response.request.url.path
        forbidden = EVERYTHING
        for verb, pattern, allowed in CREDENTIAL_ENDPOINTS:
            if verb == method and pattern.search(path):
                forbidden = forbidden - allowed
        if any(verb == method and pattern.search(path) for verb, pattern in TOKEN_ENDPOINTS):
            forbidden = forbidden - {TOKEN}
        started = time.perf_counter()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        found = self.find(headers + b"\n" + response.content, "", forbidden)
        if found:
            where = self.redact(f"response {method} {path} -> {response.status_code}{_current_test()}")
            found = [replace(finding, where=where) for finding in found]
        with self._lock:
            self.findings += found
            self.counts["responses"] += 1
            self.check_seconds += time.perf_counter() - started
        return found

    async def async_response_hook(self, response: httpx.Response) -> None:
        await response.aread()
        self.check_response(response)

    def check_output(self, text: str, where: str, forbidden: frozenset[str] = EVERYTHING) -> list[Finding]:
        """A command's output: also with line breaks removed, as a console folds a long value."""
        started = time.perf_counter()
        found = self.scan(text, where, forbidden)
        if not found:
            found = self.scan(text.replace("\n", ""), f"{where} (lines joined)", forbidden)
        with self._lock:
            self.counts["cli outputs"] += 1
            self.check_seconds += time.perf_counter() - started
        return found

    def scan_log_file(self, path: Path, name: str | None = None) -> list[Finding]:
        data = path.read_bytes()
        with self._lock:
            self.counts["log files"] += 1
            self.counts["log lines"] += data.count(b"\n")
            self.counts["log bytes"] += len(data)
        where = name or str(path)
        if not self.find(data, where):
            return []
        # Something is there: name the lines, for the report.
        found: list[Finding] = []
        for number, line in enumerate(data.splitlines(), 1):
            found += self.scan(line, f"{where} line {number}")
        return found or self.scan(data, where)

    async def scan_temporal(
        self,
        client: Client,
        codec: PayloadCodec | None,
        *,
        only_prefix: str | None = None,
        skip_prefix: str | None = PLANTED_PREFIX,
        concurrency: int = 16,
    ) -> list[Finding]:
        """Every workflow's history: raw bytes for any secret or token, decoded payloads for any
        password, trigger secret or key (inputs carry ids, never credentials: DESIGN.md, invariant 2)."""
        runs = []
        async for execution in client.list_workflows():
            if only_prefix is not None and not execution.id.startswith(only_prefix):
                continue
            if skip_prefix is not None and only_prefix is None and execution.id.startswith(skip_prefix):
                continue
            runs.append((execution.id, execution.run_id))
        semaphore = asyncio.Semaphore(concurrency)

        async def one(wid: str, rid: str) -> None:
            async with semaphore:
                await self._scan_history(client, codec, wid, rid)

        before = len(self.findings)
        await asyncio.gather(*(one(wid, rid) for wid, rid in runs))
        return self.findings[before:]

    async def _scan_history(self, client: Client, codec: PayloadCodec | None, wid: str, rid: str) -> None:
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        raw = History(events=history.events).SerializeToString()
        with self._lock:
            self.counts["workflows"] += 1
            self.counts["history bytes"] += len(raw)
        where = self.redact(f"history of workflow {wid}")
        self.scan(raw, where)
        if codec is None:
            return
        for payload in (p for event in history.events for p in payloads_in(event)):
            if payload.metadata.get("encoding") != ENCODING:
                continue  # plain (search attributes, a test's own workflow): the raw scan saw it
            try:
                [plain] = await codec.decode([payload])
            except Exception:  # sealed with another key (a rotation test): nothing to read
                with self._lock:
                    self.counts["payloads not decodable"] += 1
                continue
            with self._lock:
                self.counts["payloads decoded"] += 1
            self.scan(plain.SerializeToString(), f"{where}, decoded payload")

    def summary(self) -> str:
        kinds = ", ".join(f"{sum(s.kind == kind for s in self.secrets.values())} {kind}s" for kind in KINDS)
        counts = ", ".join(f"{value} {name}" for name, value in self.counts.items())
        return (
            f"{len(self.secrets)} secrets registered ({kinds}); scanned {counts}; {len(self.findings)} hits; "
            f"checking responses and outputs took {self.check_seconds:.2f} s"
        )


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every ``Payload`` inside a protobuf message, maps and repeated fields included."""
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        entry = descriptor.message_type
        if entry is not None and entry.GetOptions().map_entry:
            items: Iterable[Any] = value.values()
        elif isinstance(value, Message):
            items = [value]
        else:
            items = value  # a repeated field
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from payloads_in(item)


def _current_test() -> str:
    test = os.environ.get("PYTEST_CURRENT_TEST", "")
    return f" in {test.rsplit(' ', 1)[0]}" if test else ""


# The session's scanner: the registry every test draws its secrets from.
SESSION = Scanner()


def password(around: str = "") -> str:
    """A recognisable password; ``around`` keeps characters a test needs (URL quoting, say)."""
    return SESSION.new(PASSWORD, around)


def trigger_secret(around: str = "") -> str:
    return SESSION.new(TRIGGER_SECRET, around)


def register(value: str, kind: str) -> str:
    return SESSION.register(value, kind)


class _Tee(io.TextIOBase):
    """structlog's printer writes here: to the session's log file, and on to stdout as before."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")  # closed by SessionCapture.stop

    def write(self, text: str) -> int:
        self._file.write(text)
        return sys.stdout.write(text)

    def flush(self) -> None:
        self._file.flush()
        sys.stdout.flush()

    def close(self) -> None:
        self._file.close()


class _NotTestClients(logging.Filter):
    # httpx's INFO line per request is the test's own client talking (a worker keeps httpx at WARNING).
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(("httpx", "httpcore"))


class SessionCapture:
    """For the whole session: the in-process API's logs into files at INFO, and every HTTP response
    the test process receives through the scanner. ``finish`` scans the log files and reports."""

    def __init__(self, scanner: Scanner, basetemp: Path) -> None:
        self.scanner = scanner
        self.basetemp = basetemp
        self.directory = basetemp / "secret-scan"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.api_log = self.directory / "api.log"
        self.structlog_log = self.directory / "api-structlog.log"
        self.seconds: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def start(self) -> None:
        handler = logging.FileHandler(self.api_log, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.addFilter(_NotTestClients())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)

        def restore_logging() -> None:
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()

        self._undo.append(restore_logging)
        config = structlog.get_config()
        tee = _Tee(self.structlog_log)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, tee)))

        def restore_structlog() -> None:
            structlog.configure(logger_factory=config["logger_factory"])
            tee.close()

        self._undo.append(restore_structlog)
        self._wrap_httpx()

    def _wrap_httpx(self) -> None:
        scanner = self.scanner
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

        def send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            response = sync_send(client, request, **kwargs)
            if not kwargs.get("stream") and PLANTED_HEADER not in request.headers:
                scanner.check_response(response)
            return response

        async def asend(client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            response = await async_send(client, request, **kwargs)
            if not kwargs.get("stream") and PLANTED_HEADER not in request.headers:
                scanner.check_response(response)
            return response

        httpx.Client.send = send  # type: ignore[method-assign,assignment]
        httpx.AsyncClient.send = asend  # type: ignore[method-assign,assignment]

        def restore() -> None:
            httpx.Client.send = sync_send  # type: ignore[method-assign,assignment]
            httpx.AsyncClient.send = async_send  # type: ignore[method-assign,assignment]

        self._undo.append(restore)

    def scan_temporal(self, address: str, payload_key: str) -> None:
        """Every workflow on the session's dev server; call it while the server still runs."""

        async def scan() -> None:
            client = await Client.connect(address)
            await self.scanner.scan_temporal(client, master_codec("k1", payload_key))

        started = time.monotonic()
        # Its own thread and loop: the session's loop is not running during fixture teardown.
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(scan())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, name="secret-scan-temporal")
        thread.start()
        thread.join()
        self.seconds["temporal"] = time.monotonic() - started
        if errors:
            raise errors[0]

    def stop(self) -> None:
        while self._undo:
            self._undo.pop()()

    def finish(self) -> None:
        """Scan every log file of the session, report the counts, fail on any finding."""
        started = time.monotonic()
        for path in sorted(self.basetemp.rglob("*.log")):
            self.scanner.scan_log_file(path, str(path.relative_to(self.basetemp)))
        self.seconds["logs"] = time.monotonic() - started
        timing = ", ".join(f"{name} {value:.2f} s" for name, value in self.seconds.items())
        findings = self.scanner.findings
        from tests.reliability import record

        record(
            "secret scan",
            sum(self.scanner.counts[k] for k in ("responses", "cli outputs", "log files", "workflows")),
            f"{len(findings)} plaintext occurrences",
            f"{self.scanner.summary()}; scan time {timing}",
        )
        if findings:
            shown = "\n  ".join(str(f) for f in findings[:50])
            more = f"\n  … and {len(findings) - 50} more" if len(findings) > 50 else ""
            pytest.fail(f"secret scan: {len(findings)} leaks\n  {shown}{more}", pytrace=False)


class LeakyTrigger(BaseTrigger):
    """A careless trigger (tests/test_secret_scan.py): logs its password and raises with it, or
    with the password of the connection it reads."""

    def __init__(self, *, password: str = "", url: str = "", conn_id: str = "", **kwargs: Any) -> None:
        super().__init__(password=password, url=url, conn_id=conn_id, **kwargs)
        self.password, self.url, self.conn_id = password, url, conn_id

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.conn_id:
            conn = await self.context.get_connection(self.conn_id)
            self.log.info("connecting as %s:%s", conn.login, conn.password)
            raise PermissionError(f"{conn.login}:{conn.password} was refused")
        self.log.info("logging in to %s with password %s as %r", self.url, self.password, self)
        raise PermissionError(f"login to {self.url} refused for password {self.password}")
        yield  # pragma: no cover
