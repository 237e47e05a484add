"""One way every Airlock process connects to Temporal: the API and its control worker, the workers and
triggerers, the benchmarks. TLS, a client certificate and an API key come from the settings alone, so
pointing a deployment at Temporal Cloud or a secured cluster is configuration, not code."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from airlock.settings import TemporalSettings
from airlock.tracing import temporal_interceptors


async def connect_temporal(
    settings: TemporalSettings, data_converter: DataConverter, runtime: Runtime | None = None
) -> Client:
    """``runtime``: the SDK runtime the client and its workers run on (a worker's serves its metrics);
    the process's default one otherwise."""
    tls = settings.temporal_tls_config()
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter,
            tls=tls,
            api_key=settings.temporal_api_key or None,
            runtime=runtime,
            interceptors=temporal_interceptors(),
        )
    except RuntimeError as exc:
        # The SDK's message names the cause (a refused certificate, a wrong server name, no listener).
        over = " over TLS" if tls else ""
        raise SystemExit(f"cannot connect to Temporal at {settings.temporal_address}{over}: {exc}") from None
