"""Queue full -> 429 + Retry-After / RESOURCE_EXHAUSTED; deadline -> 504 / DEADLINE_EXCEEDED;
readiness during warm-up; graceful stop drains in-flight calls."""

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.http import create_app
from ganserve.serve.runtime import Runtime
from tests.serve.helpers import RunningGateway, running_gateway, test_settings


@pytest.fixture(scope="module")
def slow_gateway(model_repo: Path) -> Iterator[RunningGateway]:
    """Every batch waits 1 s to fill; requests time out after 0.3 s; 4 images may queue."""
    settings = test_settings(model_repo, batch_max_queue_delay_ms=1000, batch_wait_alone=True, request_timeout_s=0.3,
                             max_queue_depth=4, max_images_per_request=4, max_interpolation_frames=4)
    with running_gateway(settings) as running:
        yield running


def test_http_queue_full_then_deadline(slow_gateway: RunningGateway) -> None:
    async def main():
        async with httpx.AsyncClient(base_url=slow_gateway.http_url, timeout=10) as client:
            filling = asyncio.ensure_future(client.post("/generate", json={"n": 4}))
            await asyncio.sleep(0.1)  # the 4 images sit in the queue
            refused = await client.post("/generate", json={"n": 1})
            return refused, await filling

    refused, timed_out = asyncio.run(main())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "queue_full" and "max_queue_depth" in refused.json()["error"]["message"]
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "deadline_exceeded"
    assert 'ganserve_backend_queue_depth{model="tiny",version="2"} 0.0' in slow_gateway.metrics_text()


def test_grpc_queue_full_then_deadline(slow_gateway: RunningGateway) -> None:
    async def main():
        async with grpc.aio.insecure_channel(slow_gateway.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)
            filling = asyncio.ensure_future(stub.Generate(pb.GenerateRequest(n=4), timeout=10))
            await asyncio.sleep(0.1)
            codes = []
            calls = (lambda: stub.Generate(pb.GenerateRequest(n=1), timeout=10), lambda: filling,
                     lambda: stub.Generate(pb.GenerateRequest(n=1), timeout=0.1))  # the client's deadline
            for call in calls:  # one after the other
                try:
                    await call()
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
            return codes

    assert asyncio.run(main()) == [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
                                   grpc.StatusCode.DEADLINE_EXCEEDED]


def test_not_ready_until_the_models_are_loaded(model_repo: Path) -> None:
    async def main():
        runtime = Runtime(test_settings(model_repo))
        transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            before = [await client.get("/healthz"), await client.get("/readyz"),
                      await client.post("/generate", json={})]
            await runtime.load()
            after = [await client.get("/readyz"), await client.post("/generate", json={})]
            await runtime.close()
            return before, after

    (live, not_ready, refused), (ready, generated) = asyncio.run(main())
    assert live.status_code == 200
    assert (not_ready.status_code, not_ready.json()) == (503, {"status": "loading models"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
    assert ready.status_code == 200 and generated.status_code == 200


def test_no_loadable_model_means_not_ready(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with running_gateway(test_settings(tmp_path / "empty"), wait_ready=False) as gw:
        deadline = time.monotonic() + 10
        while (r := httpx.get(f"{gw.http_url}/readyz")).json()["status"] == "loading models":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert (r.status_code, r.json()) == (503, {"status": "no model loaded"})


def test_graceful_stop_drains_in_flight_calls(model_repo: Path) -> None:
    settings = test_settings(model_repo, batch_max_queue_delay_ms=2000, batch_wait_alone=True, shutdown_grace_s=10)
    with running_gateway(settings) as gw:
        async def main():
            async with grpc.aio.insecure_channel(gw.grpc_target) as channel, \
                    httpx.AsyncClient(base_url=gw.http_url, timeout=10) as http:
                watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
                statuses = [(await watch.read()).status]
                in_flight_grpc = asyncio.ensure_future(
                    pb_grpc.GatewayStub(channel).Generate(pb.GenerateRequest(seed=1), timeout=10))
                in_flight_http = asyncio.ensure_future(http.post("/generate", json={"seed": 1}))
                while 'queue_depth{model="tiny",version="2"} 2.0' not in (await http.get("/metrics")).text:
                    await asyncio.sleep(0.01)  # until both wait in the batcher's queue (for 2 s)
                threading.Thread(target=gw.gateway.request_stop).start()
                statuses.append((await watch.read()).status)
                return statuses, await in_flight_grpc, await in_flight_http

        statuses, grpc_response, http_response = asyncio.run(main())
    assert statuses == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert grpc_response.images[0].seed == 1
    assert http_response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gw.http_url}/healthz")
