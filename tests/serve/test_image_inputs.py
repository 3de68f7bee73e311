"""Uploaded images as their files say: 16-bit samples, EXIF orientation, grey and 1-bit images
answered in their own mode, animations refused, and decoding errors in the gateway's own words.

Files are real: made with Pillow, or (16-bit colour, which Pillow cannot write) by hand with row
filters a reader must undo. End to end through the tiny nearest-neighbour model ``sr2x``, whose exact
output is the input repeated 2 x 2."""

import asyncio
import io
import struct
import tracemalloc
import warnings
import zlib

import grpc
import httpx
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from ganserve.serve import images
from ganserve.serve.errors import InvalidArgument, PayloadTooLarge, ServiceError
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import RunningGateway

LIMITS = {"max_bytes": 10**7, "max_pixels": 10**7}


def _save(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _noise(height: int, width: int, channels: int = 3, *, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(samples: np.ndarray, *, color_type: int, trns: tuple[int, ...] | None = None) -> bytes:
    """``uint16 [H, W, C]`` as a 16-bit PNG; rows alternate the Sub and Up filters."""
    height, width, channels = samples.shape
    rows = np.frombuffer(samples.astype(">u2").tobytes(), np.uint8).reshape(height, -1)
    bpp, lines = 2 * channels, []
    for y, row in enumerate(rows):
        if y % 2 == 0:
            lines.append(b"\x01" + (row - np.concatenate([np.zeros(bpp, np.uint8), row[:-bpp]])).tobytes())
        else:
            lines.append(b"\x02" + (row - rows[y - 1]).tobytes())
    extra = b"" if trns is None else _chunk(b"tRNS", struct.pack(f">{len(trns)}H", *trns))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
            + extra + _chunk(b"IDAT", zlib.compress(b"".join(lines))) + _chunk(b"IEND", b""))


def _to8(samples: np.ndarray) -> np.ndarray:
    """The documented 16 -> 8 bit scaling: round(v / 257)."""
    return np.rint(samples / 257).astype(np.uint8)


def _nearest(pixels: np.ndarray, scale: int = 2) -> np.ndarray:
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def _upscale(gw: RunningGateway, data: bytes, **params) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/upscale", content=data, params=params, timeout=30,
                      headers={"Content-Type": "image/png", "Accept": f"image/{params.get('format', 'png')}"})


def _answer(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(r.content))
    image.load()
    return image


# --- 16-bit samples ------------------------------------------------------------------------------

def _samples16(height: int, width: int, channels: int) -> np.ndarray:
    """Values that tell round(v / 257) from Pillow's high byte (v >> 8) and from clipping."""
    rng = np.random.default_rng(channels)
    samples = rng.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    samples[0, 0], samples[0, 1] = 0, 65535
    samples[1, 0] = 200 * 256      # 199.2 -> 199, where v >> 8 is 200
    return samples


def test_16_bit_grey_png_is_scaled_not_clipped(full_gateway: RunningGateway) -> None:
    samples = _samples16(10, 12, 1)
    data = _save(Image.fromarray(samples[:, :, 0]))          # Pillow writes I;16 as a 16-bit grey PNG
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = _answer(_upscale(full_gateway, data))
    assert out.mode == "L"                                    # grey in, grey out
    assert np.array_equal(np.asarray(out), _nearest(_to8(samples[:, :, 0])))


@pytest.mark.parametrize(("color_type", "channels", "mode"), [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "LA")])
def test_16_bit_colour_and_alpha_pngs_keep_every_bit(color_type: int, channels: int, mode: str) -> None:
    samples = _samples16(9, 7, channels)
    data = _png16(samples, color_type=color_type)
    with Image.open(io.BytesIO(data)) as pillow:              # the file is right: Pillow reads the high bytes
        high = np.asarray(pillow)
        assert np.array_equal(high[..., :channels] if mode != "LA" else high[..., [0, 3]], samples >> 8)
    decoded = images.decode(data, **LIMITS)
    expected = _to8(samples)
    assert decoded.mode == ("L" if mode == "LA" else "RGB")
    if mode == "LA":
        expected = expected[:, :, [0, 0, 0, 1]]
    assert decoded.pixels.dtype == np.uint8 and np.array_equal(decoded.pixels, expected)


@pytest.mark.parametrize(("color_type", "channels"), [(0, 1), (2, 3)])
def test_16_bit_transparent_colour_is_matched_on_all_16_bits(color_type: int, channels: int) -> None:
    samples = _samples16(6, 5, channels)
    samples[2, 3] = samples[4, 4] = 1000                      # the transparent colour
    samples[3, 3] = 1001                                      # the same high byte, not transparent
    data = _png16(samples, color_type=color_type, trns=(1000,) * channels)
    pixels = images.decode(data, **LIMITS).pixels
    alpha = np.full((6, 5), 255, np.uint8)
    alpha[2, 3] = alpha[4, 4] = 0
    assert np.array_equal(pixels[:, :, 3], alpha)
    assert np.array_equal(pixels[:, :, :3], np.broadcast_to(_to8(samples), (6, 5, 3)))


# --- EXIF orientation ----------------------------------------------------------------------------

def _with_orientation(pixels: np.ndarray, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return _save(Image.fromarray(pixels), fmt, exif=exif.tobytes())


def _upright(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, fmt: str) -> None:
    data = _with_orientation(_noise(5, 8), orientation, fmt)
    decoded = images.decode(data, **LIMITS)
    assert decoded.orientation == orientation
    assert decoded.pixels.flags.c_contiguous and np.array_equal(decoded.pixels, _upright(data))


def test_an_exif_rotated_photo_comes_back_upright_and_says_so(full_gateway: RunningGateway) -> None:
    data = _with_orientation(_noise(10, 16), 6)               # stored 16 wide, 10 high; shown turned
    out = _answer(_upscale(full_gateway, data))
    assert out.size == (20, 32)
    assert np.array_equal(np.asarray(out), _nearest(_upright(data)))
    assert out.text["ganserve.input_orientation"] == "6"
    plain = _answer(_upscale(full_gateway, _save(Image.fromarray(_noise(10, 16)))))
    assert "ganserve.input_orientation" not in plain.text


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_an_unreadable_exif_block_counts_as_none(fmt: str) -> None:
    """As Pillow reads a JPEG's (and browsers show it): as stored. Pillow raises on a WebP's."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = _save(Image.fromarray(_noise(4, 6)), fmt, exif=exif.tobytes().replace(b"MM\0*", b"XX\0*"))
    decoded = images.decode(data, **LIMITS)
    with Image.open(io.BytesIO(data)) as pillow:
        assert decoded.orientation == 1 and np.array_equal(decoded.pixels, np.asarray(pillow.convert("RGB")))


# --- grey and 1-bit images -----------------------------------------------------------------------

def _grey_gif() -> bytes:
    image = Image.new("P", (6, 5))
    image.putpalette([v for level in (0, 40, 90, 200) for v in (level,) * 3])
    image.putdata([i % 4 for i in range(30)])
    return _save(image, "GIF")


@pytest.mark.parametrize(("data", "mode", "alpha"), [
    (_save(Image.fromarray(_noise(5, 6, 1))), "L", False),
    (_save(Image.fromarray(_noise(5, 6, 1)), "JPEG"), "L", False),
    (_save(Image.fromarray(_noise(5, 6, 1)), "BMP"), "L", False),
    (_save(Image.fromarray(_noise(5, 6, 1)), transparency=7), "L", True),
    (_save(Image.fromarray(_noise(5, 6, 2), mode="LA")), "L", True),
    (_grey_gif(), "L", False),
    (_save(Image.fromarray(_noise(5, 6, 1)).convert("1")), "1", False),
    (_save(Image.fromarray(_noise(5, 6, 1)).convert("1"), "BMP"), "1", False),
    (_save(Image.fromarray(_noise(5, 6, 1)).convert("1"), transparency=0), "1", True),
    (_save(Image.fromarray(_noise(5, 6, 3))), "RGB", False),
    (_save(Image.fromarray(_noise(5, 6, 3)).convert("P")), "RGB", False),
    (_save(Image.fromarray(_noise(5, 6, 3)).convert("CMYK"), "JPEG"), "RGB", False),
    (_save(Image.fromarray(_noise(5, 6, 4), mode="RGBA"), "WEBP", lossless=True), "RGB", True),
])
def test_the_mode_of_the_answer_follows_the_file(data: bytes, mode: str, alpha: bool) -> None:
    """The model is fed RGB (grey as R = G = B) with alpha beside it; ``mode`` is how to answer."""
    decoded = images.decode(data, **LIMITS)
    with Image.open(io.BytesIO(data)) as pillow:
        expected = np.asarray(pillow.convert("RGBA" if alpha else "RGB"))
    assert (decoded.mode, decoded.pixels.shape[2]) == (mode, 4 if alpha else 3)
    assert np.array_equal(decoded.pixels, expected)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
@pytest.mark.parametrize("alpha", [False, True])
def test_grey_in_grey_out(full_gateway: RunningGateway, fmt: str, alpha: bool) -> None:
    grey = _noise(9, 11, 2 if alpha else 1)
    data = _save(Image.fromarray(grey, mode="LA" if alpha else "L"))
    out = _answer(_upscale(full_gateway, data, format=fmt))
    assert out.mode == ("LA" if alpha and fmt == "png" else "L")     # JPEG has no alpha
    if fmt == "png":
        pixels = np.asarray(out).reshape(18, 22, -1)
        assert np.array_equal(pixels[:, :, 0], _nearest(grey.reshape(9, 11, -1)[:, :, :1])[:, :, 0])
        if alpha:                                                     # alpha: bicubic, as for RGBA
            assert np.array_equal(pixels[:, :, 1], images.resize_alpha(grey[:, :, 1], size=(18, 22)))


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_one_bit_in_one_bit_out(full_gateway: RunningGateway, fmt: str) -> None:
    bits = Image.fromarray(_noise(12, 10, 1)).convert("1")
    out = _answer(_upscale(full_gateway, _save(bits), format=fmt))
    expected = _nearest(np.asarray(bits.convert("L"))[:, :, None])[:, :, 0]
    if fmt == "png":                                          # Pillow reads a 1-bit grey PNG as "1"
        assert out.mode == "1"
        assert np.array_equal(np.asarray(out.convert("L")), expected)
    else:                                                     # JPEG has no 1-bit form: grey, levels 0 and 255
        assert out.mode == "L" and np.abs(np.asarray(out).astype(int) - expected).mean() < 8


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
@pytest.mark.parametrize("mode", ["L", "1"])
@pytest.mark.parametrize("size", [(7, 5), (301, 513)])             # small: one go; larger: in strips
def test_grey_output_equals_pillows_conversion_of_the_rgb_output(fmt: str, mode: str,
                                                                  size: tuple[int, int]) -> None:
    """ITU-R 601 luma as Pillow's RGB -> L; 1-bit: that level thresholded at 128, without dithering.
    The output image is laid out as the service allocates it: RGB for PNG, RGB + a padding byte for JPEG."""
    rgb = _noise(*size, seed=7)
    padding = [_noise(*size, 1, seed=8)[:, :, None]] if fmt == "jpeg" else []
    data = images.encode_in_place(np.concatenate([rgb, *padding], axis=2), fmt=fmt, text={"k": "v"}, mode=mode)
    grey = Image.fromarray(rgb).convert("L")
    expected = grey if mode == "L" else grey.convert("1", dither=Image.Dither.NONE)
    with Image.open(io.BytesIO(data)) as out:
        if fmt == "jpeg":
            assert out.mode == "L"
            expected = np.asarray(Image.open(io.BytesIO(_save(expected.convert("L"), "JPEG", quality=95))))
            assert np.abs(np.asarray(out).astype(int) - expected).max() <= 1
        else:
            assert out.mode == mode and np.array_equal(np.asarray(out), np.asarray(expected))


def test_grey_output_with_alpha_keeps_the_alpha_plane() -> None:
    rgba = _noise(40, 30, 4, seed=3)
    data = images.encode_in_place(rgba.copy(), fmt="png", text={}, mode="L")
    with Image.open(io.BytesIO(data)) as out:
        assert out.mode == "LA"
        la = np.asarray(out)
    assert np.array_equal(la[:, :, 0], np.asarray(Image.fromarray(rgba[:, :, :3]).convert("L")))
    assert np.array_equal(la[:, :, 1], rgba[:, :, 3])


def test_turning_the_output_grey_takes_no_second_image() -> None:
    """Traced allocations while a 1024 x 1024 RGB output becomes a grey PNG: within 256 KiB of
    encoding a ready grey plane, far from one more grey plane (1 MiB): the grey plane is written
    into the RGB output's own buffer, a few rows at a time."""
    pixels = np.zeros((1024, 1024, 3), np.uint8)
    pixels[::7] = 200
    grey = np.ascontiguousarray(pixels[:, :, :1])

    def peak(work) -> tuple[int, bytes]:
        tracemalloc.start()
        try:
            data = work()
            return tracemalloc.get_traced_memory()[1], data
        finally:
            tracemalloc.stop()

    from_rgb, data = peak(lambda: images.encode_in_place(pixels, fmt="png", text={}, mode="L"))
    ready, same = peak(lambda: images.encode_in_place(grey, fmt="png", text={}))
    assert data == same and from_rgb < ready + 256 * 1024, (from_rgb, ready)


# --- animations ----------------------------------------------------------------------------------

def _frames(count: int, size: int = 4) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (i % 256, (7 * i) % 256, (i // 256) * 60)) for i in range(count)]


def _animation(fmt: str, count: int) -> bytes:
    first, *rest = _frames(count)
    return _save(first, fmt, save_all=True, append_images=rest, duration=40)


@pytest.mark.parametrize(("fmt", "count"), [("GIF", 500), ("PNG", 3), ("WEBP", 2)])
def test_animations_are_refused_with_their_frame_count(fmt: str, count: int) -> None:
    with pytest.raises(InvalidArgument, match=f"animated \\({count} frames\\)"):
        images.decode(_animation(fmt, count), **LIMITS)


def test_an_animated_upload_is_422_and_invalid_argument(full_gateway: RunningGateway) -> None:
    data = _animation("GIF", 12)
    r = _upscale(full_gateway, data)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_argument"), r.text
    assert "animated (12 frames)" in r.json()["error"]["message"]

    async def main():
        async with grpc.aio.insecure_channel(full_gateway.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.GatewayStub(channel).Upscale(pb.UpscaleRequest(image=pb.Image(data=data)), timeout=30)
            return info.value

    error = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "animated (12 frames)" in error.details()


def test_a_jpeg_with_several_images_uses_its_primary_image() -> None:
    """MPO (stereo pairs, previews): the first image is the primary one by the standard; not an animation."""
    first, second = Image.fromarray(_noise(6, 8)), Image.fromarray(_noise(6, 8, seed=1))
    data = _save(first, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(data)) as pillow:
        assert pillow.n_frames == 2
        expected = np.asarray(pillow.convert("RGB"))
    assert np.array_equal(images.decode(data, **LIMITS).pixels, expected)


# --- errors in the gateway's own words -----------------------------------------------------------

def _pillow_error(data: bytes) -> str:
    """What Pillow itself says about ``data`` ("" when it decodes the first frame)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                image.getexif()
    except Exception as exc:  # noqa: BLE001 - any of Pillow's
        return str(exc)
    return ""


def _assert_own_words(error: ServiceError, data: bytes) -> None:
    message, pillow = error.message, _pillow_error(data)
    assert not pillow or pillow[:30] not in message, (pillow, message)
    for word in ("PIL", "Pillow", "Plugin", "DOS", "bomb", "Error", "MAX_"):
        assert word not in message, message


def _bomb() -> bytes:
    """A PNG header that claims 20000 x 20000 pixels: Pillow refuses it as a decompression bomb."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))


def _huge_text_chunk() -> bytes:
    """A valid PNG with a zTXt chunk of 2 MB once inflated (2 KB on the wire)."""
    png = _save(Image.new("RGB", (4, 4)))
    return png[:33] + _chunk(b"zTXt", b"note\0\0" + zlib.compress(b"a" * 2_000_000, 9)) + png[33:]


@pytest.mark.parametrize(("data", "error", "status", "code"), [
    (_bomb(), PayloadTooLarge, 413, "payload_too_large"),
    (_huge_text_chunk(), InvalidArgument, 422, "invalid_argument"),
    (_save(Image.fromarray(_noise(20, 20)))[:600], InvalidArgument, 422, "invalid_argument"),
])
def test_decoding_errors_are_in_our_words(full_gateway: RunningGateway, data: bytes, error: type,
                                          status: int, code: str) -> None:
    with pytest.raises(error) as info:
        images.decode(data, max_bytes=10**6, max_pixels=64 * 64)
    _assert_own_words(info.value, data)
    r = _upscale(full_gateway, data)
    assert (r.status_code, r.json()["error"]) == (status, {"code": code, "message": info.value.message,
                                                           "request_id": r.headers["x-request-id"]})


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Tag data larger:UserWarning")
def test_corrupted_files_give_only_our_errors() -> None:
    """Cut and bit-flipped variants of files in every accepted format: each decodes, or fails with a
    gateway error in the gateway's words (Pillow raises several other types on some of them)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    picture = Image.fromarray(_noise(12, 10))
    seeds = [_save(picture), _save(picture, "JPEG", exif=exif.tobytes()), _save(picture, "WEBP", exif=exif.tobytes()),
             _save(picture, "GIF"), _save(picture, "BMP"), _animation("GIF", 3),
             _png16(_samples16(5, 4, 3), color_type=2), _save(picture.convert("1"), "BMP")]
    rng = np.random.default_rng(11)
    failures = 0
    for i in range(1200):
        data = bytearray(seeds[i % len(seeds)])
        if i % 3 == 0:
            data = data[:rng.integers(1, len(data))]
        else:
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(0, len(data))] = rng.integers(0, 256)
        try:
            images.decode(bytes(data), max_bytes=10**6, max_pixels=10**6)
        except ServiceError as exc:
            failures += 1
            _assert_own_words(exc, bytes(data))
    assert failures > 300
