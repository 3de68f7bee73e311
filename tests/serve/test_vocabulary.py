"""Vocabulary honesty: a text model that publishes the words it was trained on (ONNX metadata
``ganserve.vocabulary``) shows them in /models, and a prompt naming none of an attribute's words
still gets an image, with a warning (HTTP JSON field and header, gRPC trailing metadata)."""

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.grpc.servicer import WARNING_KEY
from tests.serve.helpers import RunningGateway, add_text2img, running_gateway, test_settings

VOCABULARY = {"digit": {"7": ["seven", "7"], "1": ["one", "1"]},
              "colour": {"red": ["red", "crimson"], "green": ["green", "grass green"]}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("vocabulary")
    add_text2img(root, "t2i", vocabulary=json.dumps(VOCABULARY))
    add_text2img(root, "plain", weight_seed=1)  # publishes no vocabulary
    with running_gateway(test_settings(root)) as running:
        yield running


def _generate(gw: RunningGateway, **body) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/generate", json={"seed": 1, **body}, timeout=30)


def test_models_publish_the_vocabulary(gw: RunningGateway) -> None:
    models = {m["name"]: m for m in httpx.get(f"{gw.http_url}/models").json()["models"]}
    assert models["t2i"]["vocabulary"] == VOCABULARY
    assert models["t2i_encoder"]["vocabulary"] == VOCABULARY and models["plain"]["vocabulary"] is None
    with grpc.insecure_channel(gw.grpc_target) as channel:
        listed = {m.name: m for m in pb_grpc.GatewayStub(channel).ListModels(pb.ListModelsRequest()).models}
    assert json.loads(listed["t2i"].metadata["ganserve.vocabulary"]) == VOCABULARY


@pytest.mark.parametrize(("prompt", "missing"), [
    ("a crimson seven", []),
    ("A GRASS GREEN 1.", []),
    ("a photo of a cat", ["digit", "colour"]),
    ("someone in red", ["digit"]),          # "one" inside "someone" is no digit
    ("a 7 in reddish", ["colour"]),         # nor "red" inside "reddish"
])
def test_a_prompt_naming_no_known_word_gets_an_image_and_a_warning(gw: RunningGateway, prompt: str,
                                                                    missing: list[str]) -> None:
    r = _generate(gw, model="t2i", prompt=prompt)
    assert r.status_code == 200 and len(r.json()["images"]) == 1
    warnings = r.json()["warnings"]
    assert [w.split(" names no ")[1].split(" ")[0] for w in warnings] == missing
    assert all(w.startswith("prompt names no ") and "'t2i'" in w for w in warnings)
    if missing:
        assert r.headers["x-ganserve-warning"] == " | ".join(warnings)
        assert "seven" in warnings[0] or "red" in warnings[0]  # the known words are named
    else:
        assert "x-ganserve-warning" not in r.headers


def test_the_second_prompt_is_checked_too_and_raw_images_carry_the_header(gw: RunningGateway) -> None:
    r = httpx.post(f"{gw.http_url}/generate", json={"model": "t2i", "prompt": "a red 7", "prompt_b": "a seven",
                                                    "mix": 0.5}, headers={"Accept": "image/png"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-ganserve-warning"].startswith("prompt_b names no colour")


def test_grpc_warnings_are_trailing_metadata(gw: RunningGateway) -> None:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = pb_grpc.GatewayStub(channel)
        _, call = stub.Generate.with_call(pb.GenerateRequest(model="t2i", prompt="a photo of a cat"))
        warned = [value for key, value in call.trailing_metadata() if key == WARNING_KEY]
        _, quiet = stub.Generate.with_call(pb.GenerateRequest(model="t2i", prompt="a red seven"))
    assert len(warned) == 2 and warned[0].startswith("prompt names no digit")
    assert [v for k, v in quiet.trailing_metadata() if k == WARNING_KEY] == []


def test_a_model_without_a_vocabulary_never_warns(gw: RunningGateway) -> None:
    r = _generate(gw, model="plain", prompt="a photo of a cat")
    assert r.status_code == 200 and r.json()["warnings"] == []


def test_a_malformed_vocabulary_is_a_load_problem(tmp_path: Path) -> None:
    from ganserve.serve.repository import load_repository

    add_text2img(tmp_path, "bad", vocabulary='{"digit": ["seven"]}')
    repo = load_repository(tmp_path)
    assert "bad_encoder" not in repo.models
    assert any("ganserve.vocabulary" in p.message for p in repo.problems)

