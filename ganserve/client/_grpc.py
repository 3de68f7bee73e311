"""The gRPC transports (``grpc`` and ``grpc.aio``) over ``ganserve.v1.Gateway``: a :class:`Call` as a
request message, the response message as the same reply dict as HTTP's JSON, failures as
:mod:`ganserve.client.errors` (status code + the ``ganserve-error-code`` trailer)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from ganserve.client import errors
from ganserve.client._operations import Call, Reply
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

ERROR_CODE_KEY = "ganserve-error-code"
_METHODS = {"generate": ("Generate", pb.GenerateRequest), "interpolate": ("Interpolate", pb.InterpolateRequest),
            "upscale": ("Upscale", pb.UpscaleRequest), "models": ("ListModels", pb.ListModelsRequest)}
_FORMATS = {"png": pb.IMAGE_FORMAT_PNG, "jpeg": pb.IMAGE_FORMAT_JPEG, "gif": pb.IMAGE_FORMAT_GIF,
            "apng": pb.IMAGE_FORMAT_APNG}
# no client-side message size limit: the gateway's own limits apply (an upscale answer is large)
_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def request(call: Call) -> tuple[str, Message]:
    """The method name and request message of ``call``; a value protobuf cannot hold (a negative seed, an
    unknown format) is an :class:`~ganserve.client.errors.InvalidArgument` naming the field, as the
    gateway's 422 would be over HTTP."""
    method, message_type = _METHODS[call.endpoint]
    message = message_type()
    fields = dict(call.fields)
    if call.upload is not None:
        fields["image"] = pb.Image(data=call.upload.data, media_type=call.upload.media_type or "")
    for name, value in fields.items():
        try:
            if name == "format":
                if value not in _FORMATS:
                    raise ValueError(f"{value!r} is not one of {', '.join(_FORMATS)}")
                value = _FORMATS[value]
            if isinstance(value, Message):
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError) as exc:
            raise errors.InvalidArgument(f"{name}: {exc}", grpc_code="INVALID_ARGUMENT") from None
    return method, message


def _image(image: pb.Image) -> Reply:
    return {"data": image.data, "media_type": image.media_type}


def _model(m: pb.Model) -> Reply:
    """A ``Model`` message as ``GET /models`` lists it (fields that do not apply: None, not 0 or empty)."""
    return {"name": m.name, "version": m.version, "kind": m.kind, "max_batch_size": m.max_batch_size,
            "is_default": m.is_default,
            "value_range": list(m.value_range) or None, "latent_dim": m.latent_dim or None,
            "channels": m.channels or None, "image_size": m.image_size or None, "scale": m.scale or None,
            "tokenizer": m.tokenizer or None, "max_tokens": m.max_tokens or None,
            "embedding_dim": m.embedding_dim or None, "metadata": dict(m.metadata),
            "steps": [{"model": s.model, "version": s.version} for s in m.steps]}


def reply(endpoint: str, m: Any) -> Reply:
    """The response message as the reply dict of the HTTP API's JSON."""
    if endpoint == "generate":
        return {"model": m.model, "version": m.version,
                "images": [{"seed": i.seed, **_image(i.image), "levels": [_image(x) for x in i.levels]}
                           for i in m.images]}
    if endpoint == "interpolate":
        return {"model": m.model, "version": m.version, "seed_a": m.seed_a, "seed_b": m.seed_b, "t": list(m.t),
                "frames": [_image(f) for f in m.frames],
                "animation": _image(m.animation) if m.HasField("animation") else None}
    if endpoint == "upscale":
        return {"model": m.model, "version": m.version, "image": _image(m.image)}
    return {"models": [_model(model) for model in m.models],
            "problems": [{"model": p.model, "version": p.version if p.HasField("version") else None,
                          "message": p.message} for p in m.problems]}


def failure(exc: grpc.RpcError, *, url: str, timeout: float | None) -> errors.GanserveError:
    code = dict(exc.trailing_metadata() or ()).get(ERROR_CODE_KEY)  # type: ignore[attr-defined]
    status: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    details = exc.details() or status.name  # type: ignore[attr-defined]
    if status is grpc.StatusCode.DEADLINE_EXCEEDED and code is None:  # the client's own deadline
        details = f"no answer from {url} within the client's timeout of {timeout} s"
    return errors.from_grpc(status.name, details, code=code, url=url)


def target(url: str) -> str:
    """The channel target of a ``grpc://host:port`` URL."""
    return url.removeprefix("grpc://")


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


class GrpcTransport:
    def __init__(self, url: str, *, timeout: float | None, api_key: str | None = None) -> None:
        self.url, self._timeout, self._metadata = url, timeout, auth_metadata(api_key)
        self._channel = grpc.insecure_channel(target(url), options=_OPTIONS)
        self._stub = pb_grpc.GatewayStub(self._channel)

    def send(self, call: Call) -> Reply:
        method, message = request(call)
        try:
            response = getattr(self._stub, method)(message, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise failure(exc, url=self.url, timeout=self._timeout) from None
        return reply(call.endpoint, response)

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcTransport:
    """Its channel is opened by the first call, in the event loop that makes it."""

    def __init__(self, url: str, *, timeout: float | None, api_key: str | None = None) -> None:
        self.url, self._timeout, self._metadata = url, timeout, auth_metadata(api_key)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.GatewayStub | None = None

    async def send(self, call: Call) -> Reply:
        method, message = request(call)
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(target(self.url), options=_OPTIONS)
            self._stub = pb_grpc.GatewayStub(self._channel)
        try:
            response = await getattr(self._stub, method)(message, timeout=self._timeout,
                                                         metadata=self._metadata)
        except grpc.RpcError as exc:
            raise failure(exc, url=self.url, timeout=self._timeout) from None
        return reply(call.endpoint, response)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
