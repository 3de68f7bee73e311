"""LAPGAN served: a tiny pyramid (2 -> 4 -> 8 on scikit-learn's digits) trained here through the one
training loop, exported as three level models and their Triton ensemble, read by the repository reader
as an ``unconditional`` model whose z is split over its levels, and served over real HTTP and gRPC
clients by the embedded backend (docs/model-contract.md, "Pyramid models")."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from ganserve.serve import images, seeds
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.repository import load_repository
from ganserve.training.checkpoint import load_generator
from tests.serve.helpers import RunningGateway, add_generator, running_gateway, test_settings
from tests.training.lapgan_helpers import train_tiny_lapgan

Z = 8 + 4 + 4  # lapgan-tiny: z_2, z_1, z_0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, repository): lapgan-tiny trained for a few steps and exported as ``lapgan``, beside a
    plain generator ``tiny`` (no levels)."""
    tmp = tmp_path_factory.mktemp("lapgan")
    checkpoint, repo = train_tiny_lapgan(tmp)
    add_generator(repo, "tiny", latent_dim=8, size=8)
    return checkpoint, repo


@pytest.fixture(scope="module")
def gateway(trained: tuple[Path, Path]) -> Iterator[RunningGateway]:
    with running_gateway(test_settings(trained[1], default_models="unconditional=tiny")) as running:
        yield running


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _generate(gw: RunningGateway, body: dict) -> dict:
    response = httpx.post(f"{gw.http_url}/generate", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _grpc(gw: RunningGateway, request: pb.GenerateRequest) -> pb.GenerateResponse:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        return pb_grpc.GatewayStub(channel).Generate(request, timeout=30)


# --- the repository reader -----------------------------------------------------------------------

def test_the_ensemble_is_an_unconditional_model_with_its_levels(trained: tuple[Path, Path]) -> None:
    repo = load_repository(trained[1])
    assert repo.problems == ()
    kinds = {n: vs[-1].kind for n, vs in repo.models.items()}
    assert kinds == {"lapgan": "unconditional", "lapgan_coarse": "pyramid-coarse", "lapgan_level1": "pyramid-level",
                     "lapgan_level0": "pyramid-level", "tiny": "unconditional"}
    (mv,) = repo.models["lapgan"]
    assert mv.latent_inputs == (("z_2", 8), ("z_1", 4), ("z_0", 4)) and mv.latent_dim == Z
    assert mv.level_outputs == ("image_2", "image_1", "image")
    assert (mv.channels, mv.image_size, mv.value_range) == (1, 8, (-1.0, 1.0))
    assert [s.model for s in mv.steps] == ["lapgan_coarse", "lapgan_level1", "lapgan_level0"]
    assert mv.metadata["ganserve.latent_split"] == "z_2:8,z_1:4,z_0:4"
    assert mv.metadata["ganserve.levels"] == "image_2:2,image_1:4,image:8"
    z = np.arange(2 * Z, dtype=np.float32).reshape(2, Z)
    feed = mv.latent_feed(z)
    assert list(feed) == ["z_2", "z_1", "z_0"]
    np.testing.assert_array_equal(np.concatenate(list(feed.values()), axis=1), z)
    assert repo.models["tiny"][-1].level_outputs == ()


def test_a_miswired_pyramid_is_a_load_problem(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    for model in ("lapgan", "lapgan_coarse", "lapgan_level1", "lapgan_level0"):
        shutil.copytree(trained[1] / model, tmp_path / model)
    config = tmp_path / "lapgan" / "config.pbtxt"
    # level 0 reads the coarse image instead of level 1's: the pyramid is no longer one chain
    text = config.read_text()
    config.write_text(text.replace('key: "coarse"\n      value: "image_1"', 'key: "coarse"\n      value: "image_2"'))
    repo = load_repository(tmp_path)
    (problem,) = repo.problems
    assert problem.model == "lapgan" and "dims" in problem.message  # 2x2 read where 4x4 is needed


# --- through the gateway -------------------------------------------------------------------------

def test_generate_is_the_chained_levels_of_the_seeds_z(gateway: RunningGateway, trained: tuple[Path, Path]) -> None:
    """The contract's seed rule: one z of length sum(dims) from the seed, split z_2, z_1, z_0; each level
    run on the previous level's image (checked against the ONNX files run one by one here)."""
    body = _generate(gateway, {"model": "lapgan", "n": 3, "seed": 40, "levels": True, "truncation": 1.5})
    root = trained[1]
    runs = {name: ort.InferenceSession(str(root / name / "1" / "model.onnx")) for name in
            ("lapgan_coarse", "lapgan_level1", "lapgan_level0")}
    for i, item in enumerate(body["images"]):
        assert item["seed"] == 40 + i
        z = seeds.latent(40 + i, latent_dim=Z, truncation=1.5)[None]
        level2 = runs["lapgan_coarse"].run(None, {"z": z[:, :8]})[0]
        level1 = runs["lapgan_level1"].run(None, {"z": z[:, 8:12], "coarse": level2})[0]
        level0 = runs["lapgan_level0"].run(None, {"z": z[:, 12:], "coarse": level1})[0]
        expected = [images.to_uint8(x, value_range=(-1.0, 1.0))[0, :, :, 0] for x in (level2, level1, level0)]
        got = [_pixels(base64.b64decode(x["data"])) for x in item["levels"]]
        assert [g.shape for g in got] == [(2, 2), (4, 4), (8, 8)]
        for g, e in zip(got, expected, strict=True):
            assert np.abs(g.astype(int) - e.astype(int)).max() <= 1
        np.testing.assert_array_equal(_pixels(base64.b64decode(item["data"])), got[-1])
        level_text = Image.open(io.BytesIO(base64.b64decode(item["levels"][0]["data"]))).text
        assert level_text["ganserve.level"] == "image_2" and level_text["ganserve.seed"] == str(40 + i)


def test_the_same_seed_gives_the_same_bytes_batched_or_not(gateway: RunningGateway) -> None:
    batched = _generate(gateway, {"model": "lapgan", "n": 5, "seed": 7, "levels": True})["images"]
    alone = [_generate(gateway, {"model": "lapgan", "seed": 7 + i, "levels": True})["images"][0] for i in range(5)]
    assert batched == alone
    without = _generate(gateway, {"model": "lapgan", "n": 5, "seed": 7})["images"]
    assert [i["data"] for i in without] == [i["data"] for i in batched]  # levels add, change nothing
    assert all("levels" not in i for i in without)


def test_levels_over_grpc_are_the_http_ones(gateway: RunningGateway) -> None:
    http = _generate(gateway, {"model": "lapgan", "n": 2, "seed": 11, "levels": True})["images"]
    reply = _grpc(gateway, pb.GenerateRequest(model="lapgan", n=2, seed=11, levels=True))
    assert [i.seed for i in reply.images] == [11, 12]
    for got, want in zip(reply.images, http, strict=True):
        assert got.image.data == base64.b64decode(want["data"])
        assert [x.data for x in got.levels] == [base64.b64decode(x["data"]) for x in want["levels"]]
        assert all(x.media_type == "image/png" for x in got.levels)
    assert not _grpc(gateway, pb.GenerateRequest(model="lapgan", seed=11)).images[0].levels


def test_levels_on_a_model_without_levels_is_refused(gateway: RunningGateway) -> None:
    response = httpx.post(f"{gateway.http_url}/generate", json={"model": "tiny", "levels": True})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "'tiny' has no levels" in message and "pyramid" in message
    # the default unconditional model (tiny here) has none either
    assert httpx.post(f"{gateway.http_url}/generate", json={"levels": True}).status_code == 422
    with pytest.raises(grpc.RpcError) as err:
        _grpc(gateway, pb.GenerateRequest(model="tiny", levels=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "has no levels" in err.value.details()


def test_levels_needs_a_json_answer_and_a_boolean(gateway: RunningGateway) -> None:
    raw = httpx.post(f"{gateway.http_url}/generate", json={"model": "lapgan", "levels": True},
                     headers={"Accept": "image/png"})
    assert raw.status_code == 422 and "accept application/json" in raw.json()["error"]["message"]
    wrong = httpx.post(f"{gateway.http_url}/generate", json={"model": "lapgan", "levels": "yes"})
    assert wrong.status_code == 422 and "levels" in wrong.text
    plain = httpx.post(f"{gateway.http_url}/generate", json={"model": "lapgan", "levels": False, "seed": 3},
                       headers={"Accept": "image/png"})
    assert plain.status_code == 200 and _pixels(plain.content).shape == (8, 8)


def test_interpolate_walks_the_whole_z(gateway: RunningGateway) -> None:
    response = httpx.post(f"{gateway.http_url}/interpolate", json={
        "model": "lapgan", "seed_a": 1, "seed_b": 2, "frames": 4}, timeout=30)
    assert response.status_code == 200, response.text
    frames = [base64.b64decode(f["data"]) for f in response.json()["frames"]]
    ends = _generate(gateway, {"model": "lapgan", "n": 1, "seed": 1})["images"][0]["data"], \
        _generate(gateway, {"model": "lapgan", "n": 1, "seed": 2})["images"][0]["data"]
    np.testing.assert_array_equal(_pixels(frames[0]), _pixels(base64.b64decode(ends[0])))
    np.testing.assert_array_equal(_pixels(frames[-1]), _pixels(base64.b64decode(ends[1])))
    assert len({f for f in frames}) == 4


def test_models_lists_the_pyramid_and_its_levels(gateway: RunningGateway) -> None:
    models = {m["name"]: m for m in httpx.get(f"{gateway.http_url}/models").json()["models"]}
    lap = models["lapgan"]
    assert (lap["kind"], lap["latent_dim"], lap["image_size"]) == ("unconditional", Z, 8)
    assert [s["model"] for s in lap["steps"]] == ["lapgan_coarse", "lapgan_level1", "lapgan_level0"]
    assert lap["metadata"]["ganserve.levels"] == "image_2:2,image_1:4,image:8"
    assert models["lapgan_level1"]["kind"] == "pyramid-level" and not lap["is_default"]


def test_the_served_image_is_the_pytorch_pyramid(gateway: RunningGateway, trained: tuple[Path, Path]) -> None:
    """Export parity end to end: the gateway's levels equal the trained generator's chained levels."""
    loaded = load_generator(trained[0])
    G = loaded.model.eval()
    z = torch.from_numpy(seeds.latents([5, 6], latent_dim=Z))
    with torch.no_grad():
        expected = [images.to_uint8(x.numpy(), value_range=(-1.0, 1.0))[..., 0] for x in G.all_levels(z)]
    body = _generate(gateway, {"model": "lapgan", "n": 2, "seed": 5, "levels": True})
    for i, item in enumerate(body["images"]):
        for level, want in zip(item["levels"], expected, strict=True):
            assert np.abs(_pixels(base64.b64decode(level["data"])).astype(int) - want[i].astype(int)).max() <= 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_python_client_returns_the_levels(gateway: RunningGateway, protocol: str) -> None:
    from ganserve.client import Client
    from ganserve.client.errors import InvalidArgument

    address = gateway.http_url if protocol == "http" else f"grpc://{gateway.grpc_target}"
    direct = _generate(gateway, {"model": "lapgan", "n": 2, "seed": 30, "levels": True})["images"]
    with Client(address) as client:
        images = client.generate(2, seed=30, model="lapgan", levels=True)
        assert [[x.data for x in i.levels] for i in images] == \
            [[base64.b64decode(x["data"]) for x in i["levels"]] for i in direct]
        assert [x.image.size for x in images[0].levels] == [(2, 2), (4, 4), (8, 8)]
        assert client.generate(1, seed=30, model="lapgan")[0].levels == []
        with pytest.raises(InvalidArgument, match="has no levels"):
            client.generate(1, model="tiny", levels=True)
