"""What the client returns: image files as the gateway encoded them (bytes kept, PIL image on demand,
provenance read from the file) and the model listing."""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/apng": ".png"}
# a JPEG / GIF comment is "key=value; key=value" (serve/images.py); a value may itself hold "; "
_COMMENT_SPLIT = re.compile(r"; (?=ganserve\.[\w.]+=)")


@dataclass(frozen=True)
class ImageFile:
    """One image file as the gateway sent it."""

    data: bytes = field(repr=False)  # the encoded file, byte for byte
    media_type: str    # e.g. "image/png"

    @cached_property
    def image(self) -> Image.Image:
        """The decoded image (the first frame of an animation)."""
        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image

    @cached_property
    def provenance(self) -> dict[str, str]:
        """The file's text: PNG tEXt/iTXt chunks, or the ``key=value; ...`` comment of a JPEG or GIF
        (``ganserve.model``, ``ganserve.version``, ``ganserve.seed``, ...)."""
        image = Image.open(io.BytesIO(self.data))
        text = getattr(image, "text", None)
        if text:
            return dict(text)
        comment = image.info.get("comment", b"")
        comment = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
        return dict(part.split("=", 1) for part in _COMMENT_SPLIT.split(comment) if "=" in part)

    @property
    def extension(self) -> str:
        """The usual file name suffix of ``media_type`` (".png", ".jpg", ".gif")."""
        return _EXTENSIONS.get(self.media_type, ".bin")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the file's bytes to ``path`` (through a temporary file in the same folder, so that the
        path never holds half a file) and returns it."""
        path = Path(path)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
            out.write(self.data)
        os.replace(out.name, path)
        return path


@dataclass(frozen=True)
class GeneratedImage(ImageFile):
    """An image of ``generate``."""

    seed: int
    model: str
    version: int
    # with levels=True (a pyramid model): each level's image at its own size, coarse to fine
    levels: list[ImageFile] = field(default_factory=list)


@dataclass(frozen=True)
class UpscaledImage(ImageFile):
    """The answer of ``upscale``."""

    model: str
    version: int


@dataclass(frozen=True)
class Interpolation:
    """The answer of ``interpolate``: ``frames`` for png/jpeg, one ``animation`` for gif/apng."""

    model: str
    version: int
    seed_a: int
    seed_b: int
    t: list[float]                     # each frame's position on the walk, 0 .. 1
    frames: list[ImageFile]            # empty for an animation
    animation: ImageFile | None        # gif / apng only


@dataclass(frozen=True)
class ModelStep:
    model: str
    version: int


@dataclass(frozen=True)
class Model:
    """One loaded model version (``GET /models``); fields that do not apply to its kind are None."""

    name: str
    version: int
    kind: str  # unconditional | text-conditional | super-resolution | text-encoder | text-conditional-generator
    max_batch_size: int
    is_default: bool = False  # what a request of its kind that names no model gets
    value_range: tuple[float, float] | None = None
    latent_dim: int | None = None
    channels: int | None = None
    image_size: int | None = None
    scale: int | None = None
    tokenizer: str | None = None
    max_tokens: int | None = None
    embedding_dim: int | None = None
    steps: tuple[ModelStep, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelProblem:
    """A model (or version) the gateway could not load, and why."""

    model: str
    version: int | None
    message: str


@dataclass(frozen=True)
class Models:
    """The answer of ``models()``."""

    models: list[Model]
    problems: list[ModelProblem]

    def named(self, name: str) -> list[Model]:
        """The loaded versions of model ``name``, oldest first."""
        return sorted((m for m in self.models if m.name == name), key=lambda m: m.version)
