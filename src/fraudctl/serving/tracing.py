"""OpenTelemetry for scoring: one span per request with children for the feature fetch,
the model and the shadow call; the trace id goes back in the body and in a
``traceparent`` response header.  Exporter from ``FRAUDCTL_OTLP_ENDPOINT``: an
``http(s)://`` OTLP/HTTP collector, ``console``, or unset (spans are still made, so trace
ids exist, but nothing is exported)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class RequestTrace:
    def __init__(self, tracer: Any, span: Any) -> None:
        self._tracer = tracer
        self._span = span
        context = span.get_span_context()
        self.trace_id = f"{context.trace_id:032x}"
        self.traceparent = f"00-{self.trace_id}-{context.span_id:016x}-01"

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        with self._tracer.start_as_current_span(name):
            yield

    def set(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)


class Tracing:
    def __init__(self, endpoint: str | None, service: str = "fraudctl-serve") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter: Any = None
        if endpoint == "console":
            exporter = ConsoleSpanExporter()
        elif endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("fraudctl.serve")

    @contextlib.contextmanager
    def request(self, name: str, traceparent: str | None) -> Iterator[RequestTrace]:
        """A request span, continuing the caller's trace when it sent ``traceparent``."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = None
        if traceparent:
            context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        with self.tracer.start_as_current_span(name, context=context) as span:
            yield RequestTrace(self.tracer, span)

    def shutdown(self) -> None:
        self.provider.shutdown()
