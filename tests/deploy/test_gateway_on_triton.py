"""The chart's gateway configuration, run for real: the GANSERVE_* environment `helm template` renders
for the gateway Deployment starts a `ganserve serve` process that serves the shipped models through a
real Triton server (the CPU one of ganserve/dev/triton_cpu.py, standing in for the chart's GPU Triton; only
the Triton address and the repository path are changed, as the cluster's DNS and volume would)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.deploy.helpers import REPO, container, env_of

GATEWAY = "gs-ganserve-gateway"
SHIPPED = REPO / "model_repository"


def test_the_rendered_gateway_serves_through_a_real_triton(render, tmp_path: Path) -> None:
    triton_cpu = pytest.importorskip("ganserve.dev.triton_cpu", reason="tritonclient is not installed")
    if not (SHIPPED / "dcgan" / "1" / "model.onnx").is_file():
        pytest.skip("model_repository/dcgan is not shipped")
    env = {k: v for k, v in env_of(container(render().named("Deployment", GATEWAY))).items()
           if k.startswith("GANSERVE_")}
    assert env["GANSERVE_BACKEND"] == "triton"
    triton_cpu.derive_cpu_repository(SHIPPED, tmp_path / "cpu")
    try:
        server = triton_cpu.LocalTriton(tmp_path / "cpu")
    except triton_cpu.TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")
    http_port = triton_cpu.free_port()
    env |= {"GANSERVE_TRITON_URL": server.grpc_url, "GANSERVE_MODEL_REPOSITORY": str(SHIPPED),
            "GANSERVE_HOST": "127.0.0.1", "GANSERVE_HTTP_PORT": str(http_port),
            "GANSERVE_GRPC_PORT": str(triton_cpu.free_port())}
    base = {k: v for k, v in os.environ.items() if not k.startswith("GANSERVE_")}
    gateway = None
    try:
        server.start()
        gateway = subprocess.Popen([sys.executable, "-m", "ganserve", "serve"], env=base | env, cwd=tmp_path)
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert gateway.poll() is None, "the gateway exited"
            assert time.monotonic() < deadline, "the gateway did not get ready through Triton"
            time.sleep(0.2)
        r = httpx.post(f"{url}/generate", json={"model": "dcgan", "seed": 7}, headers={"Accept": "image/png"},
                       timeout=30)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        assert r.headers["x-ganserve-seed"] == "7"
        # the chart's defaultModels: a call naming no model gets dcgan (lapgan is unconditional too) ...
        assert env["GANSERVE_DEFAULT_MODELS"] == "unconditional=dcgan,super-resolution=srresnet"
        r = httpx.post(f"{url}/generate", json={"seed": 7}, headers={"Accept": "image/png"}, timeout=30)
        assert r.status_code == 200 and r.headers["x-ganserve-model"] == "dcgan"
        if (SHIPPED / "srgan").is_dir() and (SHIPPED / "srresnet").is_dir():
            # ... and two super-resolution models: one naming none gets srresnet
            png = io.BytesIO()
            Image.new("RGB", (12, 10), (90, 140, 30)).save(png, "PNG")
            for params, model in (({}, "srresnet"), ({"model": "srgan"}, "srgan")):
                r = httpx.post(f"{url}/upscale", params=params, content=png.getvalue(),
                               headers={"Content-Type": "image/png"}, timeout=60)
                assert r.status_code == 200 and r.json()["model"] == model, r.text
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(30)
        server.close()
