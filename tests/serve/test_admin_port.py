"""Operational endpoints moved off the public port (to the admin port, or off), checked on a real
gateway: the public port answers 404 for them, the admin port serves them."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.serve.helpers import RunningGateway, running_gateway, test_settings

OPERATIONAL = ("/metrics", "/docs", "/redoc", "/openapi.json")


def _reflection_status(gw: RunningGateway) -> str:
    """The status of a reflection call (list the services)."""
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        try:
            list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=10))
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"


@pytest.fixture(scope="module")
def moved(model_repo: Path):
    settings = test_settings(model_repo, metrics_endpoint="admin", docs_endpoint="admin", grpc_reflection=False)
    with running_gateway(settings) as gw:
        yield gw


def test_operational_endpoints_are_absent_from_the_public_port(moved: RunningGateway) -> None:
    for path in OPERATIONAL:
        r = httpx.get(f"{moved.http_url}{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    assert httpx.post(f"{moved.http_url}/generate", json={"seed": 1}).status_code == 200  # the API stays
    assert httpx.get(f"{moved.http_url}/healthz").status_code == 200
    assert _reflection_status(moved) == "UNIMPLEMENTED"


def test_the_admin_port_serves_them(moved: RunningGateway) -> None:
    httpx.post(f"{moved.http_url}/generate", json={"seed": 1})
    metrics = httpx.get(f"{moved.admin_url}/metrics")
    assert metrics.status_code == 200 and 'ganserve_requests_total{endpoint="generate"' in metrics.text
    schema = httpx.get(f"{moved.admin_url}/openapi.json").json()  # the public API's, limits included
    assert {"/generate", "/upscale", "/models"} <= set(schema["paths"]) and "/metrics" not in schema["paths"]
    assert schema["components"]["schemas"]["GenerateRequest"]["properties"]["n"]["maximum"] == 64
    docs = httpx.get(f"{moved.admin_url}/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert httpx.get(f"{moved.admin_url}/redoc").status_code == 200
    assert httpx.get(f"{moved.admin_url}/generate").status_code == 404  # the API is not on the admin port


def test_turned_off_they_are_nowhere(model_repo: Path) -> None:
    with running_gateway(test_settings(model_repo, metrics_endpoint="off", docs_endpoint="off")) as gw:
        assert gw.gateway.admin_port is None
        for path in OPERATIONAL:
            assert httpx.get(f"{gw.http_url}{path}").status_code == 404, path


def test_by_default_they_stay_on_the_public_port(gateway: RunningGateway) -> None:
    assert gateway.gateway.admin_port is None
    for path in OPERATIONAL:
        assert httpx.get(f"{gateway.http_url}{path}").status_code == 200, path
    assert _reflection_status(gateway) == "OK"
