"""``ganserve.v1.Gateway``: translates messages to service calls and service errors to statuses."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from ganserve.serve import errors
from ganserve.serve.access.context import REQUEST_ID_HEADER, RequestContext, begin, end, request_id_from
from ganserve.serve.access.gate import Gate
from ganserve.serve.access.keys import presented_key
from ganserve.serve.access.log import log_access
from ganserve.serve.access.tracing import Tracing
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.metrics import Metrics
from ganserve.serve.repository import ModelVersion
from ganserve.serve.service import EncodedImage, GatewayService

# The one mapping from service errors to gRPC status codes.
GRPC_CODE: dict[type[errors.ServiceError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.NotReady: grpc.StatusCode.UNAVAILABLE,
    # A Triton failure is not the client's fault and not transient (NotReady is the retryable one).
    errors.UpstreamError: grpc.StatusCode.INTERNAL,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
ERROR_CODE_KEY = "ganserve-error-code"  # trailing metadata: the same code as the HTTP error body
WARNING_KEY = "ganserve-warning"        # trailing metadata, once per warning (the HTTP JSON's "warnings")
_FORMATS = {pb.IMAGE_FORMAT_UNSPECIFIED: None, pb.IMAGE_FORMAT_PNG: "png", pb.IMAGE_FORMAT_JPEG: "jpeg",
            pb.IMAGE_FORMAT_GIF: "gif", pb.IMAGE_FORMAT_APNG: "apng"}

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes protobuf could not parse, in place of the message (see :func:`add_to_server`)."""

    message_type: str   # the message it should have been, e.g. "ganserve.v1.UpscaleRequest"


def _rpc(endpoint: str) -> Callable[[Handler], Handler]:
    """Wraps a handler: the request's context and id (metadata ``x-request-id`` in, initial and trailing
    metadata out), the gate (API key, scope, rate limit), metrics, a :class:`Malformed` request ->
    INVALID_ARGUMENT, service errors -> the status their type maps to, and the access-log line."""

    def decorate(handler: Handler) -> Handler:
        route = f"/{pb.DESCRIPTOR.services_by_name['Gateway'].full_name}/{handler.__name__}"

        @functools.wraps(handler)
        async def wrapper(self: GatewayServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            call = RequestContext(request_id=request_id_from(metadata.get(REQUEST_ID_HEADER)), protocol="grpc",
                                  route=route, client=_peer(context.peer()))
            token = begin(call)
            start, status, response = time.perf_counter(), "OK", None
            trailing: list[tuple[str, str]] = [(REQUEST_ID_HEADER, call.request_id)]
            carrier = {k: v for k, v in metadata.items() if k in ("traceparent", "tracestate")}
            with self._tracing.request_span(route, carrier=carrier, **{
                    "rpc.system": "grpc", "rpc.method": handler.__name__, "ganserve.request_id": call.request_id}) as span:
                call.tracer, call.span = self._tracing.tracer, span
                try:
                    await context.send_initial_metadata(((REQUEST_ID_HEADER, call.request_id),))
                    with self._metrics.track(protocol="grpc", endpoint=endpoint) as tracker:
                        self._gate.enter(call, endpoint=endpoint, credential=presented_key(
                            authorization=metadata.get("authorization", ""), api_key=metadata.get("x-api-key", "")))
                        if isinstance(request, Malformed):
                            raise errors.InvalidArgument(f"the request is not a valid {request.message_type} "
                                                         f"message: protobuf could not parse its bytes")
                        response = await handler(self, request, context)
                        tracker.model = getattr(response, "model", "")
                        trailing += _rate_limit_metadata(call)
                        context.set_trailing_metadata((*(context.trailing_metadata() or ()), *trailing))
                        return response
                except errors.ServiceError as exc:
                    if context.cancelled() or context.done():  # the client left, or its deadline passed:
                        status = "CANCELLED"
                        raise asyncio.CancelledError from None  # no one to tell (an abort would log an error)
                    status = GRPC_CODE[type(exc)].name
                    trailing.append((ERROR_CODE_KEY, exc.code))
                    if isinstance(exc, errors.RateLimited):
                        trailing += [(k.lower(), v) for k, v in exc.headers.items()]
                    else:
                        trailing += _rate_limit_metadata(call)
                    context.set_trailing_metadata(tuple(trailing))
                    await context.abort(GRPC_CODE[type(exc)], exc.message)
                except asyncio.CancelledError:
                    status = "CANCELLED"
                    raise
                except Exception:
                    status = "INTERNAL"
                    raise
                finally:
                    if self._access_log:
                        log_access(call, status=status, duration_s=time.perf_counter() - start,
                                   bytes_in=0 if isinstance(request, Malformed) else request.ByteSize(),
                                   bytes_out=response.ByteSize() if response is not None else 0)
                    if span is not None:
                        span.set_attributes({"rpc.grpc.status_code": status, "ganserve.model": call.model,
                                             "ganserve.key_id": call.key_id})
                    end(token)

        return wrapper

    return decorate


def _peer(peer: str | None) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1:5000`` (``ipv6:[::1]:5000`` -> ``[::1]:5000``)."""
    if not peer:
        return ""
    scheme, sep, rest = peer.partition(":")
    return rest if sep and scheme in ("ipv4", "ipv6") else peer


def _rate_limit_metadata(call: RequestContext) -> list[tuple[str, str]]:
    if call.bucket is None:
        return []
    return [(k.lower(), v) for k, v in call.bucket.headers(time.monotonic()).items()]


def _format(value: int) -> str | None:
    if value not in _FORMATS:
        raise errors.InvalidArgument(f"format {value} is not an ImageFormat")
    return _FORMATS[value]


def _image(image: EncodedImage) -> pb.Image:
    return pb.Image(data=image.data, media_type=image.media_type)


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds left of the client's deadline, if it set one."""
    return context.time_remaining()


def model_message(mv: ModelVersion, *, is_default: bool, metadata: dict[str, str]) -> pb.Model:
    return pb.Model(name=mv.name, version=mv.version, kind=mv.kind, is_default=is_default,
                    max_batch_size=mv.max_batch_size,
                    value_range=list(mv.value_range or ()), latent_dim=mv.latent_dim or 0,
                    channels=mv.channels or 0, image_size=mv.image_size or 0, scale=mv.scale or 0,
                    metadata=metadata, tokenizer=mv.tokenizer or "", max_tokens=mv.max_tokens or 0,
                    embedding_dim=mv.embedding_dim or 0,
                    steps=[pb.ModelStep(model=s.model, version=s.version) for s in mv.steps])


class GatewayServicer(pb_grpc.GatewayServicer):
    def __init__(self, *, service: GatewayService, metrics: Metrics, gate: Gate, access_log: bool = True,
                 tracing: Tracing | None = None) -> None:
        self._service, self._metrics, self._gate, self._access_log = service, metrics, gate, access_log
        self._tracing = tracing or Tracing()

    @_rpc("generate")
    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        result = await self._service.generate(
            model=request.model or None, version=_optional(request, "version"),
            n=request.n if request.HasField("n") else 1, seed=_optional(request, "seed"),
            truncation=_optional(request, "truncation"), prompt=_optional(request, "prompt"),
            prompt_b=_optional(request, "prompt_b"), mix=_optional(request, "mix"),
            fmt=_format(request.format), levels=_optional(request, "levels"), timeout_s=_deadline(context))
        if result.warnings:
            context.set_trailing_metadata(tuple((WARNING_KEY, w) for w in result.warnings))
        return pb.GenerateResponse(model=result.model, version=result.version, images=[
            pb.GeneratedImage(seed=i.seed, image=_image(i.image), levels=[_image(x) for x in i.levels])
            for i in result.images])

    @_rpc("interpolate")
    async def Interpolate(self, request: pb.InterpolateRequest,
                          context: grpc.aio.ServicerContext) -> pb.InterpolateResponse:
        result = await self._service.interpolate(
            model=request.model or None, version=_optional(request, "version"),
            seed_a=_optional(request, "seed_a"), seed_b=_optional(request, "seed_b"),
            frames=_optional(request, "frames"), truncation=_optional(request, "truncation"),
            fmt=_format(request.format), frame_duration_ms=_optional(request, "frame_duration_ms"),
            timeout_s=_deadline(context))
        response = pb.InterpolateResponse(model=result.model, version=result.version,
                                          seed_a=result.seed_a, seed_b=result.seed_b, t=list(result.t))
        if result.animated:
            response.animation.CopyFrom(_image(result.images[0]))
        else:
            response.frames.extend(_image(i) for i in result.images)
        return response

    @_rpc("upscale")
    async def Upscale(self, request: pb.UpscaleRequest,
                      context: grpc.aio.ServicerContext) -> pb.UpscaleResponse:
        result = await self._service.upscale(
            image=request.image.data, model=request.model or None, version=_optional(request, "version"),
            fmt=_format(request.format), tile_size=_optional(request, "tile_size"),
            tile_overlap=_optional(request, "tile_overlap"), timeout_s=_deadline(context))
        return pb.UpscaleResponse(model=result.model, version=result.version, image=_image(result.image))

    @_rpc("list_models")
    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        service = self._service
        return pb.ListModelsResponse(
            models=[model_message(mv, is_default=service.is_default(mv), metadata=service.public_metadata(mv))
                    for versions in service.repository().models.values() for mv in versions],
            problems=[pb.ModelProblem(model=p.model, version=p.version, message=p.message)
                      for p in service.public_problems()])


def _parse(message: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """A request deserializer that does not raise: the message, or :class:`Malformed`."""
    message_type = message.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | Malformed:
        try:
            return message.FromString(data)
        except DecodeError:
            return Malformed(message_type)

    return parse


def add_to_server(servicer: GatewayServicer, server: grpc.aio.Server) -> None:
    """Registers the Gateway's (unary) methods, as the generated ``add_GatewayServicer_to_server``
    does, but with :func:`_parse` as request deserializer: grpc.aio answers a deserializer's exception
    with UNKNOWN and logs its traceback, where bytes that are not the request message are the
    client's error (INVALID_ARGUMENT, answered by :func:`_rpc`)."""
    service = pb.DESCRIPTOR.services_by_name["Gateway"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_parse(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString)
        for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
