"""What the public sees of the gateway's insides: /models and ListModels without training details
(unless models_show_training) and without the repository's path."""

from __future__ import annotations

from pathlib import Path

import httpx

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.service import TRAINING_METADATA
from tests.serve.helpers import RunningGateway, running_gateway, test_settings
from tests.serve.test_access import grpc_call


def test_models_show_public_fields_only(gateway: RunningGateway) -> None:
    body = httpx.get(f"{gateway.http_url}/models").json()
    tiny = next(m for m in body["models"] if m["name"] == "tiny")
    assert "ganserve.latent_dim" in tiny["metadata"] and "ganserve.family" in tiny["metadata"]
    assert not TRAINING_METADATA & set(tiny["metadata"])
    root = str(gateway.settings.model_repository)
    assert body["problems"] and all(root not in p["message"] for p in body["problems"])
    garbage = next(p for p in body["problems"] if p["model"] == "garbage")
    assert garbage["message"].startswith("garbage/1/model.onnx is not a readable ONNX model")
    response, *_ = grpc_call(gateway, "ListModels", pb.ListModelsRequest())
    (grpc_tiny, *_) = [m for m in response.models if m.name == "tiny"]
    assert dict(grpc_tiny.metadata) == tiny["metadata"]
    assert all(root not in p.message for p in response.problems)


def test_a_setting_shows_the_training_details(model_repo: Path) -> None:
    with running_gateway(test_settings(model_repo, models_show_training=True)) as gw:
        tiny = next(m for m in httpx.get(f"{gw.http_url}/models").json()["models"] if m["name"] == "tiny")
        assert tiny["metadata"]["ganserve.training_commit"] == "unknown"
        response, *_ = grpc_call(gw, "ListModels", pb.ListModelsRequest())
        assert next(m for m in response.models if m.name == "tiny").metadata["ganserve.training_data"]
