"""Model outputs -> image files (PNG, JPEG, GIF, APNG) with provenance, and uploads -> arrays.

Quantisation is one fixed formula (clip to the model's value range, scale to [0, 255], round half to
even), so two float tensors that are bitwise equal always give the same bytes. Encoders use fixed
settings for the same reason.
"""

from __future__ import annotations

import io
import warnings
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
    lo, hi = value_range
    x = np.clip(images.astype(np.float32, copy=False), lo, hi)
    x = (x - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


def _pillow(pixels: np.ndarray) -> Image.Image:
    """``uint8 [H, W, C]`` -> a Pillow image of the matching mode."""
    channels = pixels.shape[2]
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=_MODES[channels])


def encode(pixels: np.ndarray, *, fmt: ImageFormat, text: dict[str, str]) -> bytes:
    """One still image (``uint8 [H, W, C]``) as a file; ``text`` goes into PNG tEXt chunks (a comment
    for JPEG)."""
    if fmt not in STILL_FORMATS:
        raise ValueError(f"{fmt!r} is not a still-image format")
    image, out = _pillow(pixels), io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", pnginfo=_png_text(text), compress_level=_PNG_COMPRESS_LEVEL)
    else:
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
