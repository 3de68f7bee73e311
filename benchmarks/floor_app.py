"""The floor under any FastAPI gateway on this machine: ``POST /generate`` that validates the same
JSON body and answers a constant 1 kB PNG-sized body, no model, no metrics. ``bench_gateway.py``
runs it under uvicorn (uvloop, httptools: what the gateway uses) to measure what the framework
alone costs per request, and so what throughput one process can reach at best.

    .venv/bin/python -m uvicorn floor_app:app --app-dir benchmarks --loop uvloop --http httptools
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

app = FastAPI()
_BODY = bytes(1000)  # about a 28x28 generated PNG with its text chunks


class GenerateRequest(BaseModel):
    model: str | None = None
    seed: int | None = None
    n: int = 1


@app.post("/generate")
async def generate(body: GenerateRequest) -> Response:
    return Response(_BODY, media_type="image/png", headers={"X-Ganserve-Seed": str(body.seed)})
