"""The client's one core: each operation of the API as a protocol-neutral :class:`Call` plus the parser of
its reply, shared by the sync and async clients over HTTP and gRPC.

A transport turns a :class:`Call` into an HTTP request or a gRPC message, and its answer into a *reply*:
the HTTP JSON body of docs/gateway.md with every image's ``data`` as bytes (the gRPC transport builds
the same dict from the response message). The parsers here turn a reply into the result dataclasses.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from PIL import Image

from ganserve.client.results import (
    GeneratedImage,
    ImageFile,
    Interpolation,
    Model,
    ModelProblem,
    Models,
    ModelStep,
    UpscaledImage,
)

T = TypeVar("T")
Reply = dict[str, Any]
ImageInput = str | os.PathLike[str] | bytes | Image.Image

# leading bytes -> media type of the upload (the gateway sniffs the file itself; HTTP needs a Content-Type)
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"))


@dataclass(frozen=True)
class Upload:
    data: bytes
    media_type: str | None  # None: not a format the client recognises (the gateway decides)


@dataclass(frozen=True)
class Call:
    """One request: the endpoint, its parameters that are set (HTTP JSON or query; gRPC message fields of
    the same names) and, for ``upscale``, the image."""

    endpoint: str  # generate | interpolate | upscale | models
    fields: dict[str, Any] = field(default_factory=dict)
    upload: Upload | None = None


@dataclass(frozen=True)
class Operation(Generic[T]):
    call: Call
    parse: Callable[[Reply], T]


def _given(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _file(image: Reply) -> ImageFile:
    return ImageFile(data=image["data"], media_type=image["media_type"])


def generate(n: int = 1, *, seed: int | None = None, truncation: float | None = None, prompt: str | None = None,
             prompt_b: str | None = None, mix: float | None = None, model: str | None = None,
             version: int | None = None, format: str | None = None,
             levels: bool | None = None) -> Operation[list[GeneratedImage]]:
    """``n`` images; image *i* gets seed ``seed + i`` (``seed`` unset: drawn by the gateway).

    truncation: >= 0.05, latent components beyond it are redrawn; prompt / prompt_b / mix: text to image
    (``prompt_b`` mixed in with weight ``mix``, default 0.5); model / version: default the only loaded
    model of the needed kind, its latest version; format: "png" (default) or "jpeg"; levels: a pyramid
    model's (lapgan) every level too, in each image's ``levels``.
    Returns one :class:`GeneratedImage` per seed."""

    def parse(reply: Reply) -> list[GeneratedImage]:
        return [GeneratedImage(data=i["data"], media_type=i["media_type"], seed=i["seed"], model=reply["model"],
                               version=reply["version"], levels=[_file(x) for x in i.get("levels") or ()])
                for i in reply["images"]]

    fields = _given(model=model, version=version, n=n, seed=seed, truncation=truncation, prompt=prompt,
                    prompt_b=prompt_b, mix=mix, format=format, levels=levels)
    return Operation(Call("generate", fields), parse)


def interpolate(seed_a: int | None = None, seed_b: int | None = None, *, frames: int = 8,
                truncation: float | None = None, model: str | None = None, version: int | None = None,
                format: str | None = None, frame_duration_ms: int | None = None) -> Operation[Interpolation]:
    """A spherical walk from ``seed_a``'s latent vector to ``seed_b``'s in ``frames`` steps (both ends
    included; an unset seed is drawn). format "png" (default) / "jpeg": the frames; "gif" / "apng": one
    looping animation (``frame_duration_ms`` per frame, default 100). Returns an :class:`Interpolation`."""

    def parse(reply: Reply) -> Interpolation:
        animation = reply.get("animation")
        return Interpolation(model=reply["model"], version=reply["version"], seed_a=reply["seed_a"],
                             seed_b=reply["seed_b"], t=list(reply["t"]), frames=[_file(f) for f in reply["frames"]],
                             animation=_file(animation) if animation else None)

    fields = _given(model=model, version=version, seed_a=seed_a, seed_b=seed_b, frames=frames,
                    truncation=truncation, format=format, frame_duration_ms=frame_duration_ms)
    return Operation(Call("interpolate", fields), parse)


def upload(image: ImageInput) -> Upload:
    """An image to send: a path (read), a file's bytes (as they are) or a PIL image (encoded as PNG)."""
    if isinstance(image, Image.Image):
        out = io.BytesIO()
        image.save(out, format="PNG")
        return Upload(out.getvalue(), "image/png")
    data = bytes(image) if isinstance(image, bytes | bytearray | memoryview) else Path(image).read_bytes()
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Upload(data, "image/webp")
    return Upload(data, next((media for magic, media in _SIGNATURES if data.startswith(magic)), None))


def upscale(image: ImageInput, *, tile_size: int | None = None, tile_overlap: int | None = None,
            model: str | None = None, version: int | None = None, format: str | None = None,
            ) -> Operation[UpscaledImage]:
    """``image`` (a path, a file's bytes or a PIL image) through a super-resolution model.

    tile_size / tile_overlap: LR pixels per tile side and shared by neighbouring tiles (default: the
    model's); format: "png" (default) or "jpeg". Returns an :class:`UpscaledImage`."""

    def parse(reply: Reply) -> UpscaledImage:
        return UpscaledImage(data=reply["image"]["data"], media_type=reply["image"]["media_type"],
                             model=reply["model"], version=reply["version"])

    fields = _given(model=model, version=version, format=format, tile_size=tile_size, tile_overlap=tile_overlap)
    return Operation(Call("upscale", fields, upload(image)), parse)


def _model(m: Reply) -> Model:
    value_range = m.get("value_range")
    return Model(name=m["name"], version=m["version"], kind=m["kind"], max_batch_size=m["max_batch_size"],
                 is_default=bool(m.get("is_default", False)),
                 value_range=tuple(value_range) if value_range else None, latent_dim=m.get("latent_dim"),
                 channels=m.get("channels"), image_size=m.get("image_size"), scale=m.get("scale"),
                 tokenizer=m.get("tokenizer"), max_tokens=m.get("max_tokens"),
                 embedding_dim=m.get("embedding_dim"),
                 steps=tuple(ModelStep(s["model"], s["version"]) for s in m.get("steps") or ()),
                 metadata=dict(m.get("metadata") or {}))


def models() -> Operation[Models]:
    """The loaded model versions and the models that failed to load. Returns :class:`Models`."""

    def parse(reply: Reply) -> Models:
        return Models(models=[_model(m) for m in reply["models"]],
                      problems=[ModelProblem(p["model"], p.get("version"), p["message"]) for p in reply["problems"]])

    return Operation(Call("models"), parse)
