"""Tracing (optional, off by default): OpenTelemetry spans of each request, each backend call and the
CPU work on images (decoding, tiling, encoding), exported over OTLP/HTTP to ``otlp_endpoint``.

Off (no ``otlp_endpoint``), nothing of OpenTelemetry's SDK is imported and :func:`span` is a no-op;
on, it needs the ``tracing`` extra (``pip install 'ganserve[tracing]'``). A request's span joins the
caller's trace when the request carries a W3C ``traceparent`` (HTTP header or gRPC metadata), and
names its request id (``ganserve.request_id``), so that a trace and the access log meet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ganserve.serve.access.context import current
from ganserve.serve.settings import Settings

SPAN_NAME_BACKEND = "backend.infer"
SPAN_NAME_IMAGE_WORK = "image work"


class Tracing:
    """The gateway's tracer provider (None when tracing is off)."""

    def __init__(self, settings: Settings | None = None) -> None:
        """Tracing as ``settings`` say (None: off)."""
        self.tracer: Any = None
        self._provider: Any = None
        if settings is None or not settings.otlp_endpoint:
            return
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise RuntimeError(f"otlp_endpoint is set but OpenTelemetry's SDK is not installed ({exc.name}): "
                               f"pip install 'ganserve[tracing]'") from None
        self._provider = TracerProvider(resource=Resource.create({"service.name": settings.otlp_service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        self.tracer = self._provider.get_tracer("ganserve.serve")

    @contextlib.contextmanager
    def request_span(self, name: str, *, carrier: Mapping[str, str], **attributes: Any) -> Iterator[Any]:
        """A request's span (None when tracing is off), in the trace of the caller's ``traceparent``."""
        if self.tracer is None:
            yield None
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(name, context=extract(carrier), kind=SpanKind.SERVER,
                                               attributes=attributes, record_exception=False,
                                               set_status_on_exception=False) as span:
            yield span

    def shutdown(self) -> None:
        """Sends what is buffered and stops (the gateway's end)."""
        if self._provider is not None:
            self._provider.shutdown()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the running request's span; a no-op outside a traced request."""
    context = current()
    if context is None or context.tracer is None:
        return contextlib.nullcontext()
    return context.tracer.start_as_current_span(name, attributes=attributes)


def add_event(name: str, **attributes: Any) -> None:
    """An event on the running request's span, if it is traced."""
    context = current()
    if context is not None and context.span is not None:
        context.span.add_event(name, attributes=attributes)


class TracedBackend:
    """A backend whose ``infer`` calls are spans of the requests that make them (and the same
    backend for everything else)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def infer(self, model: str, version: int, inputs: Mapping[str, Any]) -> Any:
        rows = len(next(iter(inputs.values()))) if inputs else 0
        with span(SPAN_NAME_BACKEND, **{"ganserve.model": model, "ganserve.model_version": version,
                                        "ganserve.rows": rows}):
            return await self._backend.infer(model, version, inputs)
