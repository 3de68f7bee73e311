"""JSON bodies of the HTTP API (also its OpenAPI schema). Ranges are checked by the service, with
the limits of the running gateway; the descriptions give the defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ganserve.serve.seeds import MIN_TRUNCATION

_REQUEST = ConfigDict(extra="forbid", strict=True)
# Ranges are documented in the schema (the ones that depend on settings are filled in by
# create_app) and enforced by the service, the one place that validates for HTTP and gRPC alike.
_SEED = {"minimum": 0}  # maximum 2**64 - 1 (not written: OpenAPI tools hold bounds as floats)
_TRUNCATION = {"minimum": MIN_TRUNCATION}

StillFormat = Literal["png", "jpeg"]
AnyFormat = Literal["png", "jpeg", "gif", "apng"]


class GenerateRequest(BaseModel):
    model_config = _REQUEST

    model: str | None = Field(None, description="model name; default: the only loaded model of the kind")
    version: int | None = Field(None, description="model version; default: the latest loaded")
    n: int = Field(1, description="number of images, 1 .. max_images_per_request",
                   json_schema_extra={"minimum": 1})
    seed: int | None = Field(None, description="image i gets seed + i (unsigned 64-bit); default: drawn",
                             json_schema_extra=_SEED)
    truncation: float | None = Field(None, description=f">= {MIN_TRUNCATION}: latent components beyond it are redrawn",
                                     json_schema_extra=_TRUNCATION)
    prompt: str | None = Field(None, description="text prompt: needs a text-conditional model (the only one "
                                                 "loaded when model is not given); 1 .. max_prompt_chars "
                                                 "characters, not blank, no control characters")
    prompt_b: str | None = Field(None, description="a second prompt, mixed into prompt's text embedding "
                                                   "(needs prompt)")
    mix: float | None = Field(None, description="weight of prompt_b: embedding (1 - mix) * e(prompt) + "
                                                "mix * e(prompt_b); 0 .. 1, default 0.5 (needs prompt_b)",
                              json_schema_extra={"minimum": 0, "maximum": 1})
    format: StillFormat | None = Field(None, description="image format; default png")
    levels: bool | None = Field(None, description="pyramid models (lapgan): each image also comes with every "
                                                  "level's image, coarse to fine, at its own size (JSON only); "
                                                  "other models refuse it")


class InterpolateRequest(BaseModel):
    model_config = _REQUEST

    model: str | None = Field(None, description="model name; default: the only loaded generator")
    version: int | None = Field(None, description="model version; default: the latest loaded")
    seed_a: int | None = Field(None, description="seed of the first frame; default: drawn",
                               json_schema_extra=_SEED)
    seed_b: int | None = Field(None, description="seed of the last frame; default: drawn",
                               json_schema_extra=_SEED)
    frames: int | None = Field(None, description="frames, both ends included: 2 .. "
                                                 "max_interpolation_frames (default 8)",
                               json_schema_extra={"minimum": 2})
    truncation: float | None = Field(None, description=f">= {MIN_TRUNCATION}: latent components beyond it are redrawn",
                                     json_schema_extra=_TRUNCATION)
    format: AnyFormat | None = Field(None, description="png/jpeg: one image per frame; gif/apng: one "
                                                       "animated image; default png")
    frame_duration_ms: int | None = Field(None, description="animation frame duration in ms (default 100)",
                                          json_schema_extra={"minimum": 1, "maximum": 60_000})


class ImageOut(BaseModel):
    media_type: str
    data: str = Field(description="the image file, base64")


class SeededImageOut(ImageOut):
    seed: int
    levels: list[ImageOut] | None = Field(None, description="with levels: every level's image at its own size, "
                                                             "coarse to fine (the last has this image's pixels); "
                                                             "absent otherwise")


class GenerateResponse(BaseModel):
    model: str
    version: int
    images: list[SeededImageOut]
    warnings: list[str] = Field(description="e.g. a prompt naming no digit or colour the text model was trained on "
                                            "(also in the X-Ganserve-Warning header); empty when none")


class InterpolateResponse(BaseModel):
    model: str
    version: int
    seed_a: int
    seed_b: int
    t: list[float] = Field(description="position of each frame on the walk, 0 .. 1")
    frames: list[ImageOut] = Field(description="one image per frame (still formats); else empty")
    animation: ImageOut | None = Field(description="the animated image (gif, apng); else null")


class UpscaleResponse(BaseModel):
    model: str
    version: int
    image: ImageOut


class ModelStepOut(BaseModel):
    model: str
    version: int


class ModelOut(BaseModel):
    name: str
    version: int
    kind: str
    is_default: bool = Field(description="what a request of this kind that names no model gets (the only "
                                         "model of its kind, or the default_models setting's)")
    max_batch_size: int
    value_range: tuple[float, float] | None = Field(description="output pixel range; null for a text encoder")
    latent_dim: int | None
    channels: int | None
    image_size: int | None
    scale: int | None
    tokenizer: str | None = Field(description="text models: the tokenizer the gateway runs on prompts")
    max_tokens: int | None = Field(description="text models: token ids per prompt (longer prompts are cut)")
    embedding_dim: int | None = Field(description="text models: length of the text embedding")
    vocabulary: dict[str, dict[str, list[str]]] | None = Field(
        description="text models: the words their training captions used, per attribute and value "
                    "(e.g. digit 7: seven, 7); null when the model does not publish them")
    steps: list[ModelStepOut] = Field(description="an ensemble's steps in the order they run; else empty")
    metadata: dict[str, str]


class ModelProblemOut(BaseModel):
    model: str
    version: int | None
    message: str


class ModelsResponse(BaseModel):
    models: list[ModelOut] = Field(description="every loaded model version")
    problems: list[ModelProblemOut] = Field(description="models that failed to load, and why")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. model_not_found")
    message: str
    request_id: str = Field("", description="the request's id, as in its X-Request-ID header")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Status(BaseModel):
    status: str
