"""gRPC end to end, through a real grpc.aio channel: same semantics and bytes as HTTP, errors,
health, and a call made from reflection alone (as generic tools such as grpcurl do)."""

import asyncio
import base64
import logging

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.grpc.servicer import ERROR_CODE_KEY
from tests.serve.helpers import RunningGateway


def _call(gw: RunningGateway, method: str, request, **kwargs):
    async def main():
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            return await getattr(pb_grpc.GatewayStub(channel), method)(request, timeout=30, **kwargs)

    return asyncio.run(main())


def _http_images(gw: RunningGateway, body: dict) -> list[bytes]:
    r = httpx.post(f"{gw.http_url}/generate", json=body, timeout=30)
    return [base64.b64decode(i["data"]) for i in r.json()["images"]]


def test_generate_gives_the_same_bytes_as_http(gateway: RunningGateway) -> None:
    response = _call(gateway, "Generate", pb.GenerateRequest(n=3, seed=41, truncation=0.7))
    assert (response.model, response.version) == ("tiny", 2)
    assert [i.seed for i in response.images] == [41, 42, 43]
    assert response.images[0].image.media_type == "image/png"
    assert [i.image.data for i in response.images] == _http_images(
        gateway, {"n": 3, "seed": 41, "truncation": 0.7})


def test_unset_n_means_one_and_seeds_are_drawn(gateway: RunningGateway) -> None:
    response = _call(gateway, "Generate", pb.GenerateRequest(model="tiny", version=1))
    (image,) = response.images
    assert response.version == 1
    again = _call(gateway, "Generate", pb.GenerateRequest(model="tiny", version=1, seed=image.seed))
    assert again.images[0].image.data == image.image.data


def test_interpolate(gateway: RunningGateway) -> None:
    frames = _call(gateway, "Interpolate", pb.InterpolateRequest(seed_a=3, seed_b=9, frames=5))
    assert list(frames.t) == [0.0, 0.25, 0.5, 0.75, 1.0] and len(frames.frames) == 5
    assert not frames.HasField("animation")
    http = httpx.post(f"{gateway.http_url}/interpolate", json={"seed_a": 3, "seed_b": 9, "frames": 5}).json()
    assert [f.data for f in frames.frames] == [base64.b64decode(f["data"]) for f in http["frames"]]
    gif = _call(gateway, "Interpolate", pb.InterpolateRequest(frames=3, format=pb.IMAGE_FORMAT_GIF))
    assert gif.animation.media_type == "image/gif" and not gif.frames


def test_list_models(gateway: RunningGateway) -> None:
    response = _call(gateway, "ListModels", pb.ListModelsRequest())
    assert [(m.name, m.version, m.kind) for m in response.models] == [
        ("tiny", 1, "unconditional"), ("tiny", 2, "unconditional")]
    assert response.models[0].latent_dim == 8 and list(response.models[0].value_range) == [-1.0, 1.0]
    problems = {p.model: p for p in response.problems}
    assert set(problems) == {"garbage", "badconfig", "nolatent"}
    assert not problems["badconfig"].HasField("version") and problems["garbage"].version == 1


@pytest.mark.parametrize(("method", "request_", "code", "error_code", "message"), [
    ("Generate", pb.GenerateRequest(model="nope"), grpc.StatusCode.NOT_FOUND, "model_not_found", "'nope'"),
    ("Generate", pb.GenerateRequest(n=0), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "n must be"),
    ("Generate", pb.GenerateRequest(prompt="a red bird"), grpc.StatusCode.NOT_FOUND, "model_not_found",
     "no text-conditional model is loaded"),
    ("Generate", pb.GenerateRequest(format=pb.IMAGE_FORMAT_GIF), grpc.StatusCode.INVALID_ARGUMENT,
     "invalid_argument", "format must be one of png, jpeg"),
    ("Generate", pb.GenerateRequest(format=99), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
     "not an ImageFormat"),
    ("Interpolate", pb.InterpolateRequest(frames=1000), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
     "max_interpolation_frames"),
    ("Upscale", pb.UpscaleRequest(image=pb.Image(data=b"x")), grpc.StatusCode.NOT_FOUND, "model_not_found",
     "no super-resolution model is loaded"),
])
def test_errors_map_to_status_codes(gateway: RunningGateway, method: str, request_, code: grpc.StatusCode,
                                    error_code: str, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _call(gateway, method, request_)
    assert info.value.code() == code and message in info.value.details()
    assert (ERROR_CODE_KEY, error_code) in tuple(info.value.trailing_metadata())


def test_health_service(gateway: RunningGateway) -> None:
    async def main():
        async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return [(await stub.Check(health_pb2.HealthCheckRequest(service=s))).status
                    for s in ("", "ganserve.v1.Gateway")]

    assert asyncio.run(main()) == [health_pb2.HealthCheckResponse.SERVING] * 2


def test_a_call_built_from_reflection_alone(gateway: RunningGateway) -> None:
    """No generated code: discover the service, build the messages, call Generate."""

    async def main():
        async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="ganserve.v1.Gateway")]
            answers = [a async for a in stub.ServerReflectionInfo(iter(requests))]
            services = {s.name for s in answers[0].list_services_response.service}
            pool = descriptor_pool.DescriptorPool()
            for raw in answers[1].file_descriptor_response.file_descriptor_proto:
                pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
            method = pool.FindServiceByName("ganserve.v1.Gateway").methods_by_name["Generate"]
            request_cls = message_factory.GetMessageClass(method.input_type)
            response_cls = message_factory.GetMessageClass(method.output_type)
            call = channel.unary_unary("/ganserve.v1.Gateway/Generate",
                                       request_serializer=request_cls.SerializeToString,
                                       response_deserializer=response_cls.FromString)
            return services, await call(request_cls(seed=77), timeout=30)

    services, response = asyncio.run(main())
    assert {"ganserve.v1.Gateway", "grpc.health.v1.Health"} <= services
    assert response.images[0].seed == 77
    assert response.images[0].image.data == _http_images(gateway, {"seed": 77})[0]


def test_grpc_requests_are_counted(gateway: RunningGateway) -> None:
    _call(gateway, "Generate", pb.GenerateRequest(seed=5))
    assert 'endpoint="generate",model="tiny",outcome="ok",protocol="grpc"' in gateway.metrics_text()


@pytest.mark.parametrize("method", ["Generate", "Interpolate", "Upscale", "ListModels"])
def test_a_malformed_message_is_invalid_argument(gateway: RunningGateway, method: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Bytes that are no protobuf message (a cut-off varint): INVALID_ARGUMENT with our code and
    message, counted like any refused request, and no traceback in the log."""

    async def main():
        async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
            call = channel.unary_unary(f"/ganserve.v1.Gateway/{method}")  # no serializer: bytes as they are
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"\xff\xff\xff", timeout=30)
            return info.value

    with caplog.at_level(logging.DEBUG):
        error = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (f"the request is not a valid ganserve.v1.{method}Request message: protobuf "
                               f"could not parse its bytes")
    assert (ERROR_CODE_KEY, "invalid_argument") in tuple(error.trailing_metadata())
    assert not [r for r in caplog.records if r.exc_info or "DecodeError" in r.getMessage()]
    endpoint = {"ListModels": "list_models"}.get(method, method.lower())
    assert f'endpoint="{endpoint}",model="",outcome="invalid_argument",protocol="grpc"' in gateway.metrics_text()
