"""OpenTelemetry traces: one connection test is one trace, from its POST to its recorded result, with
spans from the API, its control worker and the worker process, exported over OTLP/HTTP to a receiver
inside the test. Off when no OTLP endpoint is set, without even importing the SDK."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

from tests import secret_scan
from tests.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.stack import unique, wait_terminal

POST_TEST = "POST /api/v2/connections/test"


def _trace_of_post(receiver: Receiver) -> list[ReceivedSpan]:
    spans = receiver.snapshot()
    roots = [s for s in spans if s.service == "airlock-api" and s.name == POST_TEST]
    if not roots:
        return []
    return [s for s in spans if s.trace_id == roots[0].trace_id]


def _complete(trace: list[ReceivedSpan]) -> bool:
    names = {(s.service, s.name.split(":")[0]) for s in trace}
    return {
        ("airlock-api", "StartWorkflow"),
        ("airlock-api", "RunWorkflow"),
        ("airlock-api", "RunActivity"),
        ("airlock-worker", "RunActivity"),
    } <= names and any(s.service == "airlock-api" and s.name.startswith("POST /execution") for s in trace)


async def test_one_connection_test_is_one_trace_across_the_api_and_the_worker(make_process_stack) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with otlp_receiver() as receiver, listener:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        stack = await make_process_stack(otel)
        queue = unique("traced")
        await stack.start_worker(queue, **otel)
        await stack.wait_worker(queue)
        async with stack.client() as client:
            # A password the tcp tester does not use, but every part carries: never in a span.
            body = {
                "conn_type": "tcp",
                "host": "127.0.0.1",
                "port": listener.getsockname()[1],
                "password": secret_scan.password(),
                "queue": queue,
            }
            # The Temporal UI's decode path holds the codec token: such requests are not traced.
            decoded = await client.post(
                f"/codec/ui/{stack.secrets.codec_token}/decode", json={"payloads": []}
            )
            assert decoded.status_code == 200, decoded.text
            posted = await client.post("/api/v2/connections/test", json=body)
            assert posted.status_code == 202, posted.text
            assert (await wait_terminal(client, posted.json()["id"]))["state"] == "success"
        trace: list[ReceivedSpan] = []
        for _ in range(200):
            trace = _trace_of_post(receiver)
            if _complete(trace):
                break
            await asyncio.sleep(0.1)
    assert _complete(trace), "\n".join(sorted({f"{s.service} {s.name}" for s in trace}))
    exported = "\n".join(f"{s.name} {s.attributes}" for s in receiver.snapshot())
    assert not secret_scan.SESSION.check_output(exported, "exported spans")
    assert "/codec/ui/" not in exported
    # One tree: every span but the POST's has its parent in the trace.
    ids = {s.span_id for s in trace}
    orphans = [s for s in trace if s.name != POST_TEST and s.parent_id not in ids]
    assert orphans == [], orphans
    # The worker's calls to the Execution API are its spans, and the API's answers are their children.
    worker_calls = {
        s.span_id
        for s in trace
        if s.service == "airlock-worker" and s.name.split()[0] in {"GET", "POST", "PATCH", "PUT"}
    }
    assert any(s.service == "airlock-api" and s.parent_id in worker_calls for s in trace), trace


def test_without_an_endpoint_tracing_is_off_and_its_sdk_never_loaded() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys; from airlock.tracing import configure_tracing, temporal_interceptors;"
        "import api.main, worker.main;"
        "assert configure_tracing('x') is False and temporal_interceptors() == [];"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
