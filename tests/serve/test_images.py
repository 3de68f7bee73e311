"""Quantisation, encoders with provenance, and upload decoding with limits."""

import io

import numpy as np
import pytest
from PIL import Image

from ganserve.serve import images
from ganserve.serve.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color=(10, 20, 30, 40)[:len(mode)] if mode != "L" else 7).save(out, "PNG")
    return out.getvalue()


def test_to_uint8_clips_scales_and_rounds() -> None:
    x = np.array([-2.0, -1.0, 0.0, 1.0 / 255, 1.0, 3.0], np.float32).reshape(1, 1, 1, 6)
    got = images.to_uint8(x, value_range=(-1.0, 1.0))
    assert got.shape == (1, 1, 6, 1)
    assert got.ravel().tolist() == [0, 0, 128, 128, 255, 255]  # 127.5 -> 128 (half to even)
    assert images.to_uint8(np.full((1, 3, 2, 2), 0.5, np.float32), value_range=(0.0, 1.0)).ravel()[0] == 128


def test_png_carries_text_chunks_and_is_reproducible() -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    text = {"ganserve.model": "m", "ganserve.seed": "42"}
    a = images.encode(pixels, fmt="png", text=text)
    assert a == images.encode(pixels, fmt="png", text=text)
    decoded = Image.open(io.BytesIO(a))
    assert decoded.text["ganserve.seed"] == "42" and decoded.mode == "L"
    assert np.array_equal(np.asarray(decoded), pixels[:, :, 0])


@pytest.mark.parametrize("fmt", ["gif", "apng"])
def test_animations_hold_every_frame(fmt: str) -> None:
    frames = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (0, 100, 200)])
    data = images.encode_animation(frames, fmt=fmt, text={"ganserve.model": "m"}, frame_duration_ms=50)
    assert Image.open(io.BytesIO(data)).n_frames == 3


def test_decode_keeps_alpha_and_drops_it_when_absent() -> None:
    assert images.decode(_png(5, 4, "RGBA"), max_bytes=10**6, max_pixels=10**6).pixels.shape == (4, 5, 4)
    grey = images.decode(_png(5, 4, "L"), max_bytes=10**6, max_pixels=10**6)
    assert grey.pixels.shape == (4, 5, 3) and grey.mode == "L"  # RGB for the model; answered grey


def test_decode_limits() -> None:
    data = _png(100, 100)
    with pytest.raises(PayloadTooLarge, match="max_upload_bytes"):
        images.decode(data, max_bytes=len(data) - 1, max_pixels=10**6)
    with pytest.raises(PayloadTooLarge, match="max_pixels"):
        images.decode(data, max_bytes=10**6, max_pixels=100 * 100 - 1)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png(5_000, 5_000, "L")  # ~25 kB on the wire, 25 Mpx once decoded
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="max_pixels"):
        images.decode(bomb, max_bytes=10**6, max_pixels=10**6)


def test_decode_errors_name_the_problem() -> None:
    with pytest.raises(UnsupportedMediaType):
        images.decode(b"definitely not an image", max_bytes=10**6, max_pixels=10**6)
    with pytest.raises(InvalidArgument, match="decoded"):
        images.decode(_png(50, 50)[:60], max_bytes=10**6, max_pixels=10**6)
    with pytest.raises(InvalidArgument, match="empty"):
        images.decode(b"", max_bytes=10, max_pixels=10)
