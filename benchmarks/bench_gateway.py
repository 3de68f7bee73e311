"""Gateway benchmark: latency overhead over raw ONNX Runtime, and throughput with micro-batching.

    .venv/bin/python benchmarks/bench_gateway.py [--model-repository model_repository] [--duration 4]

Measured in one run on one machine, all on loopback (the load stops by itself after --duration):
  (a) p50/p99 latency of POST /generate (n = 1, raw PNG) and gRPC Generate vs the raw ONNX Runtime
      call of the same model at batch 1, in interleaved rounds (raw, HTTP, gRPC, again and again);
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

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import cpu_seconds, floor_app, gateway
from synthetic_models import write_dcgan_like

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

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


def _session_figures(session: ort.InferenceSession, *, count: int) -> tuple[list[float], dict]:
    """Batch-1 latency samples, and images/s and CPU per image at batch 1 and 64."""
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
    return batch1, {"batch1_images_per_s": round(1 / float(np.median(batch1)), 1),
                    "batch64_images_per_s": round(64 / float(np.median(batch64)), 1),
                    "batch1_cpu_ms": round(cpu1 * 1000, 3),
                    "batch64_cpu_ms_per_image": round(cpu64 / 64 * 1000, 3)}


def raw_ort(model_path: Path, *, count: int) -> dict:
    """The raw ONNX Runtime call in this process: batch-1 latency, and images/s at batch 1 and 64,
    with default session options (all cores) and with one thread. What micro-batching can buy is
    bounded by how much faster per image a batch of 64 runs than single images."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    batch1, figures = _session_figures(session, count=count)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    one = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return {"batch1": percentiles(batch1) | {"cpu_ms": figures["batch1_cpu_ms"]}, **figures,
            "one_thread": _session_figures(one, count=count)[1]}


async def latency(http_url: str, grpc_target: str, *, model_path: Path, pid: int, count: int,
                  rounds: int, warmup: int = 50) -> dict:
    """Sequential n = 1 requests against the raw ONNX Runtime call of the same model at batch 1, in
    ``rounds`` interleaved rounds (raw, HTTP, gRPC; ``count`` calls each), so that the machine's
    speed drifting during the run (it does, on a shared VM) hits the three alike. Overhead = a
    round's p50 minus the same round's raw p50; reported: the median round. HTTP goes through the
    load generator's minimal keep-alive client (below): an httpx client adds ~0.3 ms of its own
    parsing to every figure, which is the client's cost, not the gateway's."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((1, 100)).astype(np.float32)
    host, port = http_url.removeprefix("http://").rsplit(":", 1)
    connection = _Connection(host, int(port))
    body = json.dumps({"model": MODEL, "seed": 1}).encode()
    samples: dict[str, list[list[float]]] = {"raw": [], "http": [], "grpc": []}
    cpu = {"http": 0.0, "grpc": 0.0}
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GatewayStub(channel)
        request = pb.GenerateRequest(model=MODEL, seed=1)

        async def over_http() -> None:
            await connection.post("/generate", body, accept="image/png")

        async def over_grpc() -> None:
            stub.Generate(request)  # blocking, on purpose: nothing else runs meanwhile

        async def raw() -> None:
            session.run(None, {"z": z})

        calls = {"raw": raw, "http": over_http, "grpc": over_grpc}
        for name, call in calls.items():
            for _ in range(warmup):
                await call()
        for _ in range(rounds):
            for name, call in calls.items():
                before, times = cpu_seconds(pid), []
                for _ in range(count):
                    start = time.perf_counter()
                    await call()
                    times.append(time.perf_counter() - start)
                samples[name].append(times)
                if name in cpu:
                    cpu[name] += cpu_seconds(pid) - before
    await connection.close()

    def p50(times: list[float]) -> float:
        return float(np.percentile(times, 50)) * 1000

    results: dict = {"rounds": rounds, "requests_per_round": count}
    for name, per_round in samples.items():
        pooled = [t for times in per_round for t in times]
        results[name] = {"p50_ms": round(float(np.median([p50(t) for t in per_round])), 3),
                         "p99_ms": round(float(np.percentile(pooled, 99)) * 1000, 3)}
        if name in cpu:
            overheads = [p50(t) - p50(r) for t, r in zip(per_round, samples["raw"], strict=True)]
            results[name] |= {"overhead_p50_ms": round(float(np.median(overheads)), 3),
                              "overhead_p50_ms_per_round": [round(o, 3) for o in overheads],
                              "gateway_cpu_ms": round(cpu[name] / (rounds * count) * 1000, 3)}
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
    parser.add_argument("--requests", type=int, default=300, help="requests per latency round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
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
                    report["latency_n1"] = _run(latency(http_url, grpc_target, model_path=model_path, pid=pid,
                                                        count=args.requests, rounds=args.rounds))
                report[key] = _run(throughput(http_url, grpc_target, concurrency=args.concurrency,
                                                duration=args.duration))
        # The same measurements against benchmarks/floor_app.py: what the frameworks alone cost.
        with floor_app() as (http_url, grpc_target, pid):
            report["framework_floor"] = {
                "latency_n1": _run(latency(http_url, grpc_target, model_path=model_path, pid=pid,
                                           count=args.requests, rounds=3)),
                "throughput": _run(throughput(http_url, grpc_target, concurrency=[32], duration=args.duration))}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
