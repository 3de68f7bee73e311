"""Model outputs -> image files (PNG, JPEG, GIF, APNG) with provenance, and uploads -> arrays.

Quantisation is one fixed formula (clip to the model's value range, scale to [0, 255], round half to
even), so two float tensors that are bitwise equal always give the same bytes. Encoders use fixed
settings for the same reason.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from serve.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType

ImageFormat = Literal["png", "jpeg", "gif", "apng"]
STILL_FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg")
ANIMATED_FORMATS: tuple[ImageFormat, ...] = ("gif", "apng")
MEDIA_TYPES: dict[str, str] = {
    "png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "apng": "image/apng",
}
# Formats accepted as uploads. Pillow can open many more; the rest are not worth the attack surface.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
UPLOAD_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")

_PNG_COMPRESS_LEVEL = 6
_JPEG_QUALITY = 95
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> Pillow mode


def to_uint8(images: np.ndarray, *, value_range: tuple[float, float]) -> np.ndarray:
    """``float [N, C, H, W]`` in ``value_range`` -> ``uint8 [N, H, W, C]``: clip, scale, round."""
    if images.ndim != 4 or images.shape[1] not in _MODES:
        raise ValueError(f"expected images [N, C in (1, 3, 4), H, W], got shape {images.shape}")
    return _quantized(images, value_range).astype(np.uint8).transpose(0, 2, 3, 1)


def _quantized(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The quantisation formula, on a new float32 array (values 0.0 .. 255.0, integral)."""
    lo, hi = value_range
    out = np.clip(x.astype(np.float32, copy=False), lo, hi, dtype=np.float32)
    out -= np.float32(lo)
    out *= np.float32(255.0 / (hi - lo))
    return np.rint(out, out=out)


def quantize_into(out: np.ndarray, x: np.ndarray, *, value_range: tuple[float, float]) -> None:
    """``float [C, H, W]`` -> ``out`` (``uint8 [H, W, C]``, e.g. a view of a larger image), with the
    same formula as :func:`to_uint8`; temporaries are the size of ``x``."""
    out[...] = _quantized(x, value_range).transpose(1, 2, 0)


def to_model_input(pixels: np.ndarray, *, input_range: tuple[float, float]) -> np.ndarray:
    """``uint8 [H, W, C]`` -> ``float32 [C, H, W]`` in ``input_range``: ``lo + pixel * (hi - lo) / 255``."""
    lo, hi = input_range
    x = pixels.transpose(2, 0, 1).astype(np.float32)
    x *= np.float32((hi - lo) / 255.0)
    x += np.float32(lo)
    return x


def _pillow(pixels: np.ndarray) -> Image.Image:
    """``uint8 [H, W, C]`` -> a Pillow image of the matching mode."""
    channels = pixels.shape[2]
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=_MODES[channels])


def encode(pixels: np.ndarray, *, fmt: ImageFormat, text: dict[str, str]) -> bytes:
    """One still image (``uint8 [H, W, C]``) as a file; ``text`` goes into PNG tEXt chunks (a comment
    for JPEG)."""
    if fmt not in STILL_FORMATS:
        raise ValueError(f"{fmt!r} is not a still-image format")
    if fmt == "png":  # our own encoder: same pixels as Pillow's; a 28x28 digit in 22 us instead of 154
        return _encode_png_rows(pixels, text=text)
    image, out = _pillow(pixels), io.BytesIO()
    if image.mode == "RGBA":
        image = image.convert("RGB")
    image.save(out, format="JPEG", quality=_JPEG_QUALITY, comment=_comment(text).encode())
    return out.getvalue()


def encode_animation(frames: np.ndarray, *, fmt: ImageFormat, text: dict[str, str],
                     frame_duration_ms: int) -> bytes:
    """Several frames (``uint8 [N, H, W, C]``) as one looping animated GIF or APNG."""
    if fmt not in ANIMATED_FORMATS:
        raise ValueError(f"{fmt!r} is not an animated format")
    images, out = [_pillow(f) for f in frames], io.BytesIO()
    common = {"save_all": True, "append_images": images[1:], "duration": frame_duration_ms, "loop": 0}
    if fmt == "apng":
        images[0].save(out, format="PNG", pnginfo=_png_text(text), default_image=False,
                       compress_level=_PNG_COMPRESS_LEVEL, **common)
    else:
        images[0].save(out, format="GIF", comment=_comment(text).encode(), optimize=False, **common)
    return out.getvalue()


def encode_in_place(pixels: np.ndarray, *, fmt: ImageFormat, text: dict[str, str]) -> bytes:
    """Like :func:`encode`, without a second copy of the image (for outputs too large to copy):

    * PNG: :func:`encode` already writes it a few rows (``_STREAM_BYTES``) at a time here: each row
      gets the PNG filter with the smallest sum of absolute (signed) differences (libpng's heuristic),
      then zlib at level 6. Pillow would first copy the whole image into its own 4-byte-per-pixel buffer.
    * JPEG (Pillow's encoder) needs ``uint8 [H, W, 4]`` (RGB + an ignored fourth byte): Pillow then
      maps the array as an ``RGBX`` image without copying it; other shapes go through :func:`encode`.
    """
    if fmt == "jpeg" and pixels.ndim == 3 and pixels.shape[2] == 4 and pixels.flags.c_contiguous:
        height, width = pixels.shape[:2]
        image, out = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1), io.BytesIO()
        image.save(out, format="JPEG", quality=_JPEG_QUALITY, comment=_comment(text).encode())
        return out.getvalue()
    return encode(pixels, fmt=fmt, text=text)


_STREAM_BYTES = 32 * 1024  # image bytes filtered at a time (at least one row): ~40x that in temporaries
# Up to this many image bytes (a 64x64 RGB image is 12 KiB) every row gets filter type 0 (None):
# choosing filters costs a fixed ~40 us of NumPy work, most of a small image's encoding time, and
# for generated 28x28 digits it even compresses worse (307 vs 291 IDAT bytes on average).
_UNFILTERED_MAX_BYTES = 16 * 1024
_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png_rows(pixels: np.ndarray, *, text: dict[str, str]) -> bytes:
    """``uint8 [H, W, C]`` -> a PNG file, encoded a few rows at a time (memory: a few rows); small
    images unfiltered in one go."""
    height, width, channels = pixels.shape
    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPES[channels], 0, 0, 0)))
    for key, value in text.items():
        try:
            out.write(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
        except UnicodeEncodeError:  # iTXt: uncompressed UTF-8, no language tag
            out.write(_png_chunk(b"iTXt", key.encode("latin-1", "replace") + b"\0\0\0\0\0" + value.encode()))
    compressor = zlib.compressobj(_PNG_COMPRESS_LEVEL)
    if pixels.size <= _UNFILTERED_MAX_BYTES:
        raw = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # column 0: filter type 0
        raw[:, 1:] = pixels.reshape(height, width * channels)
        pieces: Iterable[np.ndarray] = [raw]
    else:
        pieces = _filtered_rows(pixels)
    for piece in pieces:
        data = compressor.compress(piece.tobytes())
        if data:
            out.write(_png_chunk(b"IDAT", data))
    out.write(_png_chunk(b"IDAT", compressor.flush()))
    out.write(_png_chunk(b"IEND", b""))
    return out.getvalue()


def _filtered_rows(pixels: np.ndarray) -> Iterator[np.ndarray]:
    """``uint8 [H, W, C]`` -> filtered PNG rows, ``_STREAM_BYTES`` of image at a time."""
    height, width, channels = pixels.shape
    previous = np.zeros((1, width * channels), dtype=np.int16)
    step = max(1, _STREAM_BYTES // (width * channels))
    for start in range(0, height, step):
        rows = pixels[start:start + step].reshape(-1, width * channels).astype(np.int16)
        yield _png_filter(rows, previous, channels=channels)
        previous = rows[-1:]


def _png_filter(rows: np.ndarray, previous: np.ndarray, *, channels: int) -> np.ndarray:
    """Rows (``int16 [n, W*C]``, the row above them in ``previous``) -> ``uint8 [n, 1 + W*C]``: each
    row's filter type byte and filtered bytes, the filter chosen per row (None, Sub, Up, Average,
    Paeth: the one with the smallest sum of absolute values as signed bytes)."""
    up = np.concatenate([previous, rows[:-1]])
    left = np.zeros_like(rows)
    left[:, channels:] = rows[:, :-channels]
    up_left = np.zeros_like(rows)
    up_left[:, channels:] = up[:, :-channels]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    candidates = np.stack([rows, rows - left, rows - up, rows - ((left + up) >> 1), rows - paeth])
    candidates = (candidates & 0xFF).astype(np.uint8)       # [5, n, W*C]
    cost = np.abs(candidates.view(np.int8).astype(np.int16)).sum(axis=2, dtype=np.int64)  # [5, n]
    best = cost.argmin(axis=0)
    out = np.empty((len(rows), rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(len(rows))]
    return out


def _png_text(text: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    return info


def _comment(text: dict[str, str]) -> str:
    return "; ".join(f"{key}={value}" for key, value in text.items())


def resize_alpha(alpha: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """An alpha channel ``uint8 [h, w]`` resized (bicubic) to ``size`` = (H, W)."""
    height, width = size
    return np.asarray(Image.fromarray(alpha, mode="L").resize((width, height), Image.Resampling.BICUBIC))


def upscale_alpha_into(out: np.ndarray, alpha: np.ndarray, *, scale: int, rows: int = 64) -> None:
    """An alpha channel ``uint8 [h, w]`` upscaled ``scale`` times into ``out`` (``uint8 [s*h, s*w]``,
    e.g. the alpha plane of the output image), ``rows`` LR rows at a time, so that no whole-size
    temporary exists besides ``out``. Equal to :func:`resize_alpha` (Pillow's bicubic): each strip,
    with ``_ALPHA_MARGIN`` rows of context, is resized horizontally, then vertically (the order
    Pillow uses for a whole image; resizing a strip through ``box`` would let Pillow pick the other
    order, which rounds differently)."""
    height, width = alpha.shape
    source = Image.fromarray(alpha, mode="L")
    for y0 in range(0, height, rows):
        y1 = min(y0 + rows, height)
        a, b = max(0, y0 - _ALPHA_MARGIN), min(height, y1 + _ALPHA_MARGIN)
        wide = source.crop((0, a, width, b)).resize((width * scale, b - a), Image.Resampling.BICUBIC)
        strip = wide.resize((width * scale, (y1 - y0) * scale), Image.Resampling.BICUBIC,
                            box=(0, y0 - a, width * scale, y1 - a))
        out[y0 * scale:y1 * scale] = np.asarray(strip)


_ALPHA_MARGIN = 3  # bicubic support when upscaling (2 px), plus Pillow's rounding of the window


def decode(data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An uploaded image file -> ``uint8 [H, W, C]``, C = 3 (RGB) or 4 (RGBA, when it has alpha).

    Checks the byte size first and the pixel count before any pixel is decoded, so a small file that
    claims a huge size (a decompression bomb) is refused cheaply.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"upload is {len(data)} bytes; the limit is {max_bytes} (max_upload_bytes)")
    if not data:
        raise InvalidArgument("the upload is empty; send an image")
    try:
        with warnings.catch_warnings():  # the pixel limit below is ours; Pillow's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(f"image is {width}x{height} = {width * height} pixels; "
                                      f"the limit is {max_pixels} (max_pixels)")
            if width == 0 or height == 0:
                raise InvalidArgument(f"image is {width}x{height}; it has no pixels")
            has_alpha = image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
            return np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"the upload is not an image in a supported format ({', '.join(UPLOAD_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image is too large to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidArgument(f"the image could not be decoded: {exc}") from exc
