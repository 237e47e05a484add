"""OpenTelemetry traces across every process: the API's requests, the workflows and activities
(temporalio's ``TracingInterceptor`` on every client, and so on every worker made from one), and the
Execution API calls a worker makes. One connection test is one trace, from its POST to its recorded
result, across the API, its control worker and the worker that ran it.

Configured by the standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``...), exported over OTLP/HTTP. Off unless an OTLP endpoint is set:
then nothing of OpenTelemetry's SDK is even imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_provider: TracerProvider | None = None


def tracing_requested() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def configure_tracing(service_name: str) -> bool:
    """Install the process's tracer provider, exporting over OTLP/HTTP, if the environment asks for
    traces. ``OTEL_SERVICE_NAME`` overrides ``service_name``. Whether traces are on."""
    global _provider
    if _provider is not None:
        return True
    if not tracing_requested():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # What OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say, or else this process's own name.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def tracing_on() -> bool:
    return _provider is not None


def temporal_interceptors() -> list[Interceptor]:
    """For ``Client.connect``: the workers made from the client take them too."""
    if not tracing_on():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_httpx_client(client: Any) -> None:
    """Spans for the client's requests, and their trace context in the headers the server reads."""
    if tracing_on():
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client)


def flush_traces() -> None:
    """Send what is buffered: at the end of the process, before it is lost."""
    if _provider is not None:
        _provider.force_flush()
