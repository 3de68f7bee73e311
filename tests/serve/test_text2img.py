"""Text to image: the ensemble in the repository reader, prompts through the service, HTTP and gRPC,
on small synthetic models with the contract's names, types and metadata (docs/model-contract.md,
"Text-conditional models")."""

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ganserve import text
from ganserve.serve import images, seeds
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.grpc.servicer import ERROR_CODE_KEY
from ganserve.serve.repository import load_repository
from tests.serve.helpers import (
    RunningGateway,
    add_generator,
    add_text2img,
    running_gateway,
    test_settings,
    text2img_ensemble_config,
    write_config,
)

L, E, Z = 16, 6, 8  # add_text2img's defaults: max_tokens, embedding_dim, latent_dim


# --- the repository reader -----------------------------------------------------------------------

def test_the_ensemble_is_a_text_conditional_model_with_its_steps_metadata(tmp_path: Path) -> None:
    add_text2img(tmp_path, "t2i")
    repo = load_repository(tmp_path)
    assert repo.problems == ()
    assert {n: vs[-1].kind for n, vs in repo.models.items()} == {
        "t2i": "text-conditional", "t2i_encoder": "text-encoder", "t2i_generator": "text-conditional-generator"}
    (mv,) = repo.models["t2i"]
    assert mv.is_ensemble and mv.path == tmp_path / "t2i" / "1"
    assert (mv.tokenizer, mv.max_tokens, mv.embedding_dim) == ("char-v1", L, E)
    assert (mv.latent_dim, mv.channels, mv.image_size, mv.value_range) == (Z, 3, 8, (-1.0, 1.0))
    assert [(s.model, s.version, s.kind) for s in mv.steps] == [
        ("t2i_encoder", 1, "text-encoder"), ("t2i_generator", 1, "text-conditional-generator")]
    assert mv.steps[1].input_map == {"z": "z", "embedding": "text_embedding"}  # the ensemble's own name
    assert mv.step_of_kind("text-encoder").model == "t2i_encoder"
    assert {t.name: (t.dtype, t.dims) for t in mv.inputs} == {"tokens": (np.int64, (L,)), "z": (np.float32, (Z,))}
    assert mv.metadata["ganserve.kind"] == "text-conditional"
    assert mv.metadata["ganserve.steps"] == "t2i_encoder:1,t2i_generator:1"
    assert mv.metadata["ganserve.tokenizer"] == "char-v1" and mv.metadata["ganserve.max_tokens"] == str(L)
    (encoder,) = repo.models["t2i_encoder"]
    assert encoder.value_range is None and encoder.input_name == "tokens" and encoder.output_name == "embedding"


def _ensemble(root: Path, name: str = "t2i", **changes: object) -> None:
    values = {"encoder": "t2i_encoder", "generator": "t2i_generator", "max_tokens": L, "latent_dim": Z,
              "channels": 3, "size": 8, "max_batch_size": 16} | changes
    write_config(root / name, text2img_ensemble_config(name, **values))
    (root / name / "1").mkdir(parents=True, exist_ok=True)


def _edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name / "config.pbtxt"
    config = path.read_text()
    assert old in config
    path.write_text(config.replace(old, new, 1))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: _ensemble(r, encoder="t2i_nope"), "model 't2i_nope' is not in the repository"),
    (lambda r: (r / "t2i_encoder" / "1" / "model.onnx").write_bytes(b"not onnx"),
     "model 't2i_encoder' did not load"),
    (lambda r: _edit(r, "t2i", 'key: "tokens" value: "tokens"', 'key: "text" value: "tokens"'),
     "input_map keys are ['text'], but the model's inputs are ['tokens']"),
    (lambda r: _edit(r, "t2i", 'output_map { key: "embedding"', 'output_map { key: "emb"'),
     "output_map keys are ['emb']"),
    (lambda r: _edit(r, "t2i", 'key: "embedding" value: "text_embedding" } ]', 'key: "embedding" value: "other" } ]'),
     "reads ['other'], which no ensemble input or other step writes"),
    (lambda r: _edit(r, "t2i", "TYPE_INT64", "TYPE_INT32"), "type int32 at one end, int64 at the other"),
    (lambda r: _edit(r, "t2i", f"dims: [ {L} ]", f"dims: [ {L + 1} ]"), f"dims [{L + 1}] at one end, [{L}]"),
    (lambda r: _ensemble(r, extra=f'output [ {{ name: "text_embedding" data_type: TYPE_FP32 dims: [ {E} ] }} ]'),
     "only the final image is exposed"),
    (lambda r: _ensemble(r, max_batch_size=32), "max_batch_size 32 is larger than step 1 ('t2i_encoder')'s 16"),
    (lambda r: _edit(r, "t2i", "model_version: -1", "model_version: 7"), "model_version 7 is not loaded"),
    (lambda r: _ensemble(r, encoder="t2i_generator"),
     "input_map keys are ['tokens'], but the model's inputs are ['embedding', 'z']"),
    (lambda r: write_config(r / "t2i", 'platform: "ensemble" max_batch_size: 4'), "needs ensemble_scheduling"),
])
def test_a_broken_ensemble_is_a_problem_and_the_rest_loads(tmp_path: Path, change, message: str) -> None:
    add_text2img(tmp_path, "t2i")
    add_generator(tmp_path, "tiny")
    change(tmp_path)
    repo = load_repository(tmp_path)
    assert "t2i" not in repo.models and "tiny" in repo.models
    problems = {p.model: p.message for p in repo.problems}
    assert message in problems["t2i"], problems


def test_an_ensemble_of_other_kinds_is_not_served(tmp_path: Path) -> None:
    add_generator(tmp_path, "tiny", latent_dim=Z)
    write_config(tmp_path / "chain", f"""
platform: "ensemble" max_batch_size: 4
input [ {{ name: "z" data_type: TYPE_FP32 dims: [ {Z} ] }} ]
output [ {{ name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] }} ]
ensemble_scheduling {{ step [ {{ model_name: "tiny" model_version: -1 input_map {{ key: "z" value: "z" }}
                                 output_map {{ key: "image" value: "image" }} }} ] }}""")
    (tmp_path / "chain" / "1").mkdir()
    (problem,) = load_repository(tmp_path).problems
    assert problem.model == "chain" and "kinds ['unconditional']" in problem.message


@pytest.mark.parametrize(("kwargs", "model", "message"), [
    ({"tokenizer": "bpe-v9"}, "t2i", "uses tokenizer 'bpe-v9'; this gateway knows char-v1"),
    ({"tokenizer": ""}, "t2i_encoder", "ganserve.tokenizer is missing"),
])
def test_the_tokenizer_must_be_one_the_gateway_runs(tmp_path: Path, kwargs: dict, model: str, message: str) -> None:
    add_text2img(tmp_path, "t2i", **kwargs)
    problems = {p.model: p.message for p in load_repository(tmp_path).problems}
    assert message in problems[model]


def test_encoder_metadata_must_match_its_config(tmp_path: Path) -> None:
    add_text2img(tmp_path, "t2i")
    _edit(tmp_path, "t2i_encoder", f"dims: [ {L} ]", f"dims: [ {L + 2} ]")
    problems = {p.model: p.message for p in load_repository(tmp_path).problems}
    assert f"ganserve.max_tokens is {L}" in problems["t2i_encoder"]
    assert "did not load" in problems["t2i"]


def test_a_step_that_fails_in_the_backend_takes_its_ensemble_along(tmp_path: Path) -> None:
    add_text2img(tmp_path, "t2i")
    repo = load_repository(tmp_path).without({("t2i_generator", 1): "ONNX Runtime could not load it"})
    assert list(repo.models) == ["t2i_encoder"]
    assert {p.model: p.message for p in repo.problems}["t2i"] == "step model 't2i_generator' version 1 did not load"


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` (unconditional), ``text2img`` (ensemble + components), a broken ensemble ``badtok``."""
    root = tmp_path_factory.mktemp("text_repository")
    add_generator(root, "tiny")
    add_text2img(root, "text2img", weight_seed=3)
    add_text2img(root, "badtok", tokenizer="bpe-v9")
    return root


@pytest.fixture(scope="module")
def gw(text_repo: Path) -> Iterator[RunningGateway]:
    with running_gateway(test_settings(text_repo, max_prompt_chars=40)) as running:
        yield running


def _post(gw: RunningGateway, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/generate", json=body, timeout=30, **kwargs)


def _png(gw: RunningGateway, body: dict) -> bytes:
    r = _post(gw, body, headers={"Accept": "image/png"})
    assert r.status_code == 200, r.text
    return r.content


def _images(r: httpx.Response) -> list[bytes]:
    assert r.status_code == 200, r.text
    return [base64.b64decode(i["data"]) for i in r.json()["images"]]


def _reference(root: Path, prompt: str, seed: int, *, prompt_b: str | None = None, mix: float = 0.5) -> np.ndarray:
    """The image computed without the gateway: char-v1 tokens -> encoder -> (mix) -> generator."""
    encoder = ort.InferenceSession(str(root / "text2img_encoder" / "1" / "model.onnx"))
    generator = ort.InferenceSession(str(root / "text2img_generator" / "1" / "model.onnx"))
    prompts = [prompt] if prompt_b is None else [prompt, prompt_b]
    (e,) = encoder.run(None, {"tokens": text.encode_batch(prompts, length=L)})
    if prompt_b is not None:
        e = ((np.float32(1) - np.float32(mix)) * e[0] + np.float32(mix) * e[1])[None]
    z = seeds.latents([seed], latent_dim=Z, truncation=None)
    (image,) = generator.run(None, {"z": z, "embedding": e})
    return images.to_uint8(image, value_range=(-1.0, 1.0))[0]


def test_prompt_to_png(gw: RunningGateway, text_repo: Path) -> None:
    r = _post(gw, {"prompt": "A small  Red bird", "seed": 5}, headers={"Accept": "image/png"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-ganserve-model"] == "text2img"
    png = Image.open(io.BytesIO(r.content))
    assert png.size == (8, 8) and png.mode == "RGB"
    assert png.text["ganserve.prompt"] == "A small  Red bird" and png.text["ganserve.seed"] == "5"
    assert png.text["ganserve.model"] == "text2img" and "ganserve.prompt_b" not in png.text
    assert np.array_equal(np.asarray(png), _reference(text_repo, "a small red bird", 5))


def test_the_prompt_matters_and_the_same_prompt_and_seed_give_the_same_bytes(gw: RunningGateway) -> None:
    a = _png(gw, {"prompt": "a red bird", "seed": 1})
    assert _png(gw, {"prompt": "a red bird", "seed": 1}) == a
    assert _png(gw, {"prompt": "a red bird", "seed": 1, "model": "text2img", "version": 1}) == a
    assert _png(gw, {"prompt": "a blue bird", "seed": 1}) != a
    assert _png(gw, {"prompt": "a red bird", "seed": 2}) != a


def test_n_images_are_the_single_images_of_their_seeds(gw: RunningGateway) -> None:
    together = _images(_post(gw, {"prompt": "a yellow flower", "seed": 40, "n": 4}))
    assert together == [_png(gw, {"prompt": "a yellow flower", "seed": 40 + i}) for i in range(4)]
    assert len(set(together)) == 4


def test_non_ascii_prompt_is_recorded_as_given(gw: RunningGateway) -> None:
    png = Image.open(io.BytesIO(_png(gw, {"prompt": "une fleur écarlate ✿", "seed": 3})))
    assert png.text["ganserve.prompt"] == "une fleur écarlate ✿"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_mix_ends_are_the_prompts_alone(gw: RunningGateway, text_repo: Path) -> None:
    """Same pixels at the ends (the files differ: they record prompt_b and mix)."""
    a, b = _png(gw, {"prompt": "a red bird", "seed": 9}), _png(gw, {"prompt": "a blue flower", "seed": 9})
    both = {"prompt": "a red bird", "prompt_b": "a blue flower", "seed": 9}
    assert np.array_equal(_pixels(_png(gw, both | {"mix": 0})), _pixels(a))
    assert np.array_equal(_pixels(_png(gw, both | {"mix": 1.0})), _pixels(b))
    middle = _png(gw, both)
    assert _png(gw, both | {"mix": 0.5}) == middle
    assert not np.array_equal(_pixels(middle), _pixels(a)) and not np.array_equal(_pixels(middle), _pixels(b))
    png = Image.open(io.BytesIO(middle))
    assert (png.text["ganserve.prompt_b"], png.text["ganserve.mix"]) == ("a blue flower", "0.5")
    assert np.array_equal(np.asarray(png), _reference(text_repo, "a red bird", 9, prompt_b="a blue flower"))
    quarter = _images(_post(gw, both | {"mix": 0.25, "n": 3}))
    assert quarter[0] == _png(gw, both | {"mix": 0.25}) and len(set(quarter)) == 3


def test_unconditional_generation_is_unchanged_beside_a_text_model(gw: RunningGateway) -> None:
    r = _post(gw, {"seed": 1})
    assert r.status_code == 200 and r.json()["model"] == "tiny"


def test_models_lists_the_text_models(gw: RunningGateway) -> None:
    body = httpx.get(f"{gw.http_url}/models").json()
    models = {m["name"]: m for m in body["models"]}
    assert {n: m["kind"] for n, m in models.items()} == {
        "text2img": "text-conditional", "text2img_encoder": "text-encoder",
        "text2img_generator": "text-conditional-generator", "tiny": "unconditional",
        "badtok_encoder": "text-encoder", "badtok_generator": "text-conditional-generator"}  # badtok is not
    t2i = models["text2img"]
    assert (t2i["tokenizer"], t2i["max_tokens"], t2i["embedding_dim"], t2i["latent_dim"]) == ("char-v1", L, E, Z)
    assert t2i["steps"] == [{"model": "text2img_encoder", "version": 1}, {"model": "text2img_generator", "version": 1}]
    assert (t2i["channels"], t2i["image_size"], t2i["value_range"]) == (3, 8, [-1.0, 1.0])
    assert models["text2img_encoder"]["value_range"] is None and models["tiny"]["steps"] == []
    problems = {p["model"]: p["message"] for p in body["problems"]}
    assert "uses tokenizer 'bpe-v9'" in problems["badtok"]


LONG = "x" * 41  # the gateway above serves max_prompt_chars = 40


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"prompt": ""}, 422, "prompt is empty or blank"),
    ({"prompt": "  \t\n "}, 422, "prompt is empty or blank"),
    ({"prompt": "\u0301\u0308"}, 422, "prompt is empty or blank"),  # combining marks only: nothing left
    ({"prompt": LONG}, 422, "prompt has 41 characters; at most 40 are served (max_prompt_chars)"),
    ({"prompt": "a red\x00bird"}, 422, "prompt holds a control character (U+0000) at position 5"),
    ({"prompt": "bell\x07"}, 422, "control character (U+0007)"),
    ({"prompt": "a red bird", "prompt_b": " "}, 422, "prompt_b is empty or blank"),
    ({"prompt": "a red bird", "prompt_b": LONG}, 422, "prompt_b has 41 characters"),
    ({"prompt": "a red bird", "prompt_b": "x\x1b"}, 422, "prompt_b holds a control character (U+001B)"),
    ({"prompt_b": "a red bird"}, 422, "prompt_b needs a prompt"),
    ({"mix": 0.5}, 422, "mix needs a prompt"),
    ({"prompt": "a red bird", "mix": 0.5}, 422, "mix needs prompt_b"),
    ({"prompt": "a", "prompt_b": "b", "mix": -0.1}, 422, "mix must be a number in [0, 1]"),
    ({"prompt": "a", "prompt_b": "b", "mix": 1.5}, 422, "mix must be a number in [0, 1]"),
    ({"prompt": "a", "prompt_b": "b", "mix": "0.5"}, 422, "mix"),
    ({"prompt": 42}, 422, "prompt"),
    ({"model": "tiny", "prompt": "a red bird"}, 422,
     "'tiny' is of kind 'unconditional'; a prompt needs a model of kind 'text-conditional'"),
    ({"model": "text2img_encoder", "prompt": "a red bird"}, 422, "of kind 'text-encoder'"),
    ({"model": "text2img"}, 422, "'text2img' is of kind 'text-conditional' (it needs a 'prompt')"),
    ({"model": "badtok", "prompt": "a red bird"}, 404, "model 'badtok' is not loaded"),
    ({"model": "text2img", "version": 3, "prompt": "a red bird"}, 404, "has no loaded version 3"),
])
def test_bad_requests_are_refused_with_a_clear_message(gw: RunningGateway, body: dict, status: int,
                                                       message: str) -> None:
    r = _post(gw, body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"prompt": "a", "prompt_b": "b", "mix": NaN}', "mix must be a number in [0, 1]"),
    (b'{"prompt": "a", "prompt_b": "b", "mix": Infinity}', "mix must be a number in [0, 1]"),
    (b'{"prompt": "a\\ud800b"}', "prompt holds an unpaired surrogate (U+D800) at position 1"),  # JSON can say it
])
def test_what_only_raw_json_can_send_is_refused(gw: RunningGateway, raw: bytes, message: str) -> None:
    r = httpx.post(f"{gw.http_url}/generate", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_argument", r.text
    assert message in r.json()["error"]["message"]


def test_a_prompt_of_max_prompt_chars_is_served(gw: RunningGateway) -> None:
    assert _post(gw, {"prompt": "y" * 40, "seed": 1}).status_code == 200


# --- gRPC ----------------------------------------------------------------------------------------

def _grpc(gw: RunningGateway, method: str, request):
    async def main():
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            return await getattr(pb_grpc.GatewayStub(channel), method)(request, timeout=30)

    return asyncio.run(main())


def test_grpc_gives_the_same_bytes_as_http(gw: RunningGateway) -> None:
    one = _grpc(gw, "Generate", pb.GenerateRequest(prompt="a red bird", seed=11, n=2))
    assert one.model == "text2img"
    assert [i.image.data for i in one.images] == _images(_post(gw, {"prompt": "a red bird", "seed": 11, "n": 2}))
    mixed = _grpc(gw, "Generate", pb.GenerateRequest(prompt="a red bird", prompt_b="a blue flower", mix=0.3,
                                                     seed=11))
    assert mixed.images[0].image.data == _png(gw, {"prompt": "a red bird", "prompt_b": "a blue flower",
                                                   "mix": 0.3, "seed": 11})
    zero = _grpc(gw, "Generate", pb.GenerateRequest(prompt="a red bird", prompt_b="a blue flower", mix=0.0, seed=11))
    # mix set to 0 is not "unset" (0.5): the prompt alone
    assert np.array_equal(_pixels(zero.images[0].image.data), _pixels(one.images[0].image.data))
    assert Image.open(io.BytesIO(zero.images[0].image.data)).text["ganserve.mix"] == "0.0"


def test_grpc_list_models(gw: RunningGateway) -> None:
    models = {m.name: m for m in _grpc(gw, "ListModels", pb.ListModelsRequest()).models}
    t2i = models["text2img"]
    assert (t2i.kind, t2i.tokenizer, t2i.max_tokens, t2i.embedding_dim) == ("text-conditional", "char-v1", L, E)
    assert [(s.model, s.version) for s in t2i.steps] == [("text2img_encoder", 1), ("text2img_generator", 1)]
    assert list(models["text2img_encoder"].value_range) == []


@pytest.mark.parametrize(("request_", "code", "message"), [
    (pb.GenerateRequest(prompt=""), grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty or blank"),
    (pb.GenerateRequest(prompt="x" * 41), grpc.StatusCode.INVALID_ARGUMENT, "max_prompt_chars"),
    (pb.GenerateRequest(prompt="a\x00"), grpc.StatusCode.INVALID_ARGUMENT, "control character"),
    (pb.GenerateRequest(prompt="a", prompt_b="b", mix=float("nan")), grpc.StatusCode.INVALID_ARGUMENT,
     "mix must be a number in [0, 1]"),
    (pb.GenerateRequest(prompt="a", mix=0.2), grpc.StatusCode.INVALID_ARGUMENT, "mix needs prompt_b"),
    (pb.GenerateRequest(prompt_b="b"), grpc.StatusCode.INVALID_ARGUMENT, "prompt_b needs a prompt"),
    (pb.GenerateRequest(model="tiny", prompt="a"), grpc.StatusCode.INVALID_ARGUMENT, "a prompt needs"),
    (pb.GenerateRequest(model="text2img"), grpc.StatusCode.INVALID_ARGUMENT, "it needs a 'prompt'"),
    (pb.GenerateRequest(model="nope", prompt="a"), grpc.StatusCode.NOT_FOUND, "'nope' is not loaded"),
])
def test_grpc_errors(gw: RunningGateway, request_, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _grpc(gw, "Generate", request_)
    assert info.value.code() == code and message in info.value.details()
    expected = "invalid_argument" if code == grpc.StatusCode.INVALID_ARGUMENT else "model_not_found"
    assert dict(info.value.trailing_metadata())[ERROR_CODE_KEY] == expected


# --- batching ------------------------------------------------------------------------------------

def _batch_rows(metrics: str, model: str) -> tuple[float, float]:
    """(rows, batches) the model ran, from ganserve_backend_batch_size."""
    for family in text_string_to_metric_families(metrics):
        if family.name == "ganserve_backend_batch_size":
            values = {s.name: s.value for s in family.samples if s.labels.get("model") == model
                      and s.name.endswith(("_sum", "_count"))}
            return values["ganserve_backend_batch_size_sum"], values["ganserve_backend_batch_size_count"]
    raise AssertionError("no ganserve_backend_batch_size metric")


def test_concurrent_prompts_batch_per_step_and_give_the_same_bytes(tmp_path: Path) -> None:
    """Only a text model loaded, a 50 ms queue delay: concurrent requests merge in the encoder's and the
    generator's batchers, and each image is byte for byte what the request gives alone."""
    add_text2img(tmp_path, "text2img", weight_seed=3)
    requests = [{"prompt": p, "seed": s} for p, s in [("a red bird", 1), ("a blue bird", 2), ("a red bird", 3),
                                                         ("a tall yellow flower", 4), ("x", 5), ("a red bird", 1)]]
    requests.append({"prompt": "a red bird", "prompt_b": "a tall yellow flower", "mix": 0.7, "seed": 6})
    with running_gateway(test_settings(tmp_path, batch_max_queue_delay_ms=50)) as gw:
        r = _post(gw, {})
        assert r.status_code == 404
        assert r.json()["error"]["message"] == ("no unconditional model is loaded (text-conditional: text2img; "
                                                "they need a 'prompt')")

        async def together() -> list[bytes]:
            async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as client:
                answers = await asyncio.gather(*(client.post("/generate", json=b, headers={"Accept": "image/png"})
                                                 for b in requests))
            return [a.content for a in answers]

        before = _batch_rows(gw.metrics_text(), "text2img_generator")  # the start-up measurement
        merged = asyncio.run(together())
        rows, batches = (a - b for a, b in zip(_batch_rows(gw.metrics_text(), "text2img_generator"), before,
                                               strict=True))
        assert rows == len(requests) and batches < len(requests)  # some requests shared a batch
        alone = [_png(gw, b) for b in requests]
    assert merged == alone and merged[0] == merged[-2] and len(set(merged)) == len(requests) - 1
