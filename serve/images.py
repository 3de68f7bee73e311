"""Model outputs -> image files (PNG, JPEG, GIF, APNG) with provenance, and uploads -> arrays.

Quantisation is one fixed formula (clip to the model's value range, scale to [0, 255], round half to
even), so two float tensors that are bitwise equal always give the same bytes. Encoders use fixed
settings for the same reason.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from ganserve.serve.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger(__name__)
ImageFormat = Literal["png", "jpeg", "gif", "apng"]
# How an upscaled upload is answered: colour (RGB, RGBA with alpha), grey (L, LA) or black and white.
OutputMode = Literal["RGB", "L", "1"]
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


def encode_in_place(pixels: np.ndarray, *, fmt: ImageFormat, text: dict[str, str],
                    mode: OutputMode = "RGB") -> bytes:
    """Like :func:`encode`, without a second copy of the image (for outputs too large to copy):

    * PNG: :func:`encode` already writes it a few rows (``_STREAM_BYTES``) at a time here: each row
      gets the PNG filter with the smallest sum of absolute (signed) differences (libpng's heuristic),
      then zlib at level 6. Pillow would first copy the whole image into its own 4-byte-per-pixel buffer.
    * JPEG (Pillow's encoder) needs ``uint8 [H, W, 4]`` (RGB + an ignored fourth byte) or a grey
      ``[H, W, 1]``: Pillow then maps the array as an ``RGBX`` or ``L`` image without copying it; other
      shapes go through :func:`encode`.

    ``mode`` "L" or "1" (the answer to a grey or 1-bit upload): the RGB image (C-contiguous; for PNG
    RGBA when it has alpha, for JPEG RGB + a padding byte) is first turned grey in its own buffer by
    :func:`_grey_in_place`, which overwrites ``pixels``. "1" is then a 1-bit PNG, or with alpha an
    8-bit grey + alpha PNG of levels 0 and 255 (PNG has no 1-bit form with alpha); JPEG, which has no
    1-bit form either, gets a grey image of levels 0 and 255.
    """
    bilevel = mode == "1"
    if mode != "RGB":
        pixels = _grey_in_place(pixels, alpha=fmt == "png" and pixels.shape[2] == 4, bilevel=bilevel)
    if fmt == "png":
        return _encode_png_rows(pixels, text=text, bilevel=bilevel and pixels.shape[2] == 1)
    if fmt == "jpeg" and pixels.ndim == 3 and pixels.shape[2] in _JPEG_LAYOUTS and pixels.flags.c_contiguous:
        height, width, channels = pixels.shape
        layout = _JPEG_LAYOUTS[channels]
        image, out = Image.frombuffer(layout, (width, height), pixels, "raw", layout, 0, 1), io.BytesIO()
        image.save(out, format="JPEG", quality=_JPEG_QUALITY, comment=_comment(text).encode())
        return out.getvalue()
    return encode(pixels, fmt=fmt, text=text)


_JPEG_LAYOUTS = {1: "L", 4: "RGBX"}  # channels -> the Pillow mode that maps such an array as it is
_GREY_STRIP_PIXELS = 16 * 1024  # pixels turned grey at a time: ~12x that in temporaries


def _grey_in_place(pixels: np.ndarray, *, alpha: bool, bilevel: bool) -> np.ndarray:
    """An RGB image ``uint8 [H, W, C >= 3]`` (C-contiguous; ``alpha``: channel 3 is alpha, else it
    is ignored) -> its grey version, ``uint8 [H, W, 1]`` or with alpha ``[H, W, 2]``, written into the
    front of the same buffer: no second image, only a strip of rows at a time in temporaries. Row y
    of the result ends before row y + 1 of the input starts, so going down strip by strip never
    overwrites a row not read yet.

    Grey is the ITU-R 601 luma that Pillow's RGB -> L conversion computes, so the result equals
    ``Image.convert("L")``; ``bilevel``: that level thresholded at the midpoint, 128 and above -> 255,
    below -> 0 (``convert("1", dither=Image.Dither.NONE)`` of the L image).
    """
    height, width, channels = pixels.shape
    if channels < 3 or not pixels.flags.c_contiguous:
        raise ValueError(f"expected a C-contiguous RGB image [H, W, C >= 3], got shape {pixels.shape}")
    grey = pixels.reshape(-1)[:height * width * (2 if alpha else 1)].reshape(height, width, -1)
    step = max(1, _GREY_STRIP_PIXELS // width)
    for y in range(0, height, step):
        strip = pixels[y:y + step]
        level = strip[:, :, 0] * np.uint32(19595)        # L = (R*19595 + G*38470 + B*7471 + 2**15) >> 16
        level += strip[:, :, 1] * np.uint32(38470)
        level += strip[:, :, 2] * np.uint32(7471)
        level += 1 << 15
        level >>= 16
        if bilevel:
            level = (level >= 128) * np.uint8(255)
        opacity = strip[:, :, 3].copy() if alpha else None  # read before the grey rows overwrite it
        grey[y:y + step, :, 0] = level
        if opacity is not None:
            grey[y:y + step, :, 1] = opacity
    return grey


_STREAM_BYTES = 32 * 1024  # image bytes filtered at a time (at least one row): ~40x that in temporaries
# Up to this many image bytes (a 64x64 RGB image is 12 KiB) every row gets filter type 0 (None):
# choosing filters costs a fixed ~40 us of NumPy work, most of a small image's encoding time, and
# for generated 28x28 digits it even compresses worse (307 vs 291 IDAT bytes on average).
_UNFILTERED_MAX_BYTES = 16 * 1024
_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey + alpha, RGB, RGBA)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png_rows(pixels: np.ndarray, *, text: dict[str, str], bilevel: bool = False) -> bytes:
    """``uint8 [H, W, C]`` -> a PNG file, encoded a few rows at a time (memory: a few rows); small
    images unfiltered in one go. ``bilevel``: grey ``[H, W, 1]`` as a 1-bit PNG (128 and up: white)."""
    height, width, channels = pixels.shape
    if bilevel:  # 8 pixels a byte; filters work on whole bytes (PNG's bpp is 1)
        depth, color_type, row_bytes, bpp = 1, 0, (width + 7) // 8, 1
    else:
        depth, color_type, row_bytes, bpp = 8, _PNG_COLOR_TYPES[channels], width * channels, channels

    def scanlines(start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as PNG samples, ``uint8 [n, row_bytes]``."""
        rows = pixels[start:stop]
        return np.packbits(rows[:, :, 0] >= 128, axis=1) if bilevel else rows.reshape(-1, row_bytes)

    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)))
    for key, value in text.items():
        try:
            out.write(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
        except UnicodeEncodeError:  # iTXt: uncompressed UTF-8, no language tag
            out.write(_png_chunk(b"iTXt", key.encode("latin-1", "replace") + b"\0\0\0\0\0" + value.encode()))
    compressor = zlib.compressobj(_PNG_COMPRESS_LEVEL)
    if height * row_bytes <= _UNFILTERED_MAX_BYTES:
        raw = np.zeros((height, 1 + row_bytes), dtype=np.uint8)  # column 0: filter type 0
        raw[:, 1:] = scanlines(0, height)
        pieces: Iterable[np.ndarray] = [raw]
    else:
        pieces = _filtered_rows(scanlines, height=height, row_bytes=row_bytes, bpp=bpp)
    for piece in pieces:
        data = compressor.compress(piece.tobytes())
        if data:
            out.write(_png_chunk(b"IDAT", data))
    out.write(_png_chunk(b"IDAT", compressor.flush()))
    out.write(_png_chunk(b"IEND", b""))
    return out.getvalue()


def _filtered_rows(scanlines: Callable[[int, int], np.ndarray], *, height: int, row_bytes: int,
                   bpp: int) -> Iterator[np.ndarray]:
    """Filtered PNG rows, ``_STREAM_BYTES`` of image at a time (``scanlines(start, stop)``: the rows'
    samples, ``uint8 [n, row_bytes]``; ``bpp``: bytes per pixel, at least 1)."""
    previous = np.zeros((1, row_bytes), dtype=np.int16)
    step = max(1, _STREAM_BYTES // row_bytes)
    for start in range(0, height, step):
        rows = scanlines(start, start + step).astype(np.int16)
        yield _png_filter(rows, previous, bpp=bpp)
        previous = rows[-1:]


def _png_filter(rows: np.ndarray, previous: np.ndarray, *, bpp: int) -> np.ndarray:
    """Rows (``int16 [n, B]``, the row above them in ``previous``; ``bpp`` bytes a pixel) -> ``uint8
    [n, 1 + B]``: each row's filter type byte and filtered bytes, the filter chosen per row (None, Sub,
    Up, Average, Paeth: the one with the smallest sum of absolute values as signed bytes)."""
    up = np.concatenate([previous, rows[:-1]])
    left = np.zeros_like(rows)
    left[:, bpp:] = rows[:, :-bpp]
    up_left = np.zeros_like(rows)
    up_left[:, bpp:] = up[:, :-bpp]
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


@dataclass(frozen=True)
class DecodedImage:
    """An upload, decoded and turned upright."""

    pixels: np.ndarray      # uint8 [H, W, 3 or 4]: RGB (grey as R = G = B), and alpha when the file has any
    mode: OutputMode        # the file's own kind of pixels, which the answer keeps
    orientation: int        # the EXIF orientation applied to the stored pixels (1: none)


# What Pillow raises on malformed files (besides UnidentifiedImageError and DecompressionBombError),
# as found by decoding cut and bit-flipped files of every accepted format.
_DECODING_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an upload's header, without decoding a pixel (cheap enough for the event
    loop: Pillow reads only the header); None when it is not an image :func:`decode` would take (it
    then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
                return image.size
    except Exception:  # noqa: BLE001 - decode() reports every problem in its own words
        return None


def decode(data: bytes, *, max_bytes: int, max_pixels: int) -> DecodedImage:
    """An uploaded image file -> its pixels, upright, as models take them (8-bit RGB, alpha beside),
    and the mode to answer in.

    Checks the byte size first and the pixel count before any pixel is decoded, so a small file that
    claims a huge size (a decompression bomb) is refused cheaply. Then:

    * One still image only: an animation (a GIF, APNG or WebP of more than one frame) is refused,
      naming its frame count. A JPEG holding several images (MPO: stereo pairs, previews) is not an
      animation; its first image is, by that standard, the primary one, and is used.
    * 16-bit samples (PNG) become 8 bits as ``round(v / 257)``, which maps 0 .. 65535 onto 0 .. 255
      (Pillow alone clips 16-bit grey to white and keeps only the high byte of 16-bit colour); a
      transparent colour (tRNS) is matched on all 16 bits.
    * The EXIF orientation (JPEG, PNG, WebP) is applied, as ``ImageOps.exif_transpose`` does, so the
      pixels are as the image is meant to be seen (an EXIF block that cannot be read counts as none).
    * ``mode``: "1" for 1-bit black-and-white files (PNG, BMP), "L" for grey ones (grey or grey +
      alpha samples of any depth, or a palette of greys only), "RGB" for all others. The pixels are
      RGB all the same, since models take RGB.

    Errors are in the gateway's words; Pillow's own message is logged at debug level.
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
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format != "MPO":
                raise InvalidArgument(f"the image is animated ({frames} frames); upscaling takes one still image")
            pixels, mode = _pixels(image, data)
            orientation = _orientation(image)
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"the upload is not an image in a supported format ({', '.join(UPLOAD_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        log.debug("upload refused by Pillow: %s", exc)
        raise PayloadTooLarge(f"image is too large to decode (over {2 * Image.MAX_IMAGE_PIXELS} pixels); "
                              f"the limit is {max_pixels} pixels (max_pixels)") from exc
    except _DECODING_ERRORS as exc:
        log.debug("upload not decoded by Pillow: %s", exc)
        raise InvalidArgument("the image could not be decoded: its data is corrupt or cut short") from exc
    if orientation != 1:
        pixels = np.ascontiguousarray(_UPRIGHT[orientation](pixels))
    return DecodedImage(pixels, mode, orientation)


# 16-bit colour PNGs (by the raw mode Pillow reads them with, which keeps each sample's high byte):
# raw modes that read the high and low bytes. Each unpacks as many bytes a pixel as the file holds,
# so Pillow still undoes PNG's row filters right ("16L" on big-endian samples: the low bytes).
_PNG16_RAWMODES = {
    "RGB;16B": ("RGB;16B", "RGB;16L"),
    "RGBA;16B": ("RGBA;16B", "RGBA;16L"),
    "LA;16B": ("RGBA",),        # grey + alpha, which Pillow opens as RGBA: its 4 bytes as they are
}


def _pixels(image: ImageFile.ImageFile, data: bytes) -> tuple[np.ndarray, OutputMode]:
    """``image`` (opened from ``data``, not loaded yet) -> ``uint8 [H, W, 3 or 4]`` and its mode."""
    transparency = image.info.get("transparency")
    if image.format == "PNG" and image.tile and image.tile[0][3] in _PNG16_RAWMODES:
        return _from_16_bits(_png16_samples(image, data), transparency)
    if image.mode in ("I;16", "I"):  # 16-bit grey PNG (Pillow 10+ reads it as I;16, older ones as I)
        return _from_16_bits(np.asarray(image).clip(0, 65535)[:, :, None], transparency)
    image.load()  # a GIF's transparency is known once its frame is read
    has_alpha = image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info
    mode: OutputMode = "RGB"
    if image.mode == "1":
        mode = "1"
    elif image.mode in {"L", "LA"} or (image.mode == "P" and _grey_palette(image)):
        mode = "L"
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8), mode


def _grey_palette(image: Image.Image) -> bool:
    palette = image.getpalette() or []
    return palette[0::3] == palette[1::3] == palette[2::3]


def _png16_samples(image: ImageFile.ImageFile, data: bytes) -> np.ndarray:
    """The samples of a 16-bit colour PNG, ``uint16 [H, W, C]`` (C = 2, 3, 4): ``image`` read with
    the first raw mode of :data:`_PNG16_RAWMODES`, a second reading of ``data`` with the other."""
    first, *others = _PNG16_RAWMODES[image.tile[0][3]]
    planes = [_read_as(image, first)]
    for rawmode in others:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as again:
            planes.append(_read_as(again, rawmode))
    height, width = planes[0].shape[:2]
    pairs = np.stack(planes, axis=-1).reshape(height, width, -1, 2)  # each sample's (high, low) bytes
    return pairs.view(">u2")[:, :, :, 0]


def _read_as(image: ImageFile.ImageFile, rawmode: str) -> np.ndarray:
    """``image``'s pixels, decoded with another raw mode (of as many bits a pixel)."""
    image.tile = [(*tile[:3], rawmode) for tile in image.tile]
    return np.asarray(image)


def _from_16_bits(samples: np.ndarray, transparency: object) -> tuple[np.ndarray, OutputMode]:
    """16-bit grey, grey + alpha, RGB or RGBA samples ``[H, W, C]`` -> ``uint8`` RGB(A) and its mode;
    ``transparency``: the tRNS colour (16 bits a channel), if any."""
    height, width, channels = samples.shape
    colour = samples[:, :, :3] if channels >= 3 else samples[:, :, :1]
    has_alpha = channels in (2, 4) or transparency is not None
    out = np.empty((height, width, 4 if has_alpha else 3), np.uint8)
    out[:, :, :3] = _to_8_bits(colour)
    if channels in (2, 4):
        out[:, :, 3] = _to_8_bits(samples[:, :, -1])
    elif transparency is not None:
        out[:, :, 3] = np.where((colour == np.ravel(transparency)).all(axis=2), 0, 255)
    return out, "RGB" if channels >= 3 else "L"


def _to_8_bits(samples: np.ndarray) -> np.ndarray:
    """16-bit samples -> ``round(v / 257)`` (never a tie: v / 257 is never k + 1/2)."""
    wide = samples.astype(np.uint32)
    wide += 128
    wide //= 257
    return wide.astype(np.uint8)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (2 .. 8), or 1 where the image has none or an invalid one (as Pillow's
    ``ImageOps.exif_transpose``) or an EXIF block that cannot be read (as Pillow reads a JPEG's, and
    browsers show such images: as stored)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODING_ERRORS as exc:
        log.debug("EXIF not read by Pillow, taken as absent: %s", exc)
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


# EXIF orientation -> the stored pixels [H, W, C] as they are meant to be seen (views; Pillow's names)
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],                        # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],                     # ROTATE_180
    4: lambda a: a[::-1],                           # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),              # TRANSPOSE
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],     # ROTATE_270 (a quarter turn clockwise)
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
    8: lambda a: a.transpose(1, 0, 2)[::-1],        # ROTATE_90 (a quarter turn anticlockwise)
}
