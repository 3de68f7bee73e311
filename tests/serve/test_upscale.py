"""POST /upscale and gRPC Upscale with tiny nearest-neighbour super-resolution models: nearest
neighbour makes the exact expected output known, tiles or not."""

import asyncio
import base64
import io
import tempfile

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import RunningGateway


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


def test_multipart_uploads_stay_in_memory(full_repo, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette spools a multipart file part over 1 MiB to a temporary file (a small temp directory
    made concurrent uploads fail with 500); parts stay in memory: here temp files cannot be made."""
    from tests.serve.helpers import running_gateway, test_settings

    source = _image_bytes((8, 8))
    padded = source + b"\0" * (1536 * 1024)  # bytes after IEND: still the same PNG, 1.5 MiB
    with running_gateway(test_settings(full_repo, max_upload_bytes=2 * 1024 * 1024)) as gateway:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
        r = _upscale(gateway, files={"image": ("in.png", padded, "image/png")}, headers={"Accept": "image/png"})
        with pytest.raises(FileNotFoundError), tempfile.TemporaryFile():  # what spooling to disk would meet
            pass
    assert r.status_code == 200, r.text
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), _nearest(source, 2))


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
    from ganserve.serve.runtime import Runtime
    from tests.serve.helpers import add_super_resolution, test_settings

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


# --- tile size and overlap per request; bounded memory ----------------------------------------------

def _dynamic_config(name: str, *, max_batch_size: int = 4) -> str:
    """config.pbtxt with h and w dynamic, as `ganserve export` writes for super-resolution models."""
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "lr" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
output [ {{ name: "sr" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
"""


def _add_blur(root, name: str, *, tile: int, overlap: int) -> None:
    """x2 nearest neighbour, then a 3 x 3 box blur (zero padding): not pointwise, so a tile's outer
    output ring differs from a whole-image pass and only the overlap hides the seams."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.serve.helpers import _save, write_config

    weights = np.full((3, 1, 3, 3), 1 / 9, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="nearest"),
         helper.make_node("Conv", ["up", "w"], ["sr"], group=3, pads=[1, 1, 1, 1])],
        "blur",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["batch", 3, "H", "W"])],
        initializer=[numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                     numpy_helper.from_array(weights, "w")])
    _save(graph, root / name / "1" / "model.onnx", {
        "ganserve.kind": "super-resolution", "ganserve.family": "test", "ganserve.scale": "2",
        "ganserve.value_range": "0,1", "ganserve.input_range": "0,1", "ganserve.channels": "3",
        "ganserve.tile_size": str(tile), "ganserve.tile_overlap": str(overlap)})
    write_config(root / name, _dynamic_config(name))


def _tiles_repo(root):
    """``dyn``: x2 nearest on 16 x 16 tiles (overlap 4) with dynamic config dims; ``blur``: x2 nearest
    + blur, same tiling; ``fixed``: x2 nearest whose config fixes 16 x 16 tiles; ``whole``: x3
    nearest, no tile size (whole images)."""
    from tests.serve.helpers import add_super_resolution, write_config

    add_super_resolution(root, "dyn", scale=2, tile=16, overlap=4)
    write_config(root / "dyn", _dynamic_config("dyn"))
    _add_blur(root, "blur", tile=16, overlap=4)
    add_super_resolution(root, "fixed", scale=2, tile=16, overlap=4)
    add_super_resolution(root, "whole", scale=3)
    return root


@pytest.fixture(scope="module")
def tiles_gateway(tmp_path_factory: pytest.TempPathFactory):
    from tests.serve.helpers import running_gateway, test_settings

    root = _tiles_repo(tmp_path_factory.mktemp("tiles_repository"))
    settings = test_settings(root, max_upload_bytes=256 * 1024, max_pixels=128 * 128,
                             upscale_min_tile_size=8, upscale_max_tile_size=32)
    with running_gateway(settings) as running:
        yield running


def _nearest(source: bytes, scale: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(source))).repeat(scale, axis=0).repeat(scale, axis=1)


def _blur_whole(source: bytes, model_dir) -> np.ndarray:
    """The blur model on the whole image at once, quantised as the gateway does."""
    import onnxruntime as ort

    from ganserve.serve import images

    pixels = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"))
    sr = session.run(["sr"], {"lr": images.to_model_input(pixels, input_range=(0.0, 1.0))[None]})[0]
    return images.to_uint8(sr, value_range=(0.0, 1.0))[0]


def _raw(gw: RunningGateway, source: bytes, **params) -> httpx.Response:
    return _upscale(gw, content=source, params=params,
                    headers={"Content-Type": "image/png", "Accept": "image/png"})


@pytest.mark.parametrize(("model", "params"), [
    ("dyn", {}), ("dyn", {"tile_size": 8}), ("dyn", {"tile_size": 8, "tile_overlap": 0}),
    ("dyn", {"tile_size": 32, "tile_overlap": 15}), ("dyn", {"tile_size": 11, "tile_overlap": 3}),
    ("dyn", {"tile_overlap": 7}), ("fixed", {"tile_size": 16, "tile_overlap": 2}),
    ("whole", {}), ("whole", {"tile_size": 9, "tile_overlap": 2}),
])
def test_tile_size_and_overlap_per_request(tiles_gateway: RunningGateway, model: str, params: dict) -> None:
    """Any valid tiling of a pointwise model gives exactly the whole-image result; the file records
    the tiling used (the model's default where the request left it out)."""
    source = _image_bytes((45, 37))
    r = _raw(tiles_gateway, source, model=model, **params)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    scale = 3 if model == "whole" else 2
    assert np.array_equal(np.asarray(out), _nearest(source, scale))
    tile = params.get("tile_size", None if model == "whole" else 16)
    assert out.text.get("ganserve.tile_size") == (None if tile is None else str(tile))
    if tile is not None:
        overlap = params.get("tile_overlap", min(4, (tile - 1) // 2) if model != "whole" else 0)
        assert out.text["ganserve.tile_overlap"] == str(overlap)


@pytest.mark.parametrize(("tile", "overlap"), [(None, None), (8, 2), (13, 4), (32, 6), (20, 9)])
def test_custom_tiles_equal_the_whole_image(tiles_gateway: RunningGateway, tile, overlap) -> None:
    """A model that is not pointwise: with an overlap of 2 or more, every output pixel comes from a
    tile where the blur does not see the tile's edge, so tiles give the whole-image result (within
    one level of float rounding, from batching)."""
    source = _image_bytes((50, 41))
    params = {k: v for k, v in (("tile_size", tile), ("tile_overlap", overlap)) if v is not None}
    r = _raw(tiles_gateway, source, model="blur", **params)
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
    whole = _blur_whole(source, tiles_gateway.settings.model_repository / "blur")
    assert np.abs(got - whole).max() <= 1


def test_no_overlap_shows_seams(tiles_gateway: RunningGateway) -> None:
    """The check above can fail: without overlap the blur sees every tile's edge."""
    source = _image_bytes((50, 41))
    r = _raw(tiles_gateway, source, model="blur", tile_size=8, tile_overlap=0)
    got = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
    assert np.abs(got - _blur_whole(source, tiles_gateway.settings.model_repository / "blur")).max() > 10


@pytest.mark.parametrize(("params", "message"), [
    ({"model": "dyn", "tile_size": 7}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": 33}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": 0}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": -16}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": "big"}, "tile_size"),
    ({"model": "dyn", "tile_size": 12.5}, "tile_size"),
    ({"model": "dyn", "tile_overlap": -1}, "tile_overlap must be in [0, 7]"),
    ({"model": "dyn", "tile_overlap": 8}, "tile_overlap must be in [0, 7]"),
    ({"model": "dyn", "tile_size": 9, "tile_overlap": 5}, "tile_overlap must be in [0, 4]"),
    ({"model": "dyn", "tile_overlap": "x"}, "tile_overlap"),
    ({"model": "fixed", "tile_size": 24}, "takes only 16x16 tiles"),
    ({"model": "whole", "tile_overlap": 2}, "tile_overlap needs a tile_size"),
])
def test_invalid_tiling_is_422(tiles_gateway: RunningGateway, params: dict, message: str) -> None:
    r = _raw(tiles_gateway, _image_bytes((20, 20)), **params)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_argument"), r.text
    assert message in r.json()["error"]["message"]


def test_grpc_tiling_matches_http_and_unset_differs_from_zero(tiles_gateway: RunningGateway) -> None:
    source = _image_bytes((50, 41))

    async def main():
        async with grpc.aio.insecure_channel(tiles_gateway.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)

            async def call(**fields):
                return await stub.Upscale(pb.UpscaleRequest(model="blur", image=pb.Image(data=source), **fields),
                                          timeout=30)

            return await call(), await call(tile_overlap=0), await call(tile_size=8, tile_overlap=0)

    default, zero, small = asyncio.run(main())
    assert default.image.data == _raw(tiles_gateway, source, model="blur").content
    assert zero.image.data == _raw(tiles_gateway, source, model="blur", tile_overlap=0).content
    assert small.image.data == _raw(tiles_gateway, source, model="blur", tile_size=8, tile_overlap=0).content
    assert zero.image.data != default.image.data  # tile_overlap = 0 is not "unset"


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": "dyn", "tile_size": 7}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": 0}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_size": 2**32 - 1}, "tile_size must be in [8, 32]"),
    ({"model": "dyn", "tile_overlap": 8}, "tile_overlap must be in [0, 7]"),
    ({"model": "dyn", "tile_size": 9, "tile_overlap": 4000000000}, "tile_overlap must be in [0, 4]"),
    ({"model": "fixed", "tile_size": 8}, "takes only 16x16 tiles"),
    ({"model": "whole", "tile_overlap": 0}, "tile_overlap needs a tile_size"),
])
def test_grpc_invalid_tiling_is_invalid_argument(tiles_gateway: RunningGateway, fields: dict,
                                                 message: str) -> None:
    async def main():
        async with grpc.aio.insecure_channel(tiles_gateway.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await pb_grpc.GatewayStub(channel).Upscale(
                    pb.UpscaleRequest(image=pb.Image(data=_image_bytes((20, 20))), **fields), timeout=30)
            return failed.value

    error = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details()


def test_alpha_is_written_into_the_same_output(tiles_gateway: RunningGateway) -> None:
    from ganserve.serve import images

    source = _image_bytes((37, 29), "RGBA")
    r = _raw(tiles_gateway, source, model="dyn", tile_size=8, tile_overlap=2)
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    pixels = np.asarray(Image.open(io.BytesIO(source)))
    assert out.shape == (58, 74, 4)
    assert np.array_equal(out[:, :, :3], _nearest(source, 2)[:, :, :3])
    assert np.array_equal(out[:, :, 3], images.resize_alpha(pixels[:, :, 3], size=(58, 74)))


def test_jpeg_output_with_tiles(tiles_gateway: RunningGateway) -> None:
    from ganserve.serve import images

    source = _image_bytes((37, 29), "RGBA")
    r = _upscale(tiles_gateway, content=source, params={"model": "dyn", "format": "jpeg"},
                 headers={"Content-Type": "image/png", "Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    rgb = np.ascontiguousarray(_nearest(source, 2)[:, :, :3])
    assert r.content == images.encode(rgb, fmt="jpeg", text={
        "Software": "ganserve", "ganserve.model": "dyn", "ganserve.version": "1",
        "ganserve.tile_size": "16", "ganserve.tile_overlap": "4"})


def test_tile_limits_must_be_in_order(tmp_path) -> None:
    from pydantic import ValidationError

    from tests.serve.helpers import test_settings

    with pytest.raises(ValidationError, match="upscale_min_tile_size"):
        test_settings(tmp_path, upscale_min_tile_size=64, upscale_max_tile_size=32)


# --- the stitching and the encoder, directly -----------------------------------------------------------

@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [
    (1, 1, 8, 0), (7, 30, 8, 3), (64, 64, 16, 4), (65, 17, 16, 7), (100, 3, 9, 4), (33, 33, 32, 0)])
def test_every_output_pixel_is_owned_by_exactly_one_tile(h, w, tile, overlap) -> None:
    from ganserve.serve import tiling

    layout = tiling.plan(h, w, tile=tile, overlap=overlap)
    owners = np.zeros((h, w), int)
    for r, c in layout.places():
        assert r.end - r.start == tile and c.end - c.start == tile
        owners[r.own_lo:min(r.own_hi, h), c.own_lo:min(c.own_hi, w)] += 1
        if overlap and 0 < r.own_lo:  # an owned pixel is >= overlap / 2 from the tile's edge
            assert r.own_lo - r.start >= overlap // 2
    assert (owners == 1).all()


def test_paste_writes_each_batch_straight_into_the_uint8_output() -> None:
    """Batches are cut lazily from the uint8 image and pasted (quantised) into one preallocated uint8
    output, batch by batch; channels past the model's (alpha) are left alone."""
    from ganserve.serve import images, tiling

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (23, 41, 3), dtype=np.uint8)
    layout = tiling.plan(23, 41, tile=8, overlap=2)
    out = np.full((46, 82, 4), 7, np.uint8)
    sizes = []
    for places in layout.batches(3):
        lr = tiling.cut(image, places, tile=8, input_range=(0.0, 1.0))
        assert lr.shape == (len(places), 3, 8, 8) and lr.dtype == np.float32
        sizes.append(len(places))
        sr = lr.repeat(2, axis=2).repeat(2, axis=3) * 1.01 - 0.005  # not exactly on the levels
        tiling.paste(sr, places, layout, out, scale=2, value_range=(0.0, 1.0))
    assert sizes == [3] * (layout.count // 3) + ([layout.count % 3] if layout.count % 3 else [])
    whole = images.to_model_input(image, input_range=(0.0, 1.0)).repeat(2, axis=1).repeat(2, axis=2)
    expected = images.to_uint8((whole * 1.01 - 0.005)[None], value_range=(0.0, 1.0))[0]
    assert np.array_equal(out[:, :, :3], expected) and (out[:, :, 3] == 7).all()


@pytest.mark.parametrize("size", [(37, 53), (150, 131)])  # small: unfiltered; larger: filtered rows
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_streamed_png_round_trips(channels: int, size: tuple[int, int]) -> None:
    from ganserve.serve import images

    rng = np.random.default_rng(channels)
    smooth = np.cumsum(rng.integers(-3, 4, (*size, channels)), axis=1) + 128
    pixels = np.clip(smooth, 0, 255).astype(np.uint8)
    text = {"Software": "ganserve", "ganserve.model": "modèle", "note": "€ not latin-1"}
    data = images.encode_in_place(pixels, fmt="png", text=text)
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.load()
        assert decoded.text == text
        back = np.asarray(decoded)
    assert np.array_equal(back.reshape(pixels.shape), pixels)
    assert data == images.encode_in_place(pixels, fmt="png", text=text)  # deterministic


def test_streamed_alpha_equals_a_whole_bicubic_resize() -> None:
    from ganserve.serve import images

    alpha = np.random.default_rng(5).integers(0, 256, (70, 23), dtype=np.uint8)
    for rows in (1, 16, 64, 100):
        out = np.zeros((280, 92), np.uint8)
        images.upscale_alpha_into(out, alpha, scale=4, rows=rows)
        assert np.array_equal(out, images.resize_alpha(alpha, size=(280, 92)))


class _NearestBackend:
    """A backend without ONNX Runtime: nearest neighbour in NumPy, and a record of each call's batch."""

    def __init__(self, repository) -> None:
        self.repository, self.batches = repository, []

    def ready(self) -> bool:
        return True

    async def infer(self, model: str, version: int, inputs: dict) -> dict:
        lr = inputs["lr"]
        self.batches.append(lr.shape)
        scale = self.repository.models[model][-1].scale
        return {"sr": lr.repeat(scale, axis=2).repeat(scale, axis=3)}


def _service(tmp_path, backend_class=None, **settings):
    from ganserve.serve.admission import Admission
    from ganserve.serve.repository import load_repository
    from ganserve.serve.service import GatewayService
    from tests.serve.helpers import test_settings

    root = _tiles_repo(tmp_path)
    backend = (backend_class or _NearestBackend)(load_repository(root))
    options = test_settings(root, **settings)
    admission = Admission.from_settings(options)
    admission.add_models(backend.repository, options)
    return GatewayService(backend=backend, settings=options, admission=admission), backend


@pytest.mark.parametrize(("tile", "tile_batch", "batch_pixels", "per_call"), [
    (16, 8, 8 * 64 * 64, 4),     # the model's max_batch_size (4)
    (16, 3, 8 * 64 * 64, 3),     # upscale_tile_batch
    (32, 8, 2 * 32 * 32, 2),     # upscale_batch_pixels: 2 tiles of 32 x 32
    (32, 8, 100, 1),             # at least one tile
])
def test_tiles_go_to_the_backend_a_bounded_batch_at_a_time(tmp_path, tile, tile_batch, batch_pixels,
                                                           per_call) -> None:
    service, backend = _service(tmp_path, max_pixels=512 * 512, upscale_tile_batch=tile_batch,
                                upscale_batch_pixels=batch_pixels, upscale_max_tile_size=64)
    source = _image_bytes((150, 110))
    result = asyncio.run(service.upscale(image=source, model="dyn", tile_size=tile, tile_overlap=2))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.image.data))), _nearest(source, 2))
    from ganserve.serve import tiling

    count = tiling.plan(110, 150, tile=tile, overlap=2).count
    assert [b[0] for b in backend.batches] == [per_call] * (count // per_call) + (
        [count % per_call] if count % per_call else [])
    assert all(b[1:] == (3, tile, tile) for b in backend.batches)


def test_memory_beyond_the_output_does_not_grow_with_the_image(tmp_path) -> None:
    """Traced allocations (NumPy's) while upscaling, less the output image and its file: the same
    for a 64 x 64 and a 512 x 512 input (64x the pixels). Before this was bounded, the whole float32
    output, all tiles' outputs and their concatenation existed at once (~50 bytes per output pixel)."""
    import gc
    import tracemalloc

    service, _ = _service(tmp_path, max_pixels=512 * 512, upscale_tile_batch=4)

    def beyond_output(size: int) -> int:
        source, results = _image_bytes((size, size)), []

        async def upscale() -> None:  # returns None: asyncio.run may repr its task's result (a copy)
            results.append(await service.upscale(image=source, model="dyn"))

        gc.collect()
        tracemalloc.start()
        try:
            asyncio.run(upscale())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        output = (2 * size) ** 2 * 3 + len(results[0].image.data)
        inputs = size * size * 3 * 2 + len(source)  # decoded image (+ a transient copy), the upload
        return peak - output - inputs

    small, large = beyond_output(64), beyond_output(512)
    assert large < small + 256 * 1024, (small, large)
    assert large < 0.2 * (1024 * 1024 * 3 * 4), large  # far below one whole float32 output


def test_a_cancelled_upscale_stops_at_its_next_tile_batch(tmp_path) -> None:
    """A client gone (its handler cancelled) or a deadline passed: no backend call starts afterwards,
    beyond the one already in flight (the next batch is inferred while the last is pasted)."""

    class SlowBackend(_NearestBackend):
        async def infer(self, model: str, version: int, inputs: dict) -> dict:
            await asyncio.sleep(0.05)
            return await super().infer(model, version, inputs)

    service, slow = _service(tmp_path, SlowBackend, max_pixels=512 * 512, upscale_tile_batch=1)

    async def main() -> tuple[int, int]:
        task = asyncio.ensure_future(service.upscale(image=_image_bytes((200, 200)), model="dyn", tile_size=16))
        while len(slow.batches) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        at_cancel = len(slow.batches)
        await asyncio.sleep(0.5)  # ten more tiles' time
        return at_cancel, len(slow.batches)

    at_cancel, later = asyncio.run(main())
    assert later <= at_cancel + 1 and service._admission.bytes_in_flight == 0
