"""The request id reaches Triton: a real Triton server (``ganserve.dev.triton_cpu``) with verbose
logging names each request's id, and the gateway's calls carry the client's ``X-Request-ID`` /
``x-request-id``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ganserve.dev.triton_cpu import LocalTriton, TritonNotInstalled, derive_cpu_repository
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from tests.serve.helpers import add_generator, running_gateway, test_settings
from tests.serve.test_access import grpc_call


def test_the_request_id_is_tritons_request_id(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    add_generator(repo, "tiny", latent_dim=4, size=2)
    derive_cpu_repository(repo, tmp_path / "cpu")
    try:
        server = LocalTriton(tmp_path / "cpu", log_verbose=1)  # verbose: Triton logs "[request id: ...]"
    except TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")
    try:
        server.start()
        settings = test_settings(repo, backend="triton", triton_url=server.grpc_url, triton_startup_timeout_s=30)
        with running_gateway(settings) as gw:
            r = httpx.post(f"{gw.http_url}/generate", json={"seed": 1}, headers={"X-Request-ID": "http-id-42"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "http-id-42"
            _, status, *_ = grpc_call(gw, "Generate", pb.GenerateRequest(seed=2),
                                      metadata=(("x-request-id", "grpc-id-43"),))
            assert status == "OK"
            made = httpx.post(f"{gw.http_url}/generate", json={"seed": 3}).headers["x-request-id"]
        deadline = time.monotonic() + 10
        while True:
            log = server.log_path.read_text(errors="replace")
            found = {rid for rid in ("http-id-42", "grpc-id-43", made) if f"[request id: {rid}]" in log}
            if len(found) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert found == {"http-id-42", "grpc-id-43", made}
    finally:
        server.close()
