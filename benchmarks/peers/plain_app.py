"""The hand-written alternative: FastAPI + ONNX Runtime, no batching, one image per request.

    GANSERVE_BENCH_MODEL=model_repository/dcgan/1/model.onnx uvicorn plain_app:app --port 8002

A sync endpoint, so FastAPI runs it in its thread pool (the model off the event loop)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel
from work import Generator

app = FastAPI()
generator = Generator()


class GenerateRequest(BaseModel):
    seed: int


@app.post("/generate")
def generate(body: GenerateRequest) -> Response:
    return Response(generator.pngs([body.seed])[0], media_type="image/png")
