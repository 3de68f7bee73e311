"""The gateway's operations, shared by the HTTP and gRPC adapters: validation, model resolution,
seeds -> z, inference through the backend, image encoding and decoding.

Failures a client can cause are raised as :mod:`ganserve.serve.errors` types; each adapter maps them once.
Nothing here knows about HTTP or gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ganserve.serve import images, seeds, tiling
from ganserve.serve.access.context import note_model
from ganserve.serve.access.gate import charge_work
from ganserve.serve.access.tracing import SPAN_NAME_IMAGE_WORK, span
from ganserve.serve.admission import Admission, Ticket
from ganserve.serve.backends.base import REQUEST_DEADLINE, Backend
from ganserve.serve.errors import DeadlineExceeded, InvalidArgument, ModelNotFound, NotReady
from ganserve.serve.images import ImageFormat
from ganserve.serve.repository import TOKENIZERS, LoadProblem, ModelKind, ModelVersion, Repository
from ganserve.serve.settings import Settings, parse_default_models
from ganserve.text import is_blank

DEFAULT_FRAMES = 8
DEFAULT_FRAME_DURATION_MS = 100
MAX_FRAME_DURATION_MS = 60_000
_INLINE_MAX_SIZE = 64 * 1024  # image work up to this many values (or bytes) runs on the event loop
_MAX_NAME_IN_MESSAGE = 64
# Metadata of how a model was trained: shown by /models only with models_show_training
TRAINING_METADATA = frozenset({"ganserve.training_commit", "ganserve.training_data", "ganserve.training_steps",
                               "ganserve.config"})
DEFAULT_MIX = 0.5
_PROMPT_WHITESPACE = "\t\n\r"  # the only control characters a prompt may hold (they become spaces)
T = TypeVar("T")
# An upload: its bytes, or a coroutine function that reads them (so the model is resolved, and a
# missing one reported, before a large body is read).
Upload = bytes | Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class EncodedImage:
    """An image file and its media type."""

    data: bytes
    media_type: str


@dataclass(frozen=True)
class TextCondition:
    """A validated prompt, or two with the weight of the second (``mix``)."""

    prompt: str
    prompt_b: str | None = None
    mix: float | None = None            # set exactly when prompt_b is

    def provenance(self) -> dict[str, str]:
        text = {"ganserve.prompt": self.prompt}
        if self.prompt_b is not None:
            text |= {"ganserve.prompt_b": self.prompt_b, "ganserve.mix": repr(self.mix)}
        return text


@dataclass(frozen=True)
class SeededImage:
    """A generated image and the seed it came from."""

    seed: int
    image: EncodedImage
    # with ``levels`` (pyramid models): every level's image at its own size, coarse to fine (the last
    # has ``image``'s pixels; each file's text names its level); else empty
    levels: tuple[EncodedImage, ...] = ()


@dataclass(frozen=True)
class GenerateResult:
    model: str
    version: int
    images: tuple[SeededImage, ...]
    warnings: tuple[str, ...] = ()      # e.g. a prompt naming nothing the text model was trained on


@dataclass(frozen=True)
class InterpolateResult:
    """A latent walk: ``frames`` images, or one animated image holding them all."""

    model: str
    version: int
    seed_a: int
    seed_b: int
    t: tuple[float, ...]                # position of each frame on the walk, 0 .. 1
    images: tuple[EncodedImage, ...]    # one per frame, or one animation
    animated: bool


@dataclass(frozen=True)
class UpscaleResult:
    model: str
    version: int
    image: EncodedImage


class GatewayService:
    """Generate, interpolate, upscale and list models over one backend."""

    def __init__(self, *, backend: Backend, settings: Settings, admission: Admission) -> None:
        self._backend, self._settings, self._admission = backend, settings, admission
        self._defaults = parse_default_models(settings.default_models)
        self._stopping = False
        self._running: set[asyncio.Timeout] = set()  # the deadlines of admitted requests
        self._aborted = False

    def begin_shutdown(self) -> None:
        """New requests get :class:`NotReady` from now on; admitted ones go on."""
        self._stopping = True

    def in_flight(self) -> int:
        """Requests admitted and not finished."""
        return len(self._running)

    def abort_in_flight(self) -> None:
        """Ends every admitted request now with :class:`NotReady` (the end of a shutdown's grace):
        each stops at its next await, as at its deadline."""
        self._aborted = True
        now = asyncio.get_running_loop().time()
        for deadline in list(self._running):
            deadline.reschedule(now)

    # --- queries ------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self._backend.ready()

    def repository(self) -> Repository:
        """Loaded models (every version) and load problems."""
        return self._backend.repository

    def public_metadata(self, mv: ModelVersion) -> dict[str, str]:
        """What ``/models`` and ``ListModels`` show of a model's metadata: without the training details
        (:data:`TRAINING_METADATA`; the model card has them) unless ``models_show_training``."""
        if self._settings.models_show_training:
            return dict(mv.metadata)
        return {k: v for k, v in mv.metadata.items() if k not in TRAINING_METADATA}

    def public_problems(self) -> list[LoadProblem]:
        """Load problems as ``/models`` and ``ListModels`` show them: paths relative to the repository
        (the log has them whole)."""
        repo = self._backend.repository
        root = str(repo.root).rstrip(os.sep) + os.sep
        return [dataclasses.replace(p, message=p.message.replace(root, "")) for p in repo.problems]

    def default_model(self, kind: ModelKind) -> str | None:
        """The model a request of ``kind`` that names none gets: the only loaded one of the kind, or
        the one ``default_models`` names for it (when loaded); None when it must name one."""
        loaded = self._backend.repository.models
        of_kind = sorted(name for name, vs in loaded.items() if vs[-1].kind == kind)
        if len(of_kind) == 1:
            return of_kind[0]
        chosen = self._defaults.get(kind)
        return chosen if chosen in of_kind else None

    def is_default(self, mv: ModelVersion) -> bool:
        """Whether ``mv`` is what a request of its kind that names no model (nor version) gets."""
        versions = self._backend.repository.models.get(mv.name, ())
        return bool(versions) and versions[-1] is mv and self.default_model(mv.kind) == mv.name

    # --- operations ---------------------------------------------------------------------------

    async def generate(self, *, model: str | None = None, version: int | None = None, n: int = 1,
                       seed: int | None = None, truncation: float | None = None,
                       prompt: str | None = None, prompt_b: str | None = None, mix: float | None = None,
                       fmt: str | None = None, levels: bool | None = None,
                       timeout_s: float | None = None) -> GenerateResult:
        """``n`` images; image i has seed ``seed + i`` (a drawn seed when ``seed`` is None). With a
        ``prompt``, from a text-conditional model; with ``prompt_b`` too, from the text embedding
        ``(1 - mix) * e(prompt) + mix * e(prompt_b)``. With ``levels``, from a pyramid model (LAPGAN):
        each image comes with every level's image as well."""
        self._check_ready()
        n = _int_in_range(n, name="n", lo=1, hi=self._settings.max_images_per_request,
                          setting="max_images_per_request")
        fmt = _format(fmt, allowed=images.STILL_FORMATS)
        truncation = _truncation(truncation)
        condition = _text_condition(prompt, prompt_b, mix, max_chars=self._settings.max_prompt_chars)
        mv = self._resolve(model, version, kind="unconditional" if condition is None else "text-conditional")
        level_names = _levels(mv, levels)
        if seed is None:
            seed = seeds.draw_seed()
        seed = _int_in_range(seed, name="seed", lo=0, hi=seeds.SEED_MAX - (n - 1),
                             setting="2**64 - n, so that every seed + i fits in 64 bits")
        image_seeds = [seed + i for i in range(n)]
        extra = {} if condition is None else condition.provenance()
        nbytes = _generated_bytes(mv, n) * (2 if level_names else 1)  # the levels hold less than the image
        with self._admit(mv, units=n, nbytes=nbytes, timeout_s=timeout_s) as (_ticket, limit):
            async with self._deadline(mv, limit):
                z = await _latents(image_seeds, latent_dim=mv.latent_dim, truncation=truncation)
                if level_names:
                    by_level = await self._generate_images(mv, z, level_names)
                    pixels = by_level[-1]
                elif condition is None:
                    pixels, by_level = await self._generate_pixels(mv, z), []
                else:
                    pixels, by_level = await self._generate_from_text(mv, z, condition), []

                def encode() -> list[tuple[bytes, list[bytes]]]:
                    out = []
                    for i, s in enumerate(image_seeds):
                        text = _provenance(mv, seed=s, truncation=truncation) | extra
                        levels_i = [images.encode(lv[i], fmt=fmt, text=text | {"ganserve.level": name})
                                    for name, lv in zip(level_names, by_level, strict=True)]
                        out.append((images.encode(pixels[i], fmt=fmt, text=text), levels_i))
                    return out

                encoded = await _maybe_off_loop(encode, size=pixels.size)
        media_type = images.MEDIA_TYPES[fmt]
        return GenerateResult(model=mv.name, version=mv.version, images=tuple(
            SeededImage(seed=s, image=EncodedImage(d, media_type),
                        levels=tuple(EncodedImage(x, media_type) for x in lv))
            for s, (d, lv) in zip(image_seeds, encoded, strict=True)),
            warnings=_vocabulary_warnings(mv, condition))

    async def interpolate(self, *, model: str | None = None, version: int | None = None,
                          seed_a: int | None = None, seed_b: int | None = None,
                          frames: int | None = None, truncation: float | None = None,
                          fmt: str | None = None, frame_duration_ms: int | None = None,
                          timeout_s: float | None = None) -> InterpolateResult:
        """A slerp walk from ``seed_a``'s z to ``seed_b``'s z, both ends included."""
        self._check_ready()
        frames = _int_in_range(DEFAULT_FRAMES if frames is None else frames, name="frames", lo=2,
                               hi=self._settings.max_interpolation_frames,
                               setting="max_interpolation_frames")
        fmt = _format(fmt, allowed=images.STILL_FORMATS + images.ANIMATED_FORMATS)
        frame_duration_ms = _int_in_range(
            DEFAULT_FRAME_DURATION_MS if frame_duration_ms is None else frame_duration_ms,
            name="frame_duration_ms", lo=1, hi=MAX_FRAME_DURATION_MS)
        truncation = _truncation(truncation)
        mv = self._resolve(model, version, kind="unconditional")
        seed_a = seeds.draw_seed() if seed_a is None else _int_in_range(
            seed_a, name="seed_a", lo=0, hi=seeds.SEED_MAX)
        seed_b = seeds.draw_seed() if seed_b is None else _int_in_range(
            seed_b, name="seed_b", lo=0, hi=seeds.SEED_MAX)
        t = tuple(float(x) for x in np.linspace(0.0, 1.0, frames))
        text = _provenance(mv, seed=None, truncation=truncation) | {
            "ganserve.seed_a": str(seed_a), "ganserve.seed_b": str(seed_b), "ganserve.frames": str(frames)}
        animated = fmt in images.ANIMATED_FORMATS
        with self._admit(mv, units=frames, nbytes=_generated_bytes(mv, frames), timeout_s=timeout_s) \
                as (_ticket, limit):
            async with self._deadline(mv, limit):
                ends = await _latents([seed_a, seed_b], latent_dim=mv.latent_dim, truncation=truncation)
                z = seeds.slerp(ends[0], ends[1], frames=frames)
                pixels = await self._generate_pixels(mv, z)

                def encode() -> list[bytes]:
                    if animated:
                        return [images.encode_animation(pixels, fmt=fmt, text=text,
                                                        frame_duration_ms=frame_duration_ms)]
                    return [images.encode(p, fmt=fmt, text=text | {"ganserve.frame": str(i)})
                            for i, p in enumerate(pixels)]

                encoded = await _maybe_off_loop(encode, size=pixels.size)
        media_type = images.MEDIA_TYPES[fmt]
        return InterpolateResult(model=mv.name, version=mv.version, seed_a=seed_a, seed_b=seed_b, t=t,
                                 images=tuple(EncodedImage(d, media_type) for d in encoded),
                                 animated=animated)

    async def upscale(self, *, image: Upload, model: str | None = None, version: int | None = None,
                      fmt: str | None = None, tile_size: int | None = None, tile_overlap: int | None = None,
                      upload_bytes: int | None = None, timeout_s: float | None = None) -> UpscaleResult:
        """Super-resolution of one uploaded image (alpha, if any, is upscaled bicubically alongside),
        in tiles of ``tile_size`` LR pixels overlapping by ``tile_overlap`` (unset: the model's).
        ``upload_bytes``: the size the upload will have when ``image`` still has to be read (an HTTP
        body's Content-Length), else ``max_upload_bytes`` is reserved for it.

        Memory, whatever the image size: the upload, the decoded uint8 image, the uint8 output image
        (allocated once; every tile batch is quantised straight into it) and its file, plus a bounded
        number of float32 tiles (``upscale_tile_batch``, ``upscale_batch_pixels``)."""
        self._check_ready()
        fmt = _format(fmt, allowed=images.STILL_FORMATS)
        mv = self._resolve(model, version, kind="super-resolution")
        tile, overlap = self._tiling(mv, tile_size, tile_overlap)
        # Admitted first for the upload, then re-priced from the image's header, before it is decoded.
        settings = self._settings
        upload = len(image) if isinstance(image, bytes) else min(upload_bytes or settings.max_upload_bytes,
                                                                 settings.max_upload_bytes)
        with self._admit(mv, units=0, nbytes=_UPLOAD_COPIES * upload, timeout_s=timeout_s) as (ticket, limit):
            async with self._deadline(mv, limit):
                data = image if isinstance(image, bytes) else await image()
                size = images.image_size(data)
                if size is not None:  # else decode() says what is wrong with it
                    width, height = size
                    per_call = 1 if tile is None else self._tiles_per_call(mv, tile)
                    lr_units = _lr_pixels(height, width, tile=tile, overlap=overlap)
                    charge_work(model=mv.name, seconds=self._admission.estimate_s(mv.name, lr_units))
                    self._admission.resize(
                        ticket, units=lr_units,
                        nbytes=_UPLOAD_COPIES * len(data)
                        + _upscale_bytes(mv, height, width, tile=tile, tiles_per_call=per_call),
                        deadline_s=limit.remaining(), deadline_setting=limit.setting)
                decoded = await _maybe_off_loop(functools.partial(
                    images.decode, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels),
                    size=len(data))
                del data, image  # the upload is not needed any more
                pixels = decoded.pixels  # [h, w, 3 or 4], upright
                height, width = pixels.shape[:2]
                rgb, alpha = pixels[:, :, :3], (pixels[:, :, 3] if pixels.shape[2] == 4 else None)
                # The output image, written in place: RGB, RGBA when there is alpha, and for JPEG (which
                # drops alpha) RGB + a padding byte, the layout Pillow's encoder can read without a copy.
                channels = 4 if fmt == "jpeg" or alpha is not None else 3
                out = np.empty((height * mv.scale, width * mv.scale, channels), dtype=np.uint8)
                await self._super_resolve(mv, rgb, out, tile=tile, overlap=overlap, ticket=ticket, limit=limit)
                text = _provenance(mv, seed=None, truncation=None)
                if tile is not None:
                    text |= {"ganserve.tile_size": str(tile), "ganserve.tile_overlap": str(overlap)}
                if decoded.orientation != 1:  # the upload was turned upright as its EXIF says
                    text["ganserve.input_orientation"] = str(decoded.orientation)

                def finish() -> bytes:
                    if fmt == "png" and alpha is not None:
                        images.upscale_alpha_into(out[:, :, 3], alpha, scale=mv.scale)
                    # A grey or 1-bit upload is answered so: out turns grey in place (the model ran on RGB).
                    return images.encode_in_place(out, fmt=fmt, text=text, mode=decoded.mode)

                encoded = await _maybe_off_loop(finish, size=out.size)
        return UpscaleResult(model=mv.name, version=mv.version,
                             image=EncodedImage(encoded, images.MEDIA_TYPES[fmt]))

    # --- shared steps -------------------------------------------------------------------------

    def _check_ready(self) -> None:
        if self._stopping:
            raise NotReady("the gateway is shutting down; retry on another replica")
        if not self._backend.ready():
            raise NotReady(f"the gateway is not ready: {self._backend.readiness()}")

    def _resolve(self, model: str | None, version: int | None, *, kind: ModelKind) -> ModelVersion:
        """The model version a request names (or the only loaded model of ``kind``), checked."""
        loaded = self._backend.repository.models
        if not model:
            of_kind = sorted(name for name, vs in loaded.items() if vs[-1].kind == kind)
            if not of_kind:
                text_models = sorted(name for name, vs in loaded.items() if vs[-1].kind == "text-conditional")
                hint = f" (text-conditional: {', '.join(text_models)}; they need a 'prompt')" \
                    if kind == "unconditional" and text_models else ""
                raise ModelNotFound(f"no {kind} model is loaded{hint}")
            model = self.default_model(kind)
            if model is None:
                raise InvalidArgument(f"several {kind} models are loaded ({', '.join(of_kind)}); "
                                      f"name one with 'model' (or set default_models)")
        versions = loaded.get(model)
        if versions is None:
            shown = model if len(model) <= _MAX_NAME_IN_MESSAGE else model[:_MAX_NAME_IN_MESSAGE] + "..."
            raise ModelNotFound(f"model {shown!r} is not loaded; loaded models: "
                                f"{', '.join(sorted(loaded)) or 'none'}")
        if version is None:
            mv = versions[-1]
        else:
            mv = next((v for v in versions if v.version == version), None)
            if mv is None:
                raise ModelNotFound(f"model {model!r} has no loaded version {version}; loaded versions: "
                                    f"{', '.join(str(v.version) for v in versions)}", model=model)
        note_model(mv.name)
        if mv.kind != kind:
            needs = {"text-conditional": "a prompt needs", "unconditional": "generating without a prompt "
                     "needs", "super-resolution": "upscaling needs"}[kind]
            hint = " (it needs a 'prompt')" if mv.kind == "text-conditional" else ""
            raise InvalidArgument(f"model {model!r} is of kind {mv.kind!r}{hint}; {needs} a model of kind "
                                  f"{kind!r}", model=model)
        return mv

    async def _generate_pixels(self, mv: ModelVersion, z: np.ndarray) -> np.ndarray:
        """z ``[n, latent_dim]`` -> ``uint8 [n, H, W, C]``."""
        return (await self._generate_images(mv, z, (mv.output_name,)))[0]

    async def _generate_images(self, mv: ModelVersion, z: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """z ``[n, latent_dim]`` -> the outputs ``names`` as ``uint8 [n, H, W, C]`` each (a pyramid's z is
        split over its levels' inputs: :meth:`ModelVersion.latent_feed`)."""
        out = await self._backend.infer(mv.name, mv.version, mv.latent_feed(z))
        return [images.to_uint8(out[name], value_range=mv.value_range) for name in names]

    async def _generate_from_text(self, mv: ModelVersion, z: np.ndarray, condition: TextCondition) -> np.ndarray:
        """z ``[n, latent_dim]`` and a prompt -> ``uint8 [n, H, W, C]``. One prompt: the ensemble, in
        one backend call (Triton runs it as one request). Two: the encoder once for both, the
        embeddings mixed here, then the generator (the contract's tensor names on both)."""
        n, encode = len(z), TOKENIZERS[mv.tokenizer]
        if condition.prompt_b is None:
            tokens = encode([condition.prompt], length=mv.max_tokens)  # [1, L]
            out = await self._backend.infer(mv.name, mv.version, {
                "tokens": np.repeat(tokens, n, axis=0), "z": z})
        else:
            encoder = mv.step_of_kind("text-encoder")
            generator = mv.step_of_kind("text-conditional-generator")
            tokens = encode([condition.prompt, condition.prompt_b], length=mv.max_tokens)  # [2, L]
            e = (await self._backend.infer(encoder.model, encoder.version, {"tokens": tokens}))["embedding"]
            w = np.float32(condition.mix)
            mixed = (np.float32(1) - w) * e[0] + w * e[1]  # [E], float32 throughout
            out = await self._backend.infer(generator.model, generator.version, {
                "z": z, "embedding": np.repeat(mixed[None], n, axis=0)})
        return images.to_uint8(out["image"], value_range=mv.value_range)

    def _tiling(self, mv: ModelVersion, tile_size: int | None,
                tile_overlap: int | None) -> tuple[int | None, int]:
        """The request's tile size and overlap, checked; (None, 0): the whole image in one pass."""
        limits = self._settings
        fixed = _fixed_tile(mv)
        if tile_size is None:
            tile = mv.tile_size
        else:
            tile = _int_in_range(tile_size, name="tile_size", lo=limits.upscale_min_tile_size,
                                 hi=limits.upscale_max_tile_size,
                                 setting="upscale_min_tile_size, upscale_max_tile_size")
            if fixed is not None and tile != fixed:
                raise InvalidArgument(f"model {mv.name!r} takes only {fixed}x{fixed} tiles (its "
                                      f"config.pbtxt fixes the shape); tile_size must be {fixed} or unset",
                                      model=mv.name)
        if tile is None:
            if tile_overlap is not None:
                raise InvalidArgument(f"model {mv.name!r} upscales whole images; tile_overlap needs a "
                                      f"tile_size", model=mv.name)
            return None, 0
        if tile_overlap is None:  # the model's, as far as it fits this tile
            return tile, min(mv.tile_overlap, (tile - 1) // 2)
        overlap = _int_in_range(tile_overlap, name="tile_overlap", lo=0, hi=(tile - 1) // 2,
                                setting=f"less than half of tile_size {tile}")
        return tile, overlap

    def _tiles_per_call(self, mv: ModelVersion, tile: int) -> int:
        """How many tiles of one request go to the backend at once."""
        by_pixels = max(1, self._settings.upscale_batch_pixels // (tile * tile))
        return max(1, min(self._settings.upscale_tile_batch, mv.max_batch_size, by_pixels))

    async def _super_resolve(self, mv: ModelVersion, rgb: np.ndarray, out: np.ndarray, *, tile: int | None,
                             overlap: int, ticket: Ticket, limit: _Limit) -> None:
        """``uint8 [h, w, 3]`` -> ``out[:, :, :3]`` (``uint8 [s*h, s*w, >= 3]``): whole, or tile by tile,
        a batch of tiles per backend call (so other requests interleave, and memory stays bounded).
        The next batch is inferred while the last one is quantised into ``out``.

        Each batch done is reported to admission (it leaves the backlog and measures throughput). After
        each batch, and every ``_ON_TIME_CHECK_S`` while it waits for one, the request checks that its
        work left, and the work run before it, can still finish before its deadline at the throughput
        measured now; when not (the CPU got busier than when it was admitted) it ends at once with
        :class:`DeadlineExceeded` instead of waiting or burning the rest of its deadline."""
        in_range = mv.input_range or mv.value_range
        if tile is None:
            lr = images.to_model_input(rgb, input_range=in_range)[None]
            sr = (await self._backend.infer(mv.name, mv.version, {mv.input_name: lr}))[mv.output_name][0]
            del lr
            await _maybe_off_loop(lambda: _quantize_rows(out[:, :, :3], sr, value_range=mv.value_range),
                                  size=sr.size)
            return
        layout = tiling.plan(rgb.shape[0], rgb.shape[1], tile=tile, overlap=overlap)

        async def infer(places: list[tiling.Place]) -> np.ndarray:
            lr = await _maybe_off_loop(lambda: tiling.cut(rgb, places, tile=tile, input_range=in_range),
                                       size=len(places) * 3 * tile * tile)
            return (await self._backend.infer(mv.name, mv.version, {mv.input_name: lr}))[mv.output_name]

        batches = layout.batches(self._tiles_per_call(mv, tile))
        places = next(batches)
        pending: asyncio.Task[np.ndarray] | None = asyncio.ensure_future(infer(places))
        try:
            while pending is not None:
                while not (await asyncio.wait({pending}, timeout=_ON_TIME_CHECK_S))[0]:
                    self._check_on_time(mv, ticket, limit)
                sr = pending.result()
                following = next(batches, None)
                pending = None if following is None else asyncio.ensure_future(infer(following))
                await _maybe_off_loop(
                    lambda sr=sr, places=places: tiling.paste(sr, places, layout, out, scale=mv.scale,
                                                              value_range=mv.value_range),
                    size=sr.size)
                del sr
                self._admission.progress(ticket, len(places) * tile * tile)
                if following is not None:
                    self._check_on_time(mv, ticket, limit)
                places = following
        finally:
            if pending is not None:  # an error (or the deadline) stopped the loop
                pending.cancel()
                pending.add_done_callback(_retrieve)

    def _check_on_time(self, mv: ModelVersion, ticket: Ticket, limit: _Limit) -> None:
        """:class:`DeadlineExceeded` now if the request cannot finish in time at today's throughput."""
        needed, left = self._admission.expected_s(ticket), limit.remaining()
        if needed > left:
            raise DeadlineExceeded(
                f"model {mv.name!r} stopped this request early: it needs an estimated {needed:.1f} s more "
                f"(its own work and the work before it, at the throughput measured now), {left:.1f} s are "
                f"left ({limit.setting}); the gateway is busier than when it was admitted", model=mv.name)

    def _limit(self, mv: ModelVersion, timeout_s: float | None) -> _Limit:
        """A request's deadline: ``upscale_timeout_s`` or ``request_timeout_s``, or the client's own
        when that is sooner, counted from now."""
        seconds, setting = (self._settings.upscale_timeout_s, "upscale_timeout_s") \
            if mv.kind == "super-resolution" else (self._settings.request_timeout_s, "request_timeout_s")
        if timeout_s is not None and timeout_s < seconds:
            seconds, setting = max(timeout_s, 0.0), "the client's deadline"
        loop = asyncio.get_running_loop()
        return _Limit(at=loop.time() + seconds, seconds=seconds, setting=setting, loop=loop)

    @contextlib.contextmanager
    def _admit(self, mv: ModelVersion, *, units: float, nbytes: int,
               timeout_s: float | None) -> Iterator[tuple[Ticket, _Limit]]:
        """Prices the request (:mod:`ganserve.serve.admission`: refused at once when over a budget or
        estimated past its deadline) and holds its reservation while the block runs."""
        limit = self._limit(mv, timeout_s)
        charge_work(model=mv.name, seconds=self._admission.estimate_s(mv.name, units))  # rate limit
        with self._admission.admit(mv.name, units=units, nbytes=nbytes, deadline_s=limit.seconds,
                                   deadline_setting=limit.setting, deadline_at=limit.at) as ticket:
            yield ticket, limit

    @contextlib.asynccontextmanager
    async def _deadline(self, mv: ModelVersion, limit: _Limit) -> AsyncIterator[None]:
        """Runs the block under the request's deadline: past it, the work stops at its next await (the
        next batch or tile) and the request ends with :class:`DeadlineExceeded`."""
        try:
            async with asyncio.timeout_at(limit.at) as deadline:
                self._running.add(deadline)
                ordered = REQUEST_DEADLINE.set(limit.at)  # the backend may run work in deadline order
                try:
                    yield
                finally:
                    REQUEST_DEADLINE.reset(ordered)
                    self._running.discard(deadline)
        except TimeoutError:
            if self._aborted:
                raise NotReady("the gateway shut down before this request finished (shutdown_grace_s); "
                               "retry on another replica", model=mv.name) from None
            raise DeadlineExceeded(f"model {mv.name!r} did not answer within {limit.seconds:g} s "
                                   f"({limit.setting})", model=mv.name) from None


@dataclass(frozen=True)
class _Limit:
    """When a request must be done (event-loop time), and which limit set it."""

    at: float
    seconds: float
    setting: str
    loop: asyncio.AbstractEventLoop

    def remaining(self) -> float:
        return max(0.0, self.at - self.loop.time())


# --- validation helpers ---------------------------------------------------------------------------

def _int_in_range(value: object, *, name: str, lo: int, hi: int, setting: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgument(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        why = f" ({setting})" if setting else ""
        raise InvalidArgument(f"{name} must be in [{lo}, {hi}]{why}, got {value}")
    return int(value)


def _truncation(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < seeds.MIN_TRUNCATION:
        raise InvalidArgument(f"truncation must be a finite number >= {seeds.MIN_TRUNCATION}, got {value!r}")
    return float(value)


def _text_condition(prompt: object, prompt_b: object, mix: object, *, max_chars: int) -> TextCondition | None:
    """The prompt(s) and mix of a request, checked; None without a prompt."""
    if prompt is None:
        for name, value in (("prompt_b", prompt_b), ("mix", mix)):
            if value is not None:
                raise InvalidArgument(f"{name} needs a prompt (it mixes prompt_b into prompt)")
        return None
    prompt = _prompt(prompt, name="prompt", max_chars=max_chars)
    if prompt_b is None:
        if mix is not None:
            raise InvalidArgument("mix needs prompt_b (it is the weight of prompt_b against prompt)")
        return TextCondition(prompt)
    prompt_b = _prompt(prompt_b, name="prompt_b", max_chars=max_chars)
    if mix is None:
        mix = DEFAULT_MIX
    if isinstance(mix, bool) or not isinstance(mix, int | float) or not math.isfinite(mix) \
            or not 0.0 <= mix <= 1.0:
        raise InvalidArgument(f"mix must be a number in [0, 1] (0: prompt, 1: prompt_b), got {mix!r}")
    return TextCondition(prompt, prompt_b, float(mix))


def _prompt(value: object, *, name: str, max_chars: int) -> str:
    """Plain text of at most ``max_chars`` characters that is not blank after normalisation."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidArgument(f"{name} has {len(value)} characters; at most {max_chars} are served "
                              f"(max_prompt_chars)")
    for i, c in enumerate(value):
        category = unicodedata.category(c)
        if (category == "Cc" and c not in _PROMPT_WHITESPACE) or category == "Cs":
            what = "a control character" if category == "Cc" else "an unpaired surrogate"
            raise InvalidArgument(f"{name} holds {what} (U+{ord(c):04X}) at position {i}; prompts are "
                                  f"plain text")
    if is_blank(value):
        raise InvalidArgument(f"{name} is empty or blank")
    return value


def _vocabulary_warnings(mv: ModelVersion, condition: TextCondition | None) -> tuple[str, ...]:
    """For a text model that publishes the words it was trained on (``ganserve.vocabulary``): one
    warning per prompt and attribute (digit, colour, ...) that the prompt names no word of. The image
    is still made; the warning says why it may show nothing recognisable."""
    if condition is None or not mv.vocabulary:
        return ()
    warnings = []
    for field, prompt in (("prompt", condition.prompt), ("prompt_b", condition.prompt_b)):
        if prompt is None:
            continue
        for attribute, values in mv.vocabulary.items():
            if not _words_pattern(tuple(w for words in values.values() for w in words)).search(prompt.lower()):
                known = ", ".join(words[0] for words in values.values())
                warnings.append(f"{field} names no {attribute} that model {mv.name!r} was trained on ({known}; "
                                f"synonyms in GET /models); the image may show none")
    return tuple(warnings)


@functools.lru_cache(maxsize=64)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``words`` as a whole word (not inside another word: "one" is not in "someone")."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _levels(mv: ModelVersion, levels: object) -> tuple[str, ...]:
    """The outputs a ``levels`` request returns (each level's image, coarse to fine); () without it."""
    if levels is None or levels is False:
        return ()
    if levels is not True:
        raise InvalidArgument(f"levels must be a boolean, got {type(levels).__name__}")
    if not mv.level_outputs:
        raise InvalidArgument(f"model {mv.name!r} has no levels: levels needs a pyramid model (a Laplacian "
                              f"pyramid such as lapgan, whose ensemble outputs each level's image)", model=mv.name)
    return mv.level_outputs


def _format(value: str | None, *, allowed: Sequence[ImageFormat]) -> ImageFormat:
    if value is None:
        return "png"
    if value not in allowed:
        raise InvalidArgument(f"format must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _provenance(mv: ModelVersion, *, seed: int | None, truncation: float | None) -> dict[str, str]:
    """Text chunks that let anyone reproduce an image from the file alone."""
    text = {"Software": "ganserve", "ganserve.model": mv.name, "ganserve.version": str(mv.version)}
    if seed is not None:
        text["ganserve.seed"] = str(seed)
    if truncation is not None:
        text["ganserve.truncation"] = repr(truncation)
    return text


def _retrieve(task: asyncio.Future) -> None:
    """Marks an abandoned task's exception as seen (asyncio would log it as never retrieved)."""
    if not task.cancelled():
        task.exception()


def _fixed_tile(mv: ModelVersion) -> int | None:
    """The tile side a model's config.pbtxt fixes (``lr`` dims ``[3, T, T]``), None where dynamic."""
    dims = next(t.dims for t in mv.inputs if t.name == mv.input_name)
    return dims[1] if len(dims) == 3 and dims[1] > 0 else None


def _quantize_rows(out: np.ndarray, x: np.ndarray, *, value_range: tuple[float, float], rows: int = 256) -> None:
    """``float [C, H, W]`` -> ``out`` (``uint8 [H, W, C]``), ``rows`` rows at a time (temporaries stay small)."""
    for y in range(0, x.shape[1], rows):
        images.quantize_into(out[y:y + rows], x[:, y:y + rows], value_range=value_range)


_ON_TIME_CHECK_S = 0.5            # how often a waiting upscale checks it can still finish in time
_UPLOAD_COPIES = 2                 # an upload's bytes: the body's chunks and the joined upload
_DECODE_BYTES_PER_PIXEL = 32       # decoding: Pillow's image(s) and conversions (16-bit: decoded twice, widened)
_RESPONSE_COPIES = 3               # an encoded image, and its copies in the response (base64, protobuf)
_REQUEST_BYTES = 64 * 1024         # what any request holds besides its images (parsing, state)


def _generated_bytes(mv: ModelVersion, n: int) -> int:
    """Peak memory of ``n`` generated images: float outputs (and their merged batch), uint8 pixels,
    encoded files and their copies in the response."""
    values = (mv.channels or 3) * (mv.image_size or 64) ** 2
    return n * (values * 4 * 2 + values * (1 + _RESPONSE_COPIES) + (mv.latent_dim or 0) * 4) + _REQUEST_BYTES


def _lr_pixels(height: int, width: int, *, tile: int | None, overlap: int) -> int:
    """The work of an upscale: LR pixels the model runs on (every tile whole, overlaps included)."""
    if tile is None:
        return height * width
    layout = tiling.plan(height, width, tile=tile, overlap=overlap)
    return layout.count * tile * tile


def _upscale_bytes(mv: ModelVersion, height: int, width: int, *, tile: int | None, tiles_per_call: int) -> int:
    """Peak memory of one upscale besides its upload: decoding, the decoded image, the output image
    (4 channels at most), its file and the file's copies in the response, and the float tiles of two
    backend calls in flight (inputs and outputs) with the quantisation temporaries of one."""
    s2 = mv.scale * mv.scale
    out = s2 * height * width * 4
    side = tile or 0
    tile_values = 3 * side * side * tiles_per_call if tile is not None else 3 * height * width
    floats = 2 * tile_values * 4 * (1 + s2) + tile_values * s2 * 4
    return height * width * _DECODE_BYTES_PER_PIXEL + out * (1 + _RESPONSE_COPIES) + floats + _REQUEST_BYTES


async def _latents(image_seeds: list[int], *, latent_dim: int, truncation: float | None) -> np.ndarray:
    """z for each seed; with truncation in a thread (its redraw loop can take milliseconds per image)."""
    work = functools.partial(seeds.latents, image_seeds, latent_dim=latent_dim, truncation=truncation)
    return work() if truncation is None else await asyncio.to_thread(work)


async def _maybe_off_loop(work: Callable[[], T], *, size: int) -> T:
    """Runs small work inline (a thread hop costs more than it) and large work (``size``: pixels or
    bytes) in a thread, so that big images never stall the event loop. A span of the request's trace
    when tracing is on."""
    with span(SPAN_NAME_IMAGE_WORK, **{"code.function": getattr(getattr(work, "func", work), "__name__", "work"),
                                       "ganserve.size": size}):
        if size <= _INLINE_MAX_SIZE:
            return work()
        return await asyncio.to_thread(work)


__all__ = ["EncodedImage", "GatewayService", "GenerateResult", "InterpolateResult", "SeededImage",
           "TextCondition", "UpscaleResult"]
