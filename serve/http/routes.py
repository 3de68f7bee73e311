"""The HTTP endpoints. Each one: parse, call the service, shape the response. Nothing else."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ganserve.serve.errors import InvalidArgument
from ganserve.serve.http import schemas
from ganserve.serve.http.errors import ERROR_RESPONSES
from ganserve.serve.http.negotiation import prefers
from ganserve.serve.http.uploads import UPLOAD_FIELD, read_upload
from ganserve.serve.images import MEDIA_TYPES, UPLOAD_MEDIA_TYPES
from ganserve.serve.metrics import CONTENT_TYPE
from ganserve.serve.repository import ModelVersion
from ganserve.serve.runtime import Runtime
from ganserve.serve.service import EncodedImage


def _runtime(request: Request) -> Runtime:
    # read from the request, not a FastAPI dependency: solving one costs ~50 us per request
    return request.app.state.runtime


router = APIRouter()

_IMAGE_CONTENT = {MEDIA_TYPES[f]: {"schema": {"type": "string", "format": "binary"}} for f in MEDIA_TYPES}


def _b64(image: EncodedImage) -> dict[str, str]:
    return {"media_type": image.media_type, "data": base64.b64encode(image.data).decode("ascii")}


def _wants_raw(accept: str | None, media_type: str, *, count: int, instead: str = "") -> bool:
    """Raw image when ``accept`` (the header) prefers ``media_type`` to JSON; only possible for one
    image (``instead``: how the client can get one)."""
    if not prefers(accept, media_type):
        return False
    if count != 1:
        raise InvalidArgument(f"Accept: {media_type} returns one raw image; {instead}, or accept "
                              f"application/json")
    return True


@router.post("/generate", name="generate", summary="Generate images",
             responses={200: {"model": schemas.GenerateResponse, "content": _IMAGE_CONTENT,
                              "description": "JSON (default), or the raw image when Accept asks for "
                                             "image/png (or image/jpeg) and n = 1"}, **ERROR_RESPONSES})
async def generate(body: schemas.GenerateRequest, request: Request) -> Response:
    return await generate_response(_runtime(request), body, accept=request.headers.get("accept"))


async def generate_response(runtime: Runtime, body: schemas.GenerateRequest, *, accept: str | None) -> Response:
    """``POST /generate``'s answer: the route above and :mod:`ganserve.serve.http.direct` (the same
    endpoint without FastAPI's routing) both give it."""
    with runtime.metrics.track(protocol="http", endpoint="generate") as tracker:
        raw = _wants_raw(accept, MEDIA_TYPES[body.format or "png"], count=body.n, instead="ask for n = 1")
        if raw and body.levels:
            raise InvalidArgument("levels returns several images per seed; accept application/json")
        result = await runtime.service.generate(
            model=body.model, version=body.version, n=body.n, seed=body.seed, truncation=body.truncation,
            prompt=body.prompt, prompt_b=body.prompt_b, mix=body.mix, fmt=body.format, levels=body.levels)
        tracker.model = result.model
    headers = {"X-Ganserve-Model": result.model, "X-Ganserve-Model-Version": str(result.version),
               "X-Ganserve-Seed": ",".join(str(i.seed) for i in result.images)}
    if result.warnings:
        headers["X-Ganserve-Warning"] = " | ".join(result.warnings)
    if raw:
        image = result.images[0].image
        return Response(image.data, media_type=image.media_type, headers=headers)
    return JSONResponse({"model": result.model, "version": result.version,
                         "images": [{"seed": i.seed, **_b64(i.image),
                                     **({"levels": [_b64(x) for x in i.levels]} if i.levels else {})}
                                    for i in result.images],
                         "warnings": list(result.warnings)}, headers=headers)


@router.post("/interpolate", name="interpolate", summary="Walk the latent space between two seeds",
             responses={200: {"model": schemas.InterpolateResponse, "content": _IMAGE_CONTENT,
                              "description": "JSON (default), or the raw animation when Accept asks for "
                                             "image/gif or image/apng and format is gif or apng"},
                        **ERROR_RESPONSES})
async def interpolate(body: schemas.InterpolateRequest, request: Request) -> Response:
    runtime = _runtime(request)
    with runtime.metrics.track(protocol="http", endpoint="interpolate") as tracker:
        animated = body.format in ("gif", "apng")
        raw = _wants_raw(request.headers.get("accept"), MEDIA_TYPES[body.format or "png"], count=1 if animated else 2,
                         instead="use format gif or apng for one animated image")
        result = await runtime.service.interpolate(
            model=body.model, version=body.version, seed_a=body.seed_a, seed_b=body.seed_b,
            frames=body.frames, truncation=body.truncation, fmt=body.format,
            frame_duration_ms=body.frame_duration_ms)
        tracker.model = result.model
    headers = {"X-Ganserve-Model": result.model, "X-Ganserve-Model-Version": str(result.version),
               "X-Ganserve-Seed": f"{result.seed_a},{result.seed_b}"}
    if raw:
        return Response(result.images[0].data, media_type=result.images[0].media_type, headers=headers)
    return JSONResponse({
        "model": result.model, "version": result.version, "seed_a": result.seed_a, "seed_b": result.seed_b,
        "t": list(result.t), "frames": [] if result.animated else [_b64(i) for i in result.images],
        "animation": _b64(result.images[0]) if result.animated else None}, headers=headers)


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    **{media: {"schema": {"type": "string", "format": "binary"}} for media in UPLOAD_MEDIA_TYPES},
    "multipart/form-data": {"schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
        UPLOAD_FIELD: {"type": "string", "format": "binary"}}}},
}}}


@router.post("/upscale", name="upscale", summary="Upscale an image with a super-resolution model",
             openapi_extra=_UPLOAD_BODY,
             responses={200: {"model": schemas.UpscaleResponse, "content": _IMAGE_CONTENT,
                              "description": "JSON (default), or the raw image when Accept asks for it"},
                        **ERROR_RESPONSES})
async def upscale(request: Request,
                  model: Annotated[str | None, Query(description="model name")] = None,
                  version: Annotated[int | None, Query(description="model version")] = None,
                  format: Annotated[schemas.StillFormat | None, Query(description="png or jpeg")] = None,
                  tile_size: Annotated[int | None, Query(
                      description="LR tile side in pixels (default: the model's; within the gateway's "
                                  "upscale_min_tile_size .. upscale_max_tile_size)")] = None,
                  tile_overlap: Annotated[int | None, Query(
                      description="LR pixels neighbouring tiles share, 0 .. under half of tile_size "
                                  "(default: the model's)")] = None,
                  ) -> Response:
    runtime = _runtime(request)
    with runtime.metrics.track(protocol="http", endpoint="upscale") as tracker:
        raw = _wants_raw(request.headers.get("accept"), MEDIA_TYPES[format or "png"], count=1)

        async def upload() -> bytes:
            return await read_upload(request, max_bytes=runtime.settings.max_upload_bytes)

        declared = request.headers.get("content-length", "")
        result = await runtime.service.upscale(image=upload, model=model, version=version, fmt=format,
                                               tile_size=tile_size, tile_overlap=tile_overlap,
                                               upload_bytes=int(declared) if declared.isdigit() else None)
        tracker.model = result.model
    headers = {"X-Ganserve-Model": result.model, "X-Ganserve-Model-Version": str(result.version)}
    if raw:
        return Response(result.image.data, media_type=result.image.media_type, headers=headers)
    return JSONResponse({"model": result.model, "version": result.version, "image": _b64(result.image)},
                        headers=headers)


def _model_out(mv: ModelVersion, *, is_default: bool, metadata: dict[str, str]) -> dict:
    return {"name": mv.name, "version": mv.version, "kind": mv.kind, "is_default": is_default,
            "max_batch_size": mv.max_batch_size,
            "value_range": list(mv.value_range) if mv.value_range else None, "latent_dim": mv.latent_dim,
            "channels": mv.channels, "image_size": mv.image_size, "scale": mv.scale,
            "tokenizer": mv.tokenizer, "max_tokens": mv.max_tokens, "embedding_dim": mv.embedding_dim,
            "vocabulary": {a: {v: list(w) for v, w in values.items()} for a, values in mv.vocabulary.items()}
            if mv.vocabulary else None,
            "steps": [{"model": s.model, "version": s.version} for s in mv.steps], "metadata": metadata}


@router.get("/models", name="list_models", summary="Loaded models and load problems",
            response_model=schemas.ModelsResponse)
async def list_models(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    with runtime.metrics.track(protocol="http", endpoint="list_models"):
        service = runtime.service
        return JSONResponse({
            "models": [_model_out(mv, is_default=service.is_default(mv), metadata=service.public_metadata(mv))
                       for versions in service.repository().models.values() for mv in versions],
            "problems": [{"model": p.model, "version": p.version, "message": p.message}
                         for p in service.public_problems()]})


@router.get("/healthz", name="healthz", summary="Liveness", response_model=schemas.Status)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "live"})


@router.get("/readyz", name="readyz", summary="Readiness: models loaded and warmed up",
            response_model=schemas.Status, responses={503: {"model": schemas.Status}})
async def readyz(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    return JSONResponse({"status": runtime.readiness()}, status_code=200 if runtime.ready() else 503)


metrics_router = APIRouter()  # on the public port or the admin port (settings.metrics_endpoint)


@metrics_router.get("/metrics", name="metrics", summary="Prometheus metrics",
                    responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    return Response(_runtime(request).metrics.exposition(), media_type=CONTENT_TYPE)
