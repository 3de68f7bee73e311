"""The gateway in front of a REAL Triton Inference Server (no mock): the ``tritonserver`` binary from
the ``nvidia-pytriton`` wheel, on a CPU repository derived from ``model_repository/`` by
``ganserve.dev.triton_cpu`` (python-backend models running the same ONNX files). Every endpoint goes
gateway -> Triton over gRPC and is compared with the embedded backend; Triton is stopped and
restarted under the gateway to check its errors, readiness and recovery.

Skips (with the reason) only where the wheel or the models' Python (``.venv-triton``) is missing;
``scripts/install-tools.sh``, run by the README's test command, installs both.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from ganserve.dev.triton_cpu import PYTHON_MODEL, LocalTriton, TritonNotInstalled, derive_cpu_repository
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import (
    RunningGateway,
    add_generator,
    add_super_resolution,
    add_text2img,
    running_gateway,
    test_settings,
)

SHIPPED = Path(__file__).resolve().parents[2] / "model_repository"
TIMEOUT = 60


def _start(repository: Path, tmp: Path, **ports: int) -> LocalTriton:
    cpu_repo = tmp / "triton_cpu_repository"
    derive_cpu_repository(repository, cpu_repo)
    try:
        server = LocalTriton(cpu_repo, **ports)
    except TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")
    return server.start()


def _add_fragile(root: Path) -> None:
    """``fragile``: a valid generator whose graph only runs at batch 1 (a fixed Reshape), so that
    Triton itself fails a batch of 2 — a real Triton error, not a gateway one."""
    add_generator(root, "fragile", latent_dim=4, size=2, max_batch_size=8)
    import onnx

    path = root / "fragile" / "1" / "model.onnx"
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "shape":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "shape"))
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def gateway_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped models plus small test models: ``small`` (max_batch_size 4, to see requests split),
    ``sr2x`` (16 x 16 tiles), ``fragile`` (fails above batch 1 inside Triton), and the text-to-image
    trio ``t2i`` (ensemble) = ``t2i_encoder`` -> ``t2i_generator``."""
    root = tmp_path_factory.mktemp("gateway_repository")
    for model in SHIPPED.iterdir():
        if (model / "config.pbtxt").is_file():
            (root / model.name).symlink_to(model, target_is_directory=True)
    add_generator(root, "small", latent_dim=6, size=4, max_batch_size=4, weight_seed=3)
    add_super_resolution(root, "sr2x", scale=2, tile=16, overlap=4)
    _add_fragile(root)
    add_text2img(root, "t2i", max_batch_size=8)
    return root


@pytest.fixture(scope="module")
def triton(gateway_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    server = _start(gateway_repo, tmp_path_factory.mktemp("triton"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def via_triton(gateway_repo: Path, triton: LocalTriton) -> Iterator[RunningGateway]:
    settings = test_settings(gateway_repo, backend="triton", triton_url=triton.grpc_url,
                             triton_health_interval_s=0.2, triton_startup_timeout_s=30)
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def embedded(gateway_repo: Path) -> Iterator[RunningGateway]:
    with running_gateway(test_settings(gateway_repo)) as running:
        yield running


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).astype(np.int16)


def _assert_same_images(a: list[bytes], b: list[bytes]) -> None:
    """Within float tolerance: at most one grey level apart after quantisation."""
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        px, py = _pixels(x), _pixels(y)
        assert px.shape == py.shape
        assert np.abs(px - py).max() <= 1


def _generate(gw: RunningGateway, body: dict) -> list[bytes]:
    r = httpx.post(f"{gw.http_url}/generate", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return [base64.b64decode(i["data"]) for i in r.json()["images"]]


def _grpc(gw: RunningGateway, method: str, request, timeout: float = TIMEOUT):
    async def main():
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            return await getattr(pb_grpc.GatewayStub(channel), method)(request, timeout=timeout)

    return asyncio.run(main())


def _png(shape: tuple[int, ...], seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


# --- the derived CPU repository -------------------------------------------------------------------------

def test_the_cpu_repository_keeps_everything_but_the_backend(tmp_path: Path, gateway_repo: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from ganserve.cli import main as ganserve_main

    out = tmp_path / "cpu"
    assert ganserve_main(["triton-cpu", "--model-repository", str(gateway_repo), "--out", str(out)]) == 0
    for name in ("small", "sr2x"):
        original = text_format.Parse((gateway_repo / name / "config.pbtxt").read_text(), mc.ModelConfig())
        derived = text_format.Parse((out / name / "config.pbtxt").read_text(), mc.ModelConfig())
        assert derived.backend == "python" and original.backend == "onnxruntime"
        assert [g.kind for g in derived.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
        assert derived.parameters["onnx_file"].string_value == "model.onnx"
        for field in ("input", "output", "max_batch_size", "dynamic_batching", "version_policy", "name"):
            assert getattr(derived, field) == getattr(original, field), field
        assert derived.parameters["intra_op_threads"].string_value == "1"
        assert (out / name / "1" / "model.py").read_bytes() == PYTHON_MODEL.read_bytes()
        assert (out / name / "1" / "model.onnx").read_bytes() == (gateway_repo / name / "1" / "model.onnx").read_bytes()


# --- the same answers as the embedded backend ---------------------------------------------------------

def test_the_same_models_are_served(via_triton: RunningGateway, embedded: RunningGateway) -> None:
    ours, theirs = (httpx.get(f"{g.http_url}/models").json() for g in (via_triton, embedded))
    assert ours == theirs
    assert {"small", "sr2x", "fragile"} <= {m["name"] for m in ours["models"]}


@pytest.mark.parametrize("body", [
    {"model": "small", "n": 3, "seed": 7},
    {"model": "small", "n": 10, "seed": 11, "truncation": 0.8},  # > max_batch_size 4: split in 3 calls
    pytest.param({"model": "dcgan", "n": 5, "seed": 2024}, marks=pytest.mark.skipif(
        not (SHIPPED / "dcgan").is_dir(), reason="dcgan is not shipped")),
])
def test_generate_over_http_matches_embedded(via_triton: RunningGateway, embedded: RunningGateway,
                                             body: dict) -> None:
    _assert_same_images(_generate(via_triton, body), _generate(embedded, body))


def test_generate_over_grpc_matches_embedded(via_triton: RunningGateway, embedded: RunningGateway) -> None:
    request = pb.GenerateRequest(model="small", n=6, seed=99)
    ours, theirs = (_grpc(g, "Generate", request) for g in (via_triton, embedded))
    assert [i.seed for i in ours.images] == [i.seed for i in theirs.images] == list(range(99, 105))
    _assert_same_images([i.image.data for i in ours.images], [i.image.data for i in theirs.images])


def test_interpolate_over_http_and_grpc_matches_embedded(via_triton: RunningGateway,
                                                         embedded: RunningGateway) -> None:
    body = {"model": "small", "seed_a": 1, "seed_b": 2, "frames": 6}
    ours, theirs = (httpx.post(f"{g.http_url}/interpolate", json=body, timeout=TIMEOUT) for g in (via_triton, embedded))
    assert ours.status_code == theirs.status_code == 200, ours.text
    reference = [base64.b64decode(f["data"]) for f in theirs.json()["frames"]]
    _assert_same_images([base64.b64decode(f["data"]) for f in ours.json()["frames"]], reference)
    request = pb.InterpolateRequest(model="small", seed_a=1, seed_b=2, frames=6)
    _assert_same_images([f.data for f in _grpc(via_triton, "Interpolate", request).frames], reference)


@pytest.mark.parametrize("params,shape", [
    ({"model": "sr2x"}, (37, 45, 3)),       # several tiles, uneven edges
    ({"model": "sr2x"}, (9, 7, 4)),         # RGBA, smaller than one tile
    pytest.param({"model": "srresnet"}, (70, 66, 3), marks=pytest.mark.skipif(
        not (SHIPPED / "srresnet").is_dir(), reason="srresnet is not shipped")),
    pytest.param({"model": "srresnet", "tile_size": 24, "tile_overlap": 4}, (50, 41, 3),  # tiles per request
                 marks=pytest.mark.skipif(not (SHIPPED / "srresnet").is_dir(), reason="srresnet is not shipped")),
])
def test_upscale_over_http_matches_embedded(via_triton: RunningGateway, embedded: RunningGateway,
                                            params: dict, shape: tuple[int, ...]) -> None:
    image = _png(shape)
    answers = [httpx.post(f"{g.http_url}/upscale", params=params, content=image,
                          headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=TIMEOUT)
               for g in (via_triton, embedded)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    _assert_same_images([answers[0].content], [answers[1].content])


def test_a_tile_size_triton_cannot_take_is_a_422_on_both_backends(via_triton: RunningGateway,
                                                                  embedded: RunningGateway) -> None:
    """sr2x's config fixes 16 x 16 tiles: another tile size is refused before Triton sees it."""
    for gw in (via_triton, embedded):
        r = httpx.post(f"{gw.http_url}/upscale", params={"model": "sr2x", "tile_size": 24}, content=_png((20, 20, 3)),
                       headers={"Content-Type": "image/png"}, timeout=TIMEOUT)
        assert r.status_code == 422 and "tile_size must be 16" in r.json()["error"]["message"]


def test_upscale_over_grpc_matches_embedded(via_triton: RunningGateway, embedded: RunningGateway) -> None:
    request = pb.UpscaleRequest(model="sr2x", image=pb.Image(data=_png((33, 20, 3), seed=4)))
    ours, theirs = (_grpc(g, "Upscale", request) for g in (via_triton, embedded))
    _assert_same_images([ours.image.data], [theirs.image.data])


@pytest.mark.parametrize("body", [
    {"model": "t2i", "prompt": "a red seven", "n": 3, "seed": 5},                  # through Triton's ensemble
    {"prompt": "a red seven", "prompt_b": "the number 2 in blue", "mix": 0.3, "n": 2, "seed": 8},  # components
    {"prompt": "a red seven", "n": 11, "seed": 1},                                 # > max_batch_size: split
    pytest.param({"model": "text2img", "prompt": "the number 3 written in teal", "n": 4, "seed": 12},
                 marks=pytest.mark.skipif(not (SHIPPED / "text2img").is_dir(), reason="text2img is not shipped")),
    pytest.param({"model": "text2img", "prompt": "a red seven", "prompt_b": "a blue two", "mix": 0.5, "seed": 2},
                 marks=pytest.mark.skipif(not (SHIPPED / "text2img").is_dir(), reason="text2img is not shipped")),
])
def test_text_to_image_matches_embedded(via_triton: RunningGateway, embedded: RunningGateway, body: dict) -> None:
    body = {"model": "t2i"} | body  # the shipped text2img is loaded too
    reference = _generate(embedded, body)
    _assert_same_images(_generate(via_triton, body), reference)
    ours = _grpc(via_triton, "Generate", pb.GenerateRequest(**body))
    _assert_same_images([i.image.data for i in ours.images], reference)


def test_the_ensemble_is_one_triton_request(via_triton: RunningGateway, triton: LocalTriton) -> None:
    """A prompt costs one call to Triton's ensemble, which runs encoder then generator inside Triton."""
    assert _triton_calls(triton, "t2i", lambda: _generate(via_triton, {
        "model": "t2i", "prompt": "a green four", "seed": 3})) == {"t2i": 1, "t2i_encoder": 1, "t2i_generator": 1}


def _triton_calls(triton: LocalTriton, prefix: str, request) -> dict[str, int]:
    """Successful inferences of each Triton model named ``prefix...`` while ``request()`` runs."""
    client = triton_grpc.InferenceServerClient(triton.grpc_url)

    def counts() -> dict[str, int]:
        return {s.name: s.inference_stats.success.count for s in client.get_inference_statistics().model_stats
                if s.name.startswith(prefix)}

    try:
        before = counts()
        request()
        after = counts()
    finally:
        client.close()
    return {name: after[name] - before.get(name, 0) for name in after}


LAPGAN_SHIPPED = pytest.mark.skipif(not (SHIPPED / "lapgan").is_dir(), reason="lapgan is not shipped")


@LAPGAN_SHIPPED
@pytest.mark.parametrize("body", [{"n": 3, "seed": 21}, {"n": 5, "seed": 900, "truncation": 1.0}])
def test_lapgan_and_its_levels_match_embedded(via_triton: RunningGateway, embedded: RunningGateway,
                                              body: dict) -> None:
    """The pyramid ensemble run by Triton (one request, its three levels inside) and by the embedded
    backend: the image and every level's image within one grey level, over HTTP and gRPC."""
    body = {"model": "lapgan", "levels": True} | body

    def files(gw: RunningGateway) -> list[list[bytes]]:
        r = httpx.post(f"{gw.http_url}/generate", json=body, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        return [[base64.b64decode(x["data"]) for x in [i, *i["levels"]]] for i in r.json()["images"]]

    reference = files(embedded)
    assert [_pixels(x).shape for x in reference[0]] == [(28, 28), (7, 7), (14, 14), (28, 28)]
    for ours, theirs in zip(files(via_triton), reference, strict=True):
        _assert_same_images(ours, theirs)
    reply = _grpc(via_triton, "Generate", pb.GenerateRequest(**body))
    for ours, theirs in zip(reply.images, reference, strict=True):
        _assert_same_images([ours.image.data, *(x.data for x in ours.levels)], theirs)


@LAPGAN_SHIPPED
def test_a_lapgan_image_is_one_triton_request(via_triton: RunningGateway, triton: LocalTriton) -> None:
    assert _triton_calls(triton, "lapgan", lambda: _generate(via_triton, {
        "model": "lapgan", "seed": 3, "levels": True})) == {
        "lapgan": 1, "lapgan_coarse": 1, "lapgan_level1": 1, "lapgan_level0": 1}


def test_triton_batches_concurrent_requests(via_triton: RunningGateway, triton: LocalTriton) -> None:
    """The gateway relies on Triton's dynamic batcher: 24 concurrent one-image requests reach the
    model in fewer executions than requests (Triton's own statistics say so)."""
    client = triton_grpc.InferenceServerClient(triton.grpc_url)
    before = client.get_inference_statistics("small").model_stats[0]

    async def burst():
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            return await asyncio.gather(*(http.post(f"{via_triton.http_url}/generate",
                                                    json={"model": "small", "seed": s}) for s in range(24)))

    assert all(r.status_code == 200 for r in asyncio.run(burst()))
    after = client.get_inference_statistics("small").model_stats[0]
    requests = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert requests == 24
    assert executions < requests
    client.close()


# --- errors -----------------------------------------------------------------------------------------

def test_a_triton_error_is_a_502_with_its_message(via_triton: RunningGateway) -> None:
    assert httpx.post(f"{via_triton.http_url}/generate", json={"model": "fragile", "seed": 1}).status_code == 200
    r = httpx.post(f"{via_triton.http_url}/generate", json={"model": "fragile", "n": 2, "seed": 1}, timeout=TIMEOUT)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "upstream_error"
    assert "Triton failed the request for model 'fragile'" in error["message"]
    assert "ONNX Runtime" in error["message"]  # Triton's own message, passed on
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _grpc(via_triton, "Generate", pb.GenerateRequest(model="fragile", n=2, seed=1))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "Triton failed the request" in info.value.details()


def test_a_client_deadline_cancels_the_triton_call(via_triton: RunningGateway) -> None:
    """A gRPC deadline shorter than the work ends the request with DEADLINE_EXCEEDED (the Triton
    call is cancelled with it); the gateway keeps serving."""
    model = "srresnet" if (SHIPPED / "srresnet").is_dir() else "sr2x"
    request = pb.UpscaleRequest(model=model, image=pb.Image(data=_png((256, 256, 3))))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _grpc(via_triton, "Upscale", request, timeout=0.05)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert httpx.post(f"{via_triton.http_url}/generate", json={"model": "small"}).status_code == 200


def test_a_model_triton_serves_differently_is_refused(tmp_path: Path, gateway_repo: Path) -> None:
    """The gateway checks Triton's metadata against the repository: a model with another latent
    size under the same name is a load problem (404 when asked for), the others still serve."""
    theirs = tmp_path / "theirs"
    add_generator(theirs, "small", latent_dim=5, size=4, max_batch_size=4)
    add_generator(theirs, "other", latent_dim=3, size=2)
    ours = tmp_path / "ours"
    add_generator(ours, "small", latent_dim=6, size=4, max_batch_size=4)
    add_generator(ours, "other", latent_dim=3, size=2)
    server = _start(theirs, tmp_path)
    try:
        settings = test_settings(ours, backend="triton", triton_url=server.grpc_url)
        with running_gateway(settings) as gw:
            body = httpx.get(f"{gw.http_url}/models").json()
            assert [m["name"] for m in body["models"]] == ["other"]
            (problem,) = body["problems"]
            assert problem["model"] == "small"
            assert "input 'z': repository FP32 [-1, 6], Triton FP32 [-1, 5]" in problem["message"]
            r = httpx.post(f"{gw.http_url}/generate", json={"model": "small"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            assert httpx.post(f"{gw.http_url}/generate", json={"model": "other"}).status_code == 200
    finally:
        server.close()


# --- Triton going away and coming back ----------------------------------------------------------------

def _wait_for(condition, *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _health(gw: RunningGateway) -> int:
    async def main():
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))).status

    return asyncio.run(main())


def test_triton_down_then_back(tmp_path: Path) -> None:
    """Start the gateway before Triton, stop Triton mid-run, bring it back: 503s that name Triton
    while it is away (never a 500 or a hang), /readyz and gRPC health follow, and serving resumes
    without restarting the gateway."""
    repo = tmp_path / "repo"
    add_generator(repo, "tiny", latent_dim=4, size=2)
    cpu_repo = tmp_path / "cpu"
    derive_cpu_repository(repo, cpu_repo)
    try:
        server = LocalTriton(cpu_repo)
    except TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")
    try:
        settings = test_settings(repo, backend="triton", triton_url=server.grpc_url,
                                 triton_startup_timeout_s=0.2, triton_health_interval_s=0.1)
        with running_gateway(settings, wait_ready=False) as gw:
            # 1. Triton not started yet: not ready, and requests say why.
            _wait_for(lambda: "Triton" in httpx.get(f"{gw.http_url}/readyz").json()["status"])
            ready = httpx.get(f"{gw.http_url}/readyz")
            assert ready.status_code == 503 and "not available" in ready.json()["status"]
            r = httpx.post(f"{gw.http_url}/generate", json={"model": "tiny"}, timeout=10)
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
            host, port = server.grpc_url.rsplit(":", 1)  # answers name no internal address (logs may)
            assert port not in ready.text and port not in r.text and "127.0.0.1" not in ready.text + r.text
            assert _health(gw) == health_pb2.HealthCheckResponse.NOT_SERVING

            # 2. Triton starts: the gateway gets ready by itself.
            server.start()
            _wait_for(lambda: httpx.get(f"{gw.http_url}/readyz").status_code == 200)
            first = _generate(gw, {"model": "tiny", "seed": 5})
            _wait_for(lambda: _health(gw) == health_pb2.HealthCheckResponse.SERVING)

            # 3. Triton dies mid-run: 503 naming Triton at once, over HTTP and gRPC.
            server.kill()
            r = httpx.post(f"{gw.http_url}/generate", json={"model": "tiny", "seed": 5}, timeout=10)
            assert r.status_code == 503, r.text
            assert "Triton" in r.json()["error"]["message"] and port not in r.text
            with pytest.raises(grpc.aio.AioRpcError) as info:
                _grpc(gw, "Generate", pb.GenerateRequest(model="tiny", seed=5), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            _wait_for(lambda: httpx.get(f"{gw.http_url}/readyz").status_code == 503)
            _wait_for(lambda: _health(gw) == health_pb2.HealthCheckResponse.NOT_SERVING)
            _wait_for(lambda: "ganserve_ready 0.0" in gw.metrics_text())

            # 4. Triton is back on the same address: same answers, no gateway restart.
            server.start()
            _wait_for(lambda: httpx.get(f"{gw.http_url}/readyz").status_code == 200)
            assert _generate(gw, {"model": "tiny", "seed": 5}) == first
            _wait_for(lambda: "ganserve_ready 1.0" in gw.metrics_text())
    finally:
        server.close()


# --- Triton's own metrics ---------------------------------------------------------------------------

def test_triton_metrics_are_scrapable(via_triton: RunningGateway, triton: LocalTriton) -> None:
    _generate(via_triton, {"model": "small", "seed": 3})
    text = httpx.get(triton.metrics_url, timeout=10).text
    assert 'nv_inference_request_success{model="small",version="1"}' in text
    assert "nv_inference_queue_duration_us" in text
