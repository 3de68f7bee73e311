"""default_models: which model a request naming none gets when several models of its kind are
loaded, and how /models and ListModels show it."""

import io
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import add_super_resolution, build_repository, running_gateway, test_settings


def test_default_models_pick_the_model_a_request_gets_when_several_of_a_kind_are_loaded(tmp_path: Path) -> None:
    """Two super-resolution models: a call naming none is 422 (naming the setting) until
    default_models names one; /models and ListModels mark the defaults."""
    root = build_repository(tmp_path)
    add_super_resolution(root, "sr_a", scale=2)
    add_super_resolution(root, "sr_b", scale=2)
    png = _png_bytes()
    with running_gateway(test_settings(root)) as gw:
        r = httpx.post(f"{gw.http_url}/upscale", content=png, headers={"Content-Type": "image/png"})
        assert r.status_code == 422 and "default_models" in r.json()["error"]["message"]
        assert not any(m["is_default"] for m in httpx.get(f"{gw.http_url}/models").json()["models"]
                       if m["kind"] == "super-resolution")
    with running_gateway(test_settings(root, default_models="super-resolution=sr_b")) as gw:
        r = httpx.post(f"{gw.http_url}/upscale", content=png, headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["model"] == "sr_b"
        defaults = {(m["name"], m["version"]) for m in httpx.get(f"{gw.http_url}/models").json()["models"]
                    if m["is_default"]}
        with grpc.insecure_channel(gw.grpc_target) as channel:
            listed = pb_grpc.GatewayStub(channel).ListModels(pb.ListModelsRequest()).models
    assert defaults == {("sr_b", 1), ("tiny", 2)}  # tiny: the only unconditional model, its latest version
    assert {(m.name, m.version) for m in listed if m.is_default} == defaults


@pytest.mark.parametrize(("value", "problem"), [
    ("super-resolution", "expected KIND=MODEL"),
    ("upscaler=sr_a", "unknown kind 'upscaler'"),
    ("unconditional=a,unconditional=b", "given twice"),
])
def test_default_models_are_checked_at_start_up(value: str, problem: str) -> None:
    from ganserve.errors import UsageError
    from ganserve.serve.cli import load_settings

    with pytest.raises(UsageError, match=problem) as refused:
        load_settings(["--default-models", value])
    assert "default_models (--default-models / GANSERVE_DEFAULT_MODELS)" in str(refused.value)


def _png_bytes() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()
