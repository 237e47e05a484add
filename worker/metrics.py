"""A worker's metrics (``airlock worker --metrics-port``): the Temporal SDK's own (task slots, polls,
activity latencies) and Airlock's, on one Prometheus endpoint served by the SDK's exporter, so that a
worker host installs no metrics library.

Airlock's are created through the SDK runtime's meter: connection tests run, their drivers' durations,
Execution API calls retried. Until ``serve`` has made that runtime (metrics off), recording does
nothing. Labels are queues, conn types, outcomes and reasons: never a host, an id or a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airlock.logging import temporal_core_logging

if TYPE_CHECKING:
    from temporalio.common import MetricCounter, MetricHistogramFloat
    from temporalio.runtime import Runtime

    from worker.config import WorkerSettings

TESTS_RUN = "airlock_worker_connection_tests_total"
DRIVER_DURATION = "airlock_worker_driver_duration_seconds"
API_RETRIES = "airlock_worker_api_retries_total"
# A driver runs from milliseconds (a refused port) to its timeout (at most 600 s).
DRIVER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class _Instruments:
    tests: MetricCounter
    driver: MetricHistogramFloat
    retries: MetricCounter


_instruments: _Instruments | None = None


def serve(settings: WorkerSettings) -> Runtime | None:
    """The SDK runtime that serves the metrics on ``metrics_host:metrics_port`` (its core logs go
    through Airlock's logging, as the default runtime's do); None when metrics are off."""
    global _instruments
    if settings.metrics_port is None:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    host = settings.metrics_host
    address = f"[{host}]:{settings.metrics_port}" if ":" in host else f"{host}:{settings.metrics_port}"
    prometheus = PrometheusConfig(
        bind_address=address, histogram_bucket_overrides={DRIVER_DURATION: DRIVER_BUCKETS}
    )
    try:
        runtime = Runtime(
            telemetry=TelemetryConfig(logging=temporal_core_logging(settings.log_level), metrics=prometheus)
        )
    except ValueError as exc:  # the SDK's message says why: "Address already in use", say
        raise SystemExit(f"cannot serve metrics on {address}: {exc}") from None
    meter = runtime.metric_meter
    _instruments = _Instruments(
        tests=meter.create_counter(
            TESTS_RUN, "Connection tests this worker ran, by queue, conn type and outcome (success, failed)"
        ),
        driver=meter.create_histogram_float(
            DRIVER_DURATION,
            "How long each test's driver ran in its child process, by queue and conn type",
            "s",
        ),
        retries=meter.create_counter(
            API_RETRIES,
            "Execution API calls retried after a transient failure, by reason (unreachable, server_error)",
        ),
    )
    return runtime


def connection_test_run(queue: str, conn_type: str, outcome: str) -> None:
    if _instruments is not None:
        _instruments.tests.add(1, {"queue": queue, "conn_type": conn_type, "outcome": outcome})


def driver_ran(queue: str, conn_type: str, seconds: float) -> None:
    if _instruments is not None:
        _instruments.driver.record(seconds, {"queue": queue, "conn_type": conn_type})


def api_retry(reason: str) -> None:
    if _instruments is not None:
        _instruments.retries.add(1, {"reason": reason})
