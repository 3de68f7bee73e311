"""Tracing: spans sent by OpenTelemetry's own OTLP/HTTP exporter to a receiver in the test (it decodes
the protobuf requests a collector would get), for HTTP and gRPC requests; off, nothing of the SDK is
imported."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ganserve.serve.access.tracing import SPAN_NAME_BACKEND, SPAN_NAME_IMAGE_WORK
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from tests.serve.helpers import running_gateway, test_settings
from tests.serve.test_access import grpc_call

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                                    reason="the tracing extra is not installed")
pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    """An OTLP/HTTP endpoint: every span it is sent, decoded."""
    spans: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service.ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                for scope in resource.scope_spans:
                    spans.extend((service, s) for s in scope.spans)
            answer = trace_service.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/traces", spans
    finally:
        server.shutdown()


def _attributes(span) -> dict:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_requests_are_traced_over_otlp(model_repo: Path, receiver) -> None:
    endpoint, spans = receiver
    settings = test_settings(model_repo, otlp_endpoint=endpoint, otlp_service_name="ganserve-test")
    with running_gateway(settings) as gw:
        r = httpx.post(f"{gw.http_url}/generate", json={"seed": 1, "n": 2},
                       headers={"traceparent": TRACEPARENT, "X-Request-ID": "traced-1"})
        assert r.status_code == 200
        _, status, *_ = grpc_call(gw, "Generate", pb.GenerateRequest(seed=2),
                                  metadata=(("x-request-id", "traced-2"),))
        assert status == "OK"
    # the gateway's stop sent what was buffered
    assert {service for service, _ in spans} == {"ganserve-test"}
    by_name: dict[str, list] = {}
    for _, span in spans:
        by_name.setdefault(span.name, []).append(span)
    (http_span,) = by_name["POST /generate"]
    assert http_span.trace_id.hex() == TRACE_ID  # joined the caller's trace
    attributes = _attributes(http_span)
    assert attributes["ganserve.request_id"] == "traced-1" and attributes["http.response.status_code"] == 200
    assert attributes["http.route"] == "/generate" and attributes["ganserve.model"] == "tiny"
    assert [e.name for e in http_span.events] == ["priced"]
    (grpc_span,) = by_name["/ganserve.v1.Gateway/Generate"]
    assert _attributes(grpc_span)["ganserve.request_id"] == "traced-2"
    assert _attributes(grpc_span)["rpc.grpc.status_code"] == "OK"
    for parent in (http_span, grpc_span):  # a backend call and the image encoding under each request
        children = [s for _, s in spans if s.parent_span_id == parent.span_id]
        assert {SPAN_NAME_BACKEND, SPAN_NAME_IMAGE_WORK} <= {s.name for s in children}
        backend = next(s for s in children if s.name == SPAN_NAME_BACKEND)
        assert _attributes(backend)["ganserve.model"] == "tiny" and backend.trace_id == parent.trace_id
    assert _attributes(next(s for s in by_name[SPAN_NAME_BACKEND] if s.parent_span_id == http_span.span_id))[
        "ganserve.rows"] == 2


def test_tracing_off_imports_no_sdk(model_repo: Path) -> None:
    code = ("import sys; from ganserve.serve.runtime import Runtime; from ganserve.serve.settings import Settings; "
            f"r = Runtime(Settings(model_repository={str(model_repo)!r})); "
            "assert r.tracing.tracer is None; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_missing_sdk_is_named(model_repo: Path) -> None:
    code = ("import sys; sys.modules['opentelemetry.sdk'] = None; from ganserve.serve.access.tracing import Tracing; "
            "from ganserve.serve.settings import Settings; Tracing(Settings(otlp_endpoint='http://x:4318/v1/traces'))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "pip install 'ganserve[tracing]'" in out.stderr
