"""ganserve.client against a real gateway: sync and async, over HTTP and gRPC, the same files, seeds and
models as the gateway's own HTTP answer."""

from __future__ import annotations

import base64
import inspect
import io

import httpx
import pytest
from PIL import Image

from ganserve.client import AsyncClient, Client, GeneratedImage, ImageFile, Models, UpscaledImage
from ganserve.client._client import Retries, endpoint
from ganserve.client.errors import ModelNotFound, NotReady, QueueFull
from tests.client.helpers import MODES, PROTOCOLS, call, direct, direct_images, direct_upscale, png, url
from tests.serve.helpers import RunningGateway

BOTH = pytest.mark.parametrize("protocol,mode", [(p, m) for p in PROTOCOLS for m in MODES])


@BOTH
def test_generate_gives_the_files_and_seeds_of_a_direct_call(gateway: RunningGateway, protocol: str,
                                                             mode: str) -> None:
    images = call(url(gateway, protocol), mode, "generate", 3, seed=41)
    assert all(isinstance(i, GeneratedImage) for i in images)
    assert [(i.seed, i.data) for i in images] == direct_images(gateway, {"n": 3, "seed": 41})
    assert {(i.model, i.version, i.media_type) for i in images} == {("tiny", 2, "image/png")}
    first = images[0]
    assert first.image.size == (8, 8) and first.image.mode == "L"
    assert first.provenance["ganserve.seed"] == "41" and first.provenance["ganserve.model"] == "tiny"


@BOTH
def test_text_to_image_as_jpeg_with_its_provenance(gateway: RunningGateway, protocol: str, mode: str) -> None:
    body = {"prompt": "a red bird; small", "prompt_b": "a blue fish", "mix": 0.25, "seed": 3, "n": 2,
            "format": "jpeg", "truncation": 0.9}
    images = call(url(gateway, protocol), mode, "generate", **body)
    assert [(i.seed, i.data) for i in images] == direct_images(gateway, body)
    assert images[1].media_type == "image/jpeg" and images[1].extension == ".jpg"
    assert images[1].provenance == {  # read back from the JPEG comment, "; " inside a value included
        "Software": "ganserve", "ganserve.model": "text2img", "ganserve.version": "1", "ganserve.seed": "4", "ganserve.truncation": "0.9",
        "ganserve.prompt": "a red bird; small", "ganserve.prompt_b": "a blue fish", "ganserve.mix": "0.25"}


@BOTH
def test_a_model_and_version_can_be_named(gateway: RunningGateway, protocol: str, mode: str) -> None:
    (image,) = call(url(gateway, protocol), mode, "generate", seed=7, model="tiny", version=1)
    assert (image.model, image.version) == ("tiny", 1)
    assert [(image.seed, image.data)] == direct_images(gateway, {"seed": 7, "model": "tiny", "version": 1})


@BOTH
def test_upscale_takes_a_path_bytes_or_a_pil_image(gateway: RunningGateway, protocol: str, mode: str,
                                                   tmp_path) -> None:
    source = png((20, 30, 3), seed=1)
    (tmp_path / "in.png").write_bytes(source)
    expected = direct_upscale(gateway, source, tile_size=16, tile_overlap=2)
    for given in (tmp_path / "in.png", str(tmp_path / "in.png"), source, Image.open(io.BytesIO(source))):
        result = call(url(gateway, protocol), mode, "upscale", given, tile_size=16, tile_overlap=2)
        assert isinstance(result, UpscaledImage)
        assert (result.data, result.model, result.version) == (expected, "sr2x", 1)
    assert result.image.size == (60, 40)
    assert result.provenance["ganserve.tile_size"] == "16" and result.provenance["ganserve.tile_overlap"] == "2"
    jpeg = call(url(gateway, protocol), mode, "upscale", source, format="jpeg")
    assert jpeg.media_type == "image/jpeg" and jpeg.image.format == "JPEG"


@BOTH
def test_interpolate_gives_frames_or_one_animation(gateway: RunningGateway, protocol: str, mode: str) -> None:
    walk = call(url(gateway, protocol), mode, "interpolate", 1, 2, frames=3)
    reference = direct(gateway, "/interpolate", {"seed_a": 1, "seed_b": 2, "frames": 3})
    assert (walk.seed_a, walk.seed_b, walk.t, walk.animation) == (1, 2, reference["t"], None)
    assert [f.data for f in walk.frames] == [base64.b64decode(f["data"]) for f in reference["frames"]]
    assert all(isinstance(f, ImageFile) for f in walk.frames)
    gif = call(url(gateway, protocol), mode, "interpolate", 1, 2, frames=4, format="gif", frame_duration_ms=50)
    reference = direct(gateway, "/interpolate", {"seed_a": 1, "seed_b": 2, "frames": 4, "format": "gif",
                                                 "frame_duration_ms": 50})
    assert gif.frames == [] and gif.animation is not None
    assert gif.animation.data == base64.b64decode(reference["animation"]["data"])
    assert gif.animation.image.n_frames == 4


@pytest.mark.parametrize("mode", MODES)
def test_models_are_the_same_over_http_and_grpc(gateway: RunningGateway, mode: str) -> None:
    over_http, over_grpc = (call(url(gateway, p), mode, "models") for p in PROTOCOLS)
    assert isinstance(over_http, Models)
    assert over_http == over_grpc  # gRPC's zeros and empty strings read as None, like HTTP's nulls
    reference = httpx.get(f"{gateway.http_url}/models").json()
    assert [(m.name, m.version, m.kind) for m in over_http.models] == [
        (m["name"], m["version"], m["kind"]) for m in reference["models"]]
    assert [(p.model, p.version) for p in over_http.problems] == [
        (p["model"], p["version"]) for p in reference["problems"]]
    (encoder,) = over_http.named("text2img_encoder")
    assert (encoder.value_range, encoder.max_tokens, encoder.tokenizer) == (None, 16, "char-v1")
    (ensemble,) = over_http.named("text2img")
    assert [(s.model, s.version) for s in ensemble.steps] == [("text2img_encoder", 1), ("text2img_generator", 1)]
    assert [(m.version, m.is_default) for m in over_http.named("tiny")] == [(1, False), (2, True)]
    assert over_http.named("sr2x")[0].scale == 2 and over_http.named("tiny")[0].scale is None


def test_urls_and_protocols() -> None:
    assert endpoint("http://h:1") == ("http://h:1", False)
    assert endpoint("grpc://h:1/") == ("grpc://h:1", True)
    assert endpoint("h:1", grpc=True) == ("grpc://h:1", True)
    assert endpoint("h:1") == ("http://h:1", False)
    for bad in ("ftp://h:1", "http://", ""):
        with pytest.raises(ValueError, match="gateway URL"):
            endpoint(bad)
    with pytest.raises(ValueError, match="grpc=True"):
        Client("http://h:1", grpc=True)
    with Client("h:1", grpc=True) as client:
        assert (client.url, client.protocol) == ("grpc://h:1", "grpc")


def test_the_methods_have_the_operations_signatures() -> None:
    with Client("h:1", grpc=True) as client:
        assert list(inspect.signature(client.generate).parameters)[:2] == ["n", "seed"]
        assert inspect.signature(client.models).return_annotation == "Models"
    assert list(inspect.signature(AsyncClient.upscale).parameters)[:2] == ["self", "image"]
    assert inspect.signature(AsyncClient.interpolate).return_annotation == "Awaitable[Interpolation]"


def test_retries_wait_as_the_gateway_says_and_give_up_when_told() -> None:
    retries = Retries(attempts=2, max_wait_s=5)
    assert retries.delay(QueueFull("busy", retry_after_s=3), 0) == 3
    assert retries.delay(QueueFull("busy", retry_after_s=3), 2) is None       # no attempt left
    assert retries.delay(QueueFull("busy", retry_after_s=9), 0) is None       # longer than max_wait_s
    assert retries.delay(NotReady("warming up"), 1) == 0.5                     # no Retry-After: backoff
    assert Retries().delay(NotReady("warming up"), 0) is None                 # off by default
    assert retries.delay(ModelNotFound("nope"), 0) is None                    # not worth sending again
