"""BentoML with its adaptive batching: ``bentoml serve bentoml_service:DCGAN --port 8003``.

A batchable API takes a list; each request sends one seed (``{"seeds": [7]}``) and gets one base64
PNG back in a JSON list (BentoML's batchable APIs answer JSON; bytes in a list are not one of its types)."""

from __future__ import annotations

import base64

import bentoml
from work import Generator


@bentoml.service(workers=1)
class DCGAN:
    def __init__(self) -> None:
        self.generator = Generator()

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=10_000)
    def generate(self, seeds: list[int]) -> list[str]:
        return [base64.b64encode(png).decode("ascii") for png in self.generator.pngs(seeds)]
