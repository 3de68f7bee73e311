"""The repository reader: Triton config, versions, ONNX metadata; broken models reported, not fatal."""

from pathlib import Path

import numpy as np
import pytest

from ganserve.serve.repository import load_repository
from tests.serve.helpers import (
    add_generator,
    add_super_resolution,
    build_repository,
    generator_config,
    write_config,
)


def test_standard_repository(tmp_path: Path) -> None:
    repo = load_repository(build_repository(tmp_path))
    assert list(repo.models) == ["tiny"]
    v1, v2 = repo.models["tiny"]
    assert (v1.version, v2.version) == (1, 2)
    assert v2.kind == "unconditional" and v2.latent_dim == 8 and v2.value_range == (-1.0, 1.0)
    assert (v2.channels, v2.image_size, v2.max_batch_size) == (1, 8, 16)
    assert v2.inputs[0].name == "z" and v2.inputs[0].dtype == np.float32 and v2.inputs[0].dims == (8,)
    assert v2.queue_delay_us == 0 and v2.metadata["ganserve.family"] == "test"
    problems = {(p.model, p.version): p.message for p in repo.problems}
    assert set(problems) == {("badconfig", None), ("garbage", 1), ("nolatent", 1)}
    assert "not a valid Triton model config" in problems["badconfig", None]
    assert "not a readable ONNX model" in problems["garbage", 1]
    assert "ganserve.latent_dim" in problems["nolatent", 1]


def test_default_version_policy_serves_the_latest_only(tmp_path: Path) -> None:
    for version in (1, 3, 2):
        add_generator(tmp_path, "m", version=version)
    assert [v.version for v in load_repository(tmp_path).models["m"]] == [3]


def test_specific_version_policy(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        add_generator(tmp_path, "m", version=version,
                      version_policy="version_policy: { specific { versions: [1, 3] } }")
    assert [v.version for v in load_repository(tmp_path).models["m"]] == [1, 3]


def test_super_resolution_models(tmp_path: Path) -> None:
    add_super_resolution(tmp_path, "whole", scale=2)
    add_super_resolution(tmp_path, "tiled", scale=4, tile=16, overlap=4)
    repo = load_repository(tmp_path)
    (whole,), (tiled,) = repo.models["whole"], repo.models["tiled"]
    assert whole.kind == "super-resolution" and whole.scale == 2 and (whole.input_name, whole.output_name) == (
        "lr", "sr")
    assert whole.tile_size is None and whole.input_range == (0.0, 1.0)
    assert (tiled.scale, tiled.tile_size, tiled.tile_overlap) == (4, 16, 4)


def test_tile_metadata_must_match_the_config(tmp_path: Path) -> None:
    path = add_super_resolution(tmp_path, "sr", tile=16, overlap=4)
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | {"ganserve.tile_size": "32"})
    onnx.save(model, str(path))
    (problem,) = load_repository(tmp_path).problems
    assert "do not match the tile size 32" in problem.message


@pytest.mark.parametrize(("change", "message"), [
    ({"metadata": {"ganserve.kind": "painting"}}, "ganserve.kind is 'painting'"),
    ({"metadata": {"ganserve.kind": "text-conditional"}}, "which is a Triton ensemble"),
    ({"metadata": {"ganserve.value_range": "1,-1"}}, "lo < hi"),
    ({"metadata": {"ganserve.value_range": "wide"}}, "expected 'lo,hi'"),
    ({"metadata": {"ganserve.latent_dim": "9"}}, "latent_dim is 9"),
])
def test_bad_metadata_is_reported(tmp_path: Path, change: dict, message: str) -> None:
    add_generator(tmp_path, "bad", **change)
    add_generator(tmp_path, "good")
    repo = load_repository(tmp_path)
    assert list(repo.models) == ["good"]
    (problem,) = repo.problems
    assert problem.model == "bad" and message in problem.message


@pytest.mark.parametrize(("config", "message"), [
    ('name: "other" backend: "onnxruntime" max_batch_size: 4', "differs from its folder"),
    ('backend: "pytorch" max_batch_size: 4', "backend 'pytorch'"),
    ('backend: "onnxruntime" max_batch_size: 0', "max_batch_size must be > 0"),
    (('backend: "onnxruntime" max_batch_size: 4 input [{ name: "noise" data_type: TYPE_FP32 dims: [8] }] '
     'output [{ name: "image" data_type: TYPE_FP32 dims: [1, 8, 8] }]'), "inputs are ['z']"),
])
def test_bad_config_is_reported(tmp_path: Path, config: str, message: str) -> None:
    add_generator(tmp_path, "bad", config=False)
    write_config(tmp_path / "bad", config)
    (problem,) = load_repository(tmp_path).problems
    assert message in problem.message


def test_missing_pieces_are_reported(tmp_path: Path) -> None:
    (tmp_path / "noconfig" / "1").mkdir(parents=True)
    write_config(tmp_path / "noversion", generator_config("noversion", latent_dim=8, channels=1, size=8,
                                                          max_batch_size=4))
    write_config(tmp_path / "nofile", generator_config("nofile", latent_dim=8, channels=1, size=8,
                                                       max_batch_size=4))
    (tmp_path / "nofile" / "1").mkdir()
    messages = {p.model: p.message for p in load_repository(tmp_path).problems}
    assert "config.pbtxt is missing" in messages["noconfig"]
    assert "no version folder" in messages["noversion"]
    assert "model.onnx is missing" in messages["nofile"]


def test_missing_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_repository(tmp_path / "absent")
