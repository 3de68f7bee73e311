"""The floor under any Python gateway on this machine: ``POST /generate`` (FastAPI) and gRPC
``Generate`` (grpc.aio, the gateway's proto) that validate the request and answer a constant
1 kB PNG-sized image: no model, no metrics. ``bench_gateway.py`` runs it the way the gateway runs
(uvicorn with httptools, both servers on one uvloop event loop) to measure what the frameworks alone
cost per request, and so what one process can reach at best.

    .venv/bin/python benchmarks/floor_app.py --http-port 8001 --grpc-port 50052
"""

from __future__ import annotations

import argparse
import asyncio

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

app = FastAPI()
_IMAGE = bytes(1000)  # about a 28x28 generated PNG with its text chunks


class GenerateRequest(BaseModel):
    model: str | None = None
    seed: int | None = None
    n: int = 1


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/generate")
async def generate(body: GenerateRequest) -> Response:
    return Response(_IMAGE, media_type="image/png", headers={"X-Ganserve-Seed": str(body.seed)})


class _Floor(pb_grpc.GatewayServicer):
    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        return pb.GenerateResponse(model=request.model, version=1, images=[pb.GeneratedImage(
            seed=request.seed, image=pb.Image(data=_IMAGE, media_type="image/png"))])


async def _serve(http_port: int, grpc_port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GatewayServicer_to_server(_Floor(), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, http="httptools",
                                         access_log=False, log_level="warning"))
    await http.serve()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(args.http_port, args.grpc_port))


if __name__ == "__main__":
    main()
