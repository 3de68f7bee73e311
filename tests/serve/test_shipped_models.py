"""End to end on the real, committed model_repository/ (each test skips until its model is shipped)."""

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import RunningGateway, running_gateway, test_settings

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
DCGAN = REPOSITORY / "dcgan" / "1" / "model.onnx"
SRRESNET = REPOSITORY / "srresnet" / "1" / "model.onnx"
SRGAN = REPOSITORY / "srgan" / "1" / "model.onnx"
needs_dcgan = pytest.mark.skipif(not DCGAN.is_file(), reason=f"{DCGAN} is not shipped yet")
needs_srresnet = pytest.mark.skipif(not SRRESNET.is_file(), reason=f"{SRRESNET} is not shipped yet")
needs_srgan = pytest.mark.skipif(not SRGAN.is_file(), reason=f"{SRGAN} is not shipped yet")


@pytest.fixture(scope="module")
def shipped() -> Iterator[RunningGateway]:
    if not (DCGAN.is_file() or SRRESNET.is_file()):
        pytest.skip("no shipped model in model_repository/ yet")
    with running_gateway(test_settings(REPOSITORY, batch_max_queue_delay_ms=None)) as running:
        yield running


def test_every_shipped_model_loads(shipped: RunningGateway) -> None:
    body = httpx.get(f"{shipped.http_url}/models").json()
    assert body["problems"] == []
    assert {m["name"] for m in body["models"]} == {p.name for p in REPOSITORY.iterdir() if (p / "config.pbtxt").is_file()}


@pytest.mark.slow
@needs_dcgan
def test_dcgan_generates_the_same_bytes_batched_or_not_over_http_and_grpc(shipped: RunningGateway) -> None:
    r = httpx.post(f"{shipped.http_url}/generate", json={"model": "dcgan", "n": 8, "seed": 2024}, timeout=60)
    assert r.status_code == 200, r.text
    together = [base64.b64decode(i["data"]) for i in r.json()["images"]]
    image = Image.open(io.BytesIO(together[0]))
    assert image.size == (28, 28) and image.mode == "L" and image.text["ganserve.seed"] == "2024"
    alone = [httpx.post(f"{shipped.http_url}/generate", json={"model": "dcgan", "seed": 2024 + i},
                        headers={"Accept": "image/png"}, timeout=60).content for i in range(8)]
    assert alone == together

    async def over_grpc():
        async with grpc.aio.insecure_channel(shipped.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)
            return await asyncio.gather(*(stub.Generate(pb.GenerateRequest(model="dcgan", seed=2024 + i), timeout=60)
                                          for i in range(8)))

    assert [r.images[0].image.data for r in asyncio.run(over_grpc())] == together


LAPGAN = REPOSITORY / "lapgan" / "config.pbtxt"
needs_lapgan = pytest.mark.skipif(not (LAPGAN.is_file() and DCGAN.is_file()), reason="lapgan is not shipped yet")


@needs_lapgan
def test_lapgan_builds_each_digit_level_by_level_and_dcgan_stays_the_default(shipped: RunningGateway) -> None:
    """Two unconditional models ship: a call naming none gets dcgan (default_models); lapgan's levels are
    7, 14 and 28 pixels, the same bytes batched or not, over HTTP and gRPC."""
    listed = httpx.get(f"{shipped.http_url}/models").json()["models"]
    assert {m["name"]: m["is_default"] for m in listed if m["kind"] == "unconditional"} == \
        {"dcgan": True, "lapgan": False}
    r = httpx.post(f"{shipped.http_url}/generate", json={"seed": 5}, headers={"Accept": "image/png"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-ganserve-model"] == "dcgan"
    r = httpx.post(f"{shipped.http_url}/generate", json={"model": "lapgan", "n": 4, "seed": 77, "levels": True},
                   timeout=60)
    assert r.status_code == 200, r.text
    together = r.json()["images"]
    for item in together:
        levels = [Image.open(io.BytesIO(base64.b64decode(x["data"]))) for x in item["levels"]]
        assert [x.size for x in levels] == [(7, 7), (14, 14), (28, 28)]
        final = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["data"]))))
        np.testing.assert_array_equal(np.asarray(levels[-1]), final)
        assert final.std() > 10  # a drawing, not a blank
    alone = [httpx.post(f"{shipped.http_url}/generate", json={"model": "lapgan", "seed": 77 + i, "levels": True},
                        timeout=60).json()["images"][0] for i in range(4)]
    assert alone == together

    async def over_grpc():
        async with grpc.aio.insecure_channel(shipped.grpc_target) as channel:
            return await pb_grpc.GatewayStub(channel).Generate(
                pb.GenerateRequest(model="lapgan", n=4, seed=77, levels=True), timeout=60)

    reply = asyncio.run(over_grpc())
    assert [[i.image.data, *(x.data for x in i.levels)] for i in reply.images] == \
        [[base64.b64decode(x["data"]) for x in [i, *i["levels"]]] for i in together]


@pytest.mark.slow
@needs_srresnet
def test_srresnet_upscales_a_small_image(shipped: RunningGateway) -> None:
    rng = np.random.default_rng(0)
    source = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(source, "PNG")
    r = httpx.post(f"{shipped.http_url}/upscale", params={"model": "srresnet"}, content=source.getvalue(),
                   headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (120, 80) and out.text["ganserve.model"] == "srresnet"


@pytest.mark.slow
@needs_srresnet
@needs_srgan
def test_upscale_names_srgan_or_gets_the_default_srresnet_over_http_and_grpc(shipped: RunningGateway) -> None:
    """Two super-resolution models ship: /models marks srresnet as the default (the gateway's
    default_models), a call naming none gets it, and model=srgan gets the SRGAN, over both protocols."""
    listed = httpx.get(f"{shipped.http_url}/models").json()["models"]
    assert {m["name"]: m["is_default"] for m in listed if m["kind"] == "super-resolution"} == \
        {"srresnet": True, "srgan": False}
    rng = np.random.default_rng(1)
    source = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (18, 26, 3), dtype=np.uint8)).save(source, "PNG")
    png = source.getvalue()
    over_http = {}
    for model in (None, "srgan"):
        r = httpx.post(f"{shipped.http_url}/upscale", params={"model": model} if model else {}, content=png,
                       headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=60)
        assert r.status_code == 200, r.text
        out = Image.open(io.BytesIO(r.content))
        assert out.size == (104, 72)
        over_http[out.text["ganserve.model"]] = np.asarray(out.convert("RGB"))
    assert set(over_http) == {"srresnet", "srgan"}
    assert np.abs(over_http["srgan"].astype(int) - over_http["srresnet"]).mean() > 0.5  # two different models
    with grpc.insecure_channel(shipped.grpc_target) as channel:
        stub = pb_grpc.GatewayStub(channel)
        for model, expected in (("", "srresnet"), ("srgan", "srgan")):
            reply = stub.Upscale(pb.UpscaleRequest(model=model, image=pb.Image(data=png)), timeout=60)
            assert reply.model == expected and reply.version == 1
            got = np.asarray(Image.open(io.BytesIO(reply.image.data)).convert("RGB"))
            assert np.array_equal(got, over_http[expected])
