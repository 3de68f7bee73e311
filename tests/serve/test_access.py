"""Request IDs and the access log, over real HTTP and gRPC clients against a running gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import grpc
import httpx
import pytest

from ganserve.serve.access.context import RequestIdFilter
from ganserve.serve.access.log import ACCESS_LOGGER
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.grpc.servicer import ERROR_CODE_KEY
from tests.serve.helpers import RunningGateway


def grpc_call(gw: RunningGateway, method: str, request, *, metadata=()) -> tuple[object, str, dict, dict]:
    """(response or None, status name, initial metadata, trailing metadata) of one gRPC call."""

    async def main():
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            call = getattr(pb_grpc.GatewayStub(channel), method)(request, timeout=30, metadata=metadata)
            try:
                response = await call
            except grpc.aio.AioRpcError as exc:
                return (None, exc.code().name, dict(exc.initial_metadata() or ()),
                        dict(exc.trailing_metadata() or ()))
            return (response, "OK", dict(await call.initial_metadata()), dict(await call.trailing_metadata()))

    return asyncio.run(main())


def _lines(caplog: pytest.LogCaptureFixture, *expected: str) -> list[dict]:
    """The access-log lines so far, once the lines of the ``expected`` request ids are there (a line
    is written just after its response went out)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
        if {x["request_id"] for x in lines} >= set(expected) or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


# --- HTTP ----------------------------------------------------------------------------------------------

def test_http_request_id_is_generated_or_taken_and_returned(gateway: RunningGateway) -> None:
    made = httpx.post(f"{gateway.http_url}/generate", json={"seed": 1})
    assert made.status_code == 200 and len(made.headers["x-request-id"]) == 32
    again = httpx.post(f"{gateway.http_url}/generate", json={"seed": 1})
    assert again.headers["x-request-id"] != made.headers["x-request-id"]
    mine = httpx.post(f"{gateway.http_url}/generate", json={"seed": 1}, headers={"X-Request-ID": "trace-42.a:b"})
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    for bad in ("x" * 129, "has space", "quote\"d", "<script>", "nl%0a"):
        r = httpx.get(f"{gateway.http_url}/healthz", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32, bad


@pytest.mark.parametrize("call", [
    lambda url: httpx.post(f"{url}/generate", json={"model": "nope"}),                         # service 404
    lambda url: httpx.post(f"{url}/generate", json={"n": "many"}),                             # validation 422
    lambda url: httpx.post(f"{url}/generate", content=b"x" * 70_000,
                           headers={"Content-Type": "application/json"}),                  # body limit 413
    lambda url: httpx.get(f"{url}/no/such/path"),                                              # routing 404
    lambda url: httpx.delete(f"{url}/generate"),                                               # 405
    lambda url: httpx.post(f"{url}/upscale", content=b"\x89PNG", headers={"Content-Type": "image/png"}),
], ids=["model_not_found", "invalid_argument", "payload_too_large", "not_found", "method", "upscale"])
def test_http_errors_carry_the_request_id(gateway: RunningGateway, call) -> None:
    r = call(gateway.http_url)
    assert r.status_code >= 400
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"] and len(r.headers["x-request-id"]) == 32


def test_http_error_body_names_the_clients_request_id(gateway: RunningGateway) -> None:
    r = httpx.post(f"{gateway.http_url}/generate", json={"model": "nope"}, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 404 and r.json()["error"]["request_id"] == "abc-123"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())  # as `ganserve serve` sets up its handlers

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_http_access_log_one_line_per_request(gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    handler = _Collect()
    logging.getLogger(ACCESS_LOGGER).addHandler(handler)
    ok = httpx.post(f"{gateway.http_url}/generate", json={"seed": 3, "n": 2}, headers={"X-Request-ID": "log-ok"})
    missing = httpx.post(f"{gateway.http_url}/generate", json={"model": "nope"}, headers={"X-Request-ID": "log-404"})
    health = httpx.get(f"{gateway.http_url}/healthz", headers={"X-Request-ID": "log-health"})
    assert (ok.status_code, missing.status_code, health.status_code) == (200, 404, 200)
    lines = {line["request_id"]: line for line in _lines(caplog, "log-ok", "log-404", "log-health")
             if line["request_id"].startswith("log-")}
    assert sorted(lines) == ["log-404", "log-health", "log-ok"]  # one line each
    line = lines["log-ok"]
    assert line["protocol"] == "http" and line["route"] == "/generate" and line["model"] == "tiny"
    assert line["status"] == 200 and line["key_id"] == "" and line["client"].startswith("127.0.0.1:")
    assert line["bytes_in"] == len(ok.request.content) and line["bytes_out"] == len(ok.content)
    assert line["duration_ms"] > 0 and line["time"].endswith("+00:00")
    assert (lines["log-404"]["status"], lines["log-404"]["model"]) == (404, "")
    assert lines["log-health"]["route"] == "/healthz"
    # Every record written during a request carries its id (the filter reads the request's context).
    logging.getLogger(ACCESS_LOGGER).removeHandler(handler)
    assert {r.request_id for r in handler.records} >= {"log-ok", "log-404", "log-health"}
    assert RequestIdFilter().filter(record := logging.makeLogRecord({})) and record.request_id == "-"


def test_access_log_never_names_a_path_beyond_its_route(gateway: RunningGateway,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    httpx.get(f"{gateway.http_url}/{'a' * 5000}", headers={"X-Request-ID": "long-path"})
    (line,) = [x for x in _lines(caplog, "long-path") if x["request_id"] == "long-path"]
    assert line["status"] == 404 and len(line["route"]) <= 200


# --- gRPC ----------------------------------------------------------------------------------------------

def test_grpc_request_id_in_initial_and_trailing_metadata(gateway: RunningGateway) -> None:
    response, status, initial, trailing = grpc_call(gateway, "Generate", pb.GenerateRequest(seed=1),
                                                    metadata=(("x-request-id", "grpc-trace-1"),))
    assert status == "OK" and response.images
    assert initial["x-request-id"] == trailing["x-request-id"] == "grpc-trace-1"
    _, _, made, _ = grpc_call(gateway, "ListModels", pb.ListModelsRequest())
    assert len(made["x-request-id"]) == 32
    _, _, replaced, _ = grpc_call(gateway, "ListModels", pb.ListModelsRequest(),
                                  metadata=(("x-request-id", "bad id with spaces"),))
    assert replaced["x-request-id"] != "bad id with spaces" and len(replaced["x-request-id"]) == 32


def test_grpc_errors_carry_the_request_id(gateway: RunningGateway) -> None:
    _, status, initial, trailing = grpc_call(gateway, "Generate", pb.GenerateRequest(model="nope"),
                                             metadata=(("x-request-id", "grpc-err"),))
    assert status == "NOT_FOUND" and trailing[ERROR_CODE_KEY] == "model_not_found"
    assert initial["x-request-id"] == trailing["x-request-id"] == "grpc-err"


def test_grpc_access_log_one_line_per_call(gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response, *_ = grpc_call(gateway, "Generate", pb.GenerateRequest(seed=5, n=2),
                             metadata=(("x-request-id", "g-ok"),))
    grpc_call(gateway, "Generate", pb.GenerateRequest(n=10_000), metadata=(("x-request-id", "g-bad"),))
    lines = {x["request_id"]: x for x in _lines(caplog, "g-ok", "g-bad") if x["request_id"].startswith("g-")}
    assert sorted(lines) == ["g-bad", "g-ok"]
    ok = lines["g-ok"]
    assert ok["protocol"] == "grpc" and ok["route"] == "/ganserve.v1.Gateway/Generate"
    assert ok["status"] == "OK" and ok["model"] == "tiny" and ok["client"].startswith("127.0.0.1:")
    assert ok["bytes_in"] == pb.GenerateRequest(seed=5, n=2).ByteSize() and ok["bytes_out"] == response.ByteSize()
    assert lines["g-bad"]["status"] == "INVALID_ARGUMENT"


def test_a_late_body_408_carries_the_request_id(model_repo, caplog: pytest.LogCaptureFixture) -> None:
    """The 408 for a body that comes too slowly is answered outside the app, with the request's id."""
    import socket

    from tests.serve.helpers import running_gateway, test_settings

    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with running_gateway(test_settings(model_repo, http_body_timeout_s=0.5)) as gw:
        with socket.create_connection(("127.0.0.1", gw.gateway.http_port), timeout=5) as sock:
            sock.sendall(b"POST /generate HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                         b"X-Request-ID: late-body-1\r\nContent-Length: 100\r\n\r\n{\"n\"")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"x-request-id: late-body-1" in head.lower()
        assert json.loads(body)["error"]["request_id"] == "late-body-1"
        (line,) = [x for x in _lines(caplog, "late-body-1") if x["request_id"] == "late-body-1"]
        assert line["status"] == 408


def test_a_bug_is_a_500_with_the_request_id(model_repo, caplog: pytest.LogCaptureFixture) -> None:
    """No request can cause a 500 by design; a route that fails on purpose shows how one would look."""
    from ganserve.serve.http.app import create_app
    from tests.serve.helpers import test_settings

    app = create_app(test_settings(model_repo))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
            return await client.get("/boom", headers={"X-Request-ID": "bug-1"})

    r = asyncio.run(main())
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1"
    assert r.json()["error"] == {"code": "internal", "message": "internal error; the gateway's log has the details",
                                 "request_id": "bug-1"}
    (failure,) = [x for x in caplog.records if x.name == "ganserve.serve.http.errors"]
    assert failure.request_id == "bug-1" and failure.exc_info
    (line,) = [x for x in _lines(caplog, "bug-1") if x["request_id"] == "bug-1"]
    assert line["status"] == 500


def test_ganserve_serve_logging(tmp_path) -> None:
    """As `ganserve serve` sets it up: every line names its request's id, access lines are bare JSON;
    set up twice, nothing is written twice; off, no access line."""
    import subprocess
    import sys

    code = """
import logging
from ganserve.serve.access.context import RequestContext, begin, end
from ganserve.serve.access.log import configure_logging, log_access
configure_logging("info", access_log=True)
configure_logging("info", access_log=True)
logging.getLogger("ganserve.serve.x").info("outside")
token = begin(RequestContext(request_id="rid-7", protocol="http", route="/generate"))
logging.getLogger("ganserve.serve.x").warning("inside")
log_access(RequestContext(request_id="rid-7", protocol="http", route="/generate"), status=200, duration_s=0.001,
           bytes_in=1, bytes_out=2)
end(token)
configure_logging("info", access_log=False)
log_access(RequestContext(request_id="rid-8", protocol="http"), status=200, duration_s=0, bytes_in=0, bytes_out=0)
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith("INFO ganserve.serve.x [-]: outside")
    assert lines[1].endswith("WARNING ganserve.serve.x [rid-7]: inside")
    assert json.loads(lines[2])["request_id"] == "rid-7" and json.loads(lines[2])["status"] == 200
