"""POST /upscale and gRPC Upscale with tiny nearest-neighbour super-resolution models: nearest
neighbour makes the exact expected output known, tiles or not."""

import asyncio
import base64
import io

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import RunningGateway

from serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc


def _image_bytes(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(out, fmt)
    return out.getvalue()


def _upscale(gw: RunningGateway, **kwargs) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/upscale", timeout=30, **kwargs)


def test_raw_body_in_raw_image_out(full_gateway: RunningGateway) -> None:
    source = _image_bytes((12, 10))
    r = _upscale(full_gateway, content=source, headers={"Content-Type": "image/png", "Accept": "image/png"})
    assert r.status_code == 200, r.text
    assert r.headers["x-ganserve-model"] == "sr2x"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (24, 20) and out.text["ganserve.model"] == "sr2x"
    expected = np.asarray(Image.open(io.BytesIO(source))).repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(np.asarray(out), expected)  # nearest-neighbour: exact


def test_multipart_with_alpha_and_json_answer(full_gateway: RunningGateway) -> None:
    source = _image_bytes((8, 8), "RGBA")
    r = _upscale(full_gateway, files={"image": ("in.png", source, "image/png")}, params={"format": "png"})
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["image"]["data"])))
    assert out.mode == "RGBA" and out.size == (16, 16)


def test_jpeg_in_jpeg_out(full_gateway: RunningGateway) -> None:
    r = _upscale(full_gateway, content=_image_bytes((8, 8), fmt="JPEG"), params={"format": "jpeg"},
                 headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["image"]["media_type"] == "image/jpeg"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"content": b"\0" * 20000, "headers": {"Content-Type": "image/png"}}, 413, "payload_too_large"),
    ({"content": _image_bytes((65, 64)), "headers": {"Content-Type": "image/png"}}, 413, "payload_too_large"),
    ({"content": b"GIF89a but not really", "headers": {"Content-Type": "image/gif"}}, 415,
     "unsupported_media_type"),
    ({"content": _image_bytes((8, 8))[:70], "headers": {"Content-Type": "image/png"}}, 422, "invalid_argument"),
    ({"content": b"", "headers": {"Content-Type": "image/png"}}, 422, "invalid_argument"),
    ({"content": _image_bytes((8, 8)), "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"files": {"other": ("a.png", b"x", "image/png")}}, 422, "invalid_argument"),
    ({"content": _image_bytes((8, 8)), "headers": {"Content-Type": "image/png"}, "params": {"model": "tiny"}},
     422, "invalid_argument"),
    ({"content": _image_bytes((8, 8)), "headers": {"Content-Type": "image/png"}, "params": {"model": "x"}},
     404, "model_not_found"),
])
def test_upload_errors(full_gateway: RunningGateway, kwargs: dict, status: int, code: str) -> None:
    r = _upscale(full_gateway, **kwargs)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


def test_chunked_upload_over_the_limit_is_cut_off(full_gateway: RunningGateway) -> None:
    def body():
        for _ in range(20):
            yield b"\0" * 1000

    r = _upscale(full_gateway, content=body(), headers={"Content-Type": "image/png"})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")


def test_grpc_upscale_matches_http(full_gateway: RunningGateway) -> None:
    source = _image_bytes((6, 5))

    async def main():
        async with grpc.aio.insecure_channel(full_gateway.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)
            ok = await stub.Upscale(pb.UpscaleRequest(image=pb.Image(data=source)), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as too_big:
                await stub.Upscale(pb.UpscaleRequest(image=pb.Image(data=b"\0" * 20000)), timeout=30)
            return ok, too_big.value.code()

    response, code = asyncio.run(main())
    http = _upscale(full_gateway, content=source, headers={"Content-Type": "image/png", "Accept": "image/png"})
    assert response.model == "sr2x" and response.image.data == http.content
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("size", [(40, 23), (5, 7), (64, 64)])
def test_tiles_are_stitched_exactly(full_gateway: RunningGateway, size: tuple[int, int]) -> None:
    """16 x 16 tiles with overlap 4: 6 tiles for 40 x 23, one padded tile for 5 x 7, 25 (several
    backend calls of max_batch_size 4) for 64 x 64."""
    source = _image_bytes(size)
    r = _upscale(full_gateway, content=source, headers={"Content-Type": "image/png", "Accept": "image/png"})
    assert r.status_code == 200, r.text
    expected = np.asarray(Image.open(io.BytesIO(source))).repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), expected)


def test_untiled_model_takes_the_whole_image(tmp_path) -> None:
    from serve_helpers import add_super_resolution, test_settings

    from serve.runtime import Runtime

    add_super_resolution(tmp_path, "whole", scale=3)
    source = _image_bytes((9, 11))

    async def main():
        runtime = Runtime(test_settings(tmp_path))
        await runtime.load()
        try:
            return await runtime.service.upscale(image=source)
        finally:
            await runtime.close()

    result = asyncio.run(main())
    expected = np.asarray(Image.open(io.BytesIO(source))).repeat(3, axis=0).repeat(3, axis=1)
    assert result.model == "whole"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.image.data))), expected)
