"""The shipped text-to-image model (model_repository/text2img: the ensemble of text2img_encoder and
text2img_generator) end to end through the gateway; skips until it is shipped."""

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from tests.serve.helpers import RunningGateway, running_gateway, test_settings

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
PARTS = [REPOSITORY / "text2img" / "config.pbtxt", REPOSITORY / "text2img_encoder" / "1" / "model.onnx",
         REPOSITORY / "text2img_generator" / "1" / "model.onnx"]
MISSING = [str(p.relative_to(REPOSITORY.parent)) for p in PARTS if not p.is_file()]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"the text-to-image model is not shipped yet: "
                                                       f"{', '.join(MISSING)} missing")]
PROMPT = "this bird has a red crown and a short black beak"


@pytest.fixture(scope="module")
def shipped() -> Iterator[RunningGateway]:
    with running_gateway(test_settings(REPOSITORY, batch_max_queue_delay_ms=None)) as running:
        yield running


def _generate(gw: RunningGateway, body: dict) -> list[bytes]:
    r = httpx.post(f"{gw.http_url}/generate", json={"model": "text2img"} | body, timeout=60)
    assert r.status_code == 200, r.text
    return [base64.b64decode(i["data"]) for i in r.json()["images"]]


def test_the_ensemble_and_its_steps_load(shipped: RunningGateway) -> None:
    body = httpx.get(f"{shipped.http_url}/models").json()
    assert [p for p in body["problems"] if p["model"].startswith("text2img")] == []
    models = {m["name"]: m for m in body["models"]}
    t2i = models["text2img"]
    assert t2i["kind"] == "text-conditional" and t2i["tokenizer"] == "char-v1"
    assert [s["model"] for s in t2i["steps"]] == ["text2img_encoder", "text2img_generator"]
    assert models["text2img_encoder"]["kind"] == "text-encoder"
    assert models["text2img_generator"]["kind"] == "text-conditional-generator"


def test_prompt_to_png_deterministic_batched_or_not_over_http_and_grpc(shipped: RunningGateway) -> None:
    model = {m["name"]: m for m in httpx.get(f"{shipped.http_url}/models").json()["models"]}["text2img"]
    together = _generate(shipped, {"prompt": PROMPT, "seed": 7, "n": 4})
    png = Image.open(io.BytesIO(together[0]))
    assert png.size == (model["image_size"], model["image_size"]) and png.mode == "RGB"
    assert png.text["ganserve.prompt"] == PROMPT and png.text["ganserve.seed"] == "7"
    assert len(set(together)) == 4
    alone = [_generate(shipped, {"prompt": PROMPT, "seed": 7 + i})[0] for i in range(4)]
    assert alone == together
    assert _generate(shipped, {"prompt": "a yellow flower with many petals", "seed": 7})[0] != together[0]

    async def over_grpc():
        async with grpc.aio.insecure_channel(shipped.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)
            return await asyncio.gather(*(stub.Generate(pb.GenerateRequest(model="text2img", prompt=PROMPT,
                                                                           seed=7 + i), timeout=60)
                                          for i in range(4)))

    assert [r.images[0].image.data for r in asyncio.run(over_grpc())] == together


def test_mixing_two_prompts(shipped: RunningGateway) -> None:
    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)))

    other = "a pink flower with a yellow centre"
    alone = pixels(_generate(shipped, {"prompt": PROMPT, "seed": 3})[0])
    both = {"prompt": PROMPT, "prompt_b": other, "seed": 3}
    # the ends within one grey level: the encoder runs two prompts in one batch here, one there
    assert np.abs(pixels(_generate(shipped, both | {"mix": 0.0})[0]).astype(int) - alone).max() <= 1
    middle = _generate(shipped, both | {"mix": 0.5})[0]
    assert Image.open(io.BytesIO(middle)).text["ganserve.mix"] == "0.5"
