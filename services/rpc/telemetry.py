"""OpenTelemetry tracing, configured by the standard OTEL_* environment variables.

Off unless OTEL_TRACES_EXPORTER names an exporter: `console` prints spans,
`otlp` sends them to OTEL_EXPORTER_OTLP_ENDPOINT. The gRPC interceptors are always
installed; with no exporter they cost a no-op span. The trace context travels in
gRPC metadata, so one trace follows a call from the client through the mesh.
"""

from __future__ import annotations

import os

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    client_interceptor,
)
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from reservoir.errors import InvalidArgument

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install a tracer provider if OTEL_TRACES_EXPORTER asks for one (once per process)."""
    global _configured
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    names = [n for n in names if n and n != "none"]
    if _configured or not names:
        return
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _configured = True


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise InvalidArgument(f"OTEL_TRACES_EXPORTER={name!r}: Reservoir knows console, otlp, none")


# opentelemetry-instrumentation-grpc is marked typed (py.typed) but leaves these
# factories unannotated: the types below are those of the objects they return
# (OpenTelemetryAioServerInterceptor, the four *AioClientInterceptor, an
# _InterceptorChannel).
def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]
    return [interceptor]


def client_aio_interceptors() -> list[grpc.aio.ClientInterceptor]:
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return list(interceptors)


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    traced: grpc.Channel = intercept_channel(channel, client_interceptor())  # type: ignore[no-untyped-call]
    return traced
