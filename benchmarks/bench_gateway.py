"""Gateway benchmark: latency overhead over raw ONNX Runtime, and throughput with micro-batching.

    .venv/bin/python benchmarks/bench_gateway.py [--model-repository model_repository] [--duration 4]

Measured in one run on one machine, all on loopback (the load stops by itself after --duration):
  (a) p50/p99 latency of POST /generate (n = 1, raw PNG) and gRPC Generate vs the raw ONNX Runtime
      call of the same model at batch 1;
  (b) images/s at 1, 8, 32 and 64 concurrent clients (n = 1 each), micro-batching on and off,
      HTTP and gRPC, vs raw ONNX Runtime at batch 64.
Besides wall-clock numbers it records CPU time (of the gateway process, and of the raw ONNX Runtime
calls) per request: on a machine shared with other work, wall-clock latency mostly measures waiting
for a core, while CPU time still shows what the gateway itself costs.
Uses model_repository/dcgan when it is there, else a DCGAN-shaped model with random weights
(benchmarks/synthetic_models.py; same graph shape and cost). The gateway runs as a separate process
(`python -m ganserve serve`), so the load generator does not share its interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import cpu_seconds, gateway
from synthetic_models import write_dcgan_like

from serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

MODEL = "dcgan"


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def timed(call: Callable[[], object], *, count: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def raw_ort(model_path: Path, *, count: int) -> dict:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    z1 = np.random.default_rng(0).standard_normal((1, 100)).astype(np.float32)
    z64 = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
    timed(lambda: session.run(None, {"z": z1}), count=0)
    cpu = time.process_time()
    batch1 = timed(lambda: session.run(None, {"z": z1}), count=count, warmup=0)
    cpu1 = (time.process_time() - cpu) / count
    calls = max(count // 10, 10)
    session.run(None, {"z": z64})
    cpu = time.process_time()
    batch64 = timed(lambda: session.run(None, {"z": z64}), count=calls, warmup=0)
    cpu64 = (time.process_time() - cpu) / calls
    return {"batch1": percentiles(batch1) | {"cpu_ms": round(cpu1 * 1000, 3)},
            "batch64_images_per_s": round(64 / float(np.median(batch64)), 1),
            "batch64_cpu_ms_per_image": round(cpu64 / 64 * 1000, 3)}


def latency(http_url: str, grpc_target: str, *, pid: int, count: int) -> dict:
    """Sequential n = 1 requests; wall-clock percentiles and the gateway's CPU time per request."""
    results = {}
    with httpx.Client(base_url=http_url) as client, grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GatewayStub(channel)
        calls = {
            "http": lambda: client.post("/generate", json={"model": MODEL, "seed": 1},
                                        headers={"Accept": "image/png"}).raise_for_status(),
            "grpc": lambda: stub.Generate(pb.GenerateRequest(model=MODEL, seed=1)),
        }
        for name, call in calls.items():
            timed(call, count=0)
            cpu = cpu_seconds(pid)
            samples = timed(call, count=count, warmup=0)
            server_cpu = (cpu_seconds(pid) - cpu) / count
            results[name] = percentiles(samples) | {"gateway_cpu_ms": round(server_cpu * 1000, 3)}
    return results


async def _load(request: Callable[[int], Awaitable[None]], *, clients: int, duration: float) -> float:
    """``clients`` loops sending one-image requests back to back; images/s over ``duration`` after a
    short warm-up. Stops by itself."""
    done = 0
    measuring = False
    stop_at = time.monotonic() + 0.5 + duration

    async def client(i: int) -> None:
        nonlocal done
        seed = i * 1_000_000
        while time.monotonic() < stop_at:
            await request(seed)
            seed += 1
            if measuring:
                done += 1

    tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
    await asyncio.sleep(0.5)
    measuring, start = True, time.monotonic()
    await asyncio.gather(*tasks)
    return done / (time.monotonic() - start)


class _Connection:
    """A minimal HTTP/1.1 keep-alive client for the load generator: the request bytes are built
    once, the response is read by its Content-Length. httpx cost the benchmark process more CPU per
    request than the gateway itself (2.7 ms vs 1.8 ms at 32 clients), and on a small machine the load
    generator's CPU is taken from the gateway."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, *, accept: str) -> bytes:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nAccept: {accept}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                           .encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        data = await self._reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {data[:200]!r}")
        return data

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def throughput(http_url: str, grpc_target: str, *, concurrency: list[int], duration: float) -> dict:
    """images/s per protocol and number of concurrent clients (one connection per HTTP client, one
    channel for gRPC)."""
    results: dict[str, dict[int, float]] = {"http": {}, "grpc": {}}
    host, port = http_url.removeprefix("http://").rsplit(":", 1)
    for c in concurrency:
        connections = [_Connection(host, int(port)) for _ in range(c)]

        async def over_http(seed: int, connections: list[_Connection] = connections) -> None:
            connection = connections[seed // 1_000_000]  # _load: client i starts at seed i * 1e6
            await connection.post("/generate", json.dumps({"model": MODEL, "seed": seed}).encode(),
                                  accept="image/png")

        results["http"][c] = round(await _load(over_http, clients=c, duration=duration), 1)
        for connection in connections:
            await connection.close()
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GatewayStub(channel)

        async def over_grpc(seed: int) -> None:
            await stub.Generate(pb.GenerateRequest(model=MODEL, seed=seed), timeout=60)

        for c in concurrency:
            results["grpc"][c] = round(await _load(over_grpc, clients=c, duration=duration), 1)
    return results


def _run(coroutine: Awaitable[dict]) -> dict:
    """Runs the load generator on uvloop when installed (less of its CPU taken from the gateway)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per throughput point")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model_repository / MODEL / "1" / "model.onnx"
        source = f"{args.model_repository}/{MODEL}"
        repository = Path(tmp)
        if model_path.is_file():
            (repository / MODEL).symlink_to(model_path.parent.parent.resolve())
        else:
            model_path = write_dcgan_like(repository, MODEL)
            source = "synthetic DCGAN-shaped model (random weights, benchmarks/synthetic_models.py)"
        report = {
            "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                       f"Python {platform.python_version()}, onnxruntime {ort.__version__}",
            "model": source, "command": " ".join(["python", *sys.argv]),
            "raw_onnxruntime": raw_ort(model_path, count=args.requests),
        }
        for batching in (True, False):
            flags = ["--batch-max-queue-delay-ms", "0", "--batching" if batching else "--no-batching"]
            with gateway(repository, args=flags) as (http_url, grpc_target, pid):
                key = "batching_on" if batching else "batching_off"
                if batching:
                    report["latency_n1"] = latency(http_url, grpc_target, pid=pid, count=args.requests)
                report[key] = _run(throughput(http_url, grpc_target, concurrency=args.concurrency,
                                                duration=args.duration))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
