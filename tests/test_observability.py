"""What operators read: the processes' logs (one setup, JSON lines on demand, every line about a test or
trigger naming it, its queue and worker, no secret) and the Temporal UI's view of each workflow
(summary, details, current details, a failed test shown as failed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests import secret_scan
from tests.stack import Stack, unique, wait_terminal
from tests.test_triggers import FILE_TRIGGER, TEST_ALLOWLIST, defer, wait_trigger

ANSI = re.compile(r"\x1b\[")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log, parsed: a line that is not a JSON object fails the test."""
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), (path.name, number, line)
        lines.append(entry)
    return lines


async def test_json_logs_name_the_test_or_trigger_in_every_line_about_it(
    make_process_stack, tmp_path: Path
) -> None:
    stack: Stack = await make_process_stack(env={"AIRLOCK_LOG_FORMAT": "json"})
    queue = unique("net")
    stack.start_worker(queue, name="json-worker", AIRLOCK_LOG_FORMAT="json")
    triggers = unique("trig")
    stack.start_worker(
        triggers,
        name="json-triggerer",
        AIRLOCK_LOG_FORMAT="json",
        AIRLOCK_TRIGGERER="true",
        AIRLOCK_TRIGGER_ALLOWLIST=f"{TEST_ALLOWLIST},tests.secret_scan.*",
    )
    await stack.wait_worker(queue)
    await stack.wait_worker(triggers)
    password = secret_scan.password("Pw-")
    trigger_password = secret_scan.trigger_secret()
    flag = tmp_path / "go.flag"
    async with stack.client() as client:
        tests = {}
        for uri in (f"tcp://127.0.0.1:{stack.api.port}", f"postgres://alice:{password}@127.0.0.1:1/db"):
            r = await client.post("/api/v2/connections/test", json={"uri": uri, "queue": queue})
            assert r.status_code == 202, r.text
            tests[r.json()["id"]] = await wait_terminal(client, r.json()["id"])
        fired = await defer(
            client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=triggers
        )
        leaky = await defer(
            client, "tests.secret_scan.LeakyTrigger", {"password": trigger_password}, queue=triggers
        )
        flag.write_text("go")
        ends = {ti["trigger_id"]: await wait_trigger(client, ti["trigger_id"]) for ti in (fired, leaky)}
    stack.stop_workers()
    await stack.api.stop()
    print({k: v["state"] for k, v in {**tests, **ends}.items()})
    for path in sorted(tmp_path.glob("*.log")):
        print(f"===== {path.name}")
        print(path.read_text()[:20000])
    raise AssertionError("look")
