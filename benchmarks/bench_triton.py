"""Gateway -> Triton vs calling Triton directly with tritonclient: latency and throughput, one run.

    .venv/bin/python benchmarks/bench_triton.py [--model-repository model_repository] [--duration 4]
    .venv/bin/python benchmarks/bench_triton.py --triton-url HOST:8001   # an existing (GPU) Triton

Without --triton-url it starts the real Triton server bundled in nvidia-pytriton on a CPU copy of the
repository (ganserve/dev/triton_cpu.py: python-backend models running the same ONNX files with ONNX Runtime).
The same model (dcgan, one image per request) is asked for:
  direct   tritonclient.grpc(.aio) -> Triton: z in, float image out;
  gateway  gRPC Generate / HTTP POST /generate (raw PNG) -> gateway (`ganserve serve --backend triton`,
           its own process) -> Triton: the gateway adds seed -> z, PNG encoding and a second hop.
Reported: p50/p99 latency of sequential requests (1 client) and images/s at 1 and 32 concurrent
clients, and the overhead ratios gateway / direct (latency) and direct / gateway (throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import numpy as np
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_gateway import MODEL, _load, _run, latency, percentiles, throughput, timed
from harness import gateway
from synthetic_models import write_dcgan_like

from ganserve.dev.triton_cpu import LocalTriton, derive_cpu_repository


def _z(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 100)).astype(np.float32)


def _inputs(seed: int) -> list[tc.InferInput]:
    tensor = tc.InferInput("z", [1, 100], "FP32")
    tensor.set_data_from_numpy(_z(seed))
    return [tensor]


def direct_latency(url: str, *, count: int) -> dict:
    client = tc.InferenceServerClient(url)
    samples = timed(lambda: client.infer(MODEL, _inputs(1)).as_numpy("image"), count=count)
    client.close()
    return percentiles(samples)


async def direct_throughput(url: str, *, concurrency: list[int], duration: float) -> dict[int, float]:
    results = {}
    async with tc_aio.InferenceServerClient(url) as client:
        async def call(seed: int) -> None:
            (await client.infer(MODEL, _inputs(seed))).as_numpy("image")

        for c in concurrency:
            results[c] = round(await _load(call, clients=c, duration=duration), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--triton-url", help="an existing Triton serving the repository (default: start "
                                             "the CPU one from nvidia-pytriton)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per throughput point")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds through the gateway")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repository"
        repository.mkdir()
        source = args.model_repository / MODEL
        if (source / "1" / "model.onnx").is_file():
            (repository / MODEL).symlink_to(source.resolve())
            described = f"{args.model_repository}/{MODEL}"
        else:
            write_dcgan_like(repository, MODEL)
            described = "synthetic DCGAN-shaped model (random weights, benchmarks/synthetic_models.py)"
        server = None
        url = args.triton_url
        if url is None:
            derive_cpu_repository(repository, Path(tmp) / "cpu")
            server = LocalTriton(Path(tmp) / "cpu").start()
            url = server.grpc_url
        try:
            report = {
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                           f"Python {platform.python_version()}",
                "triton": args.triton_url or "tritonserver 2.51 from nvidia-pytriton 0.7.0 on CPU (python "
                                             "backend running the ONNX file with ONNX Runtime, 1 thread)",
                "model": described, "command": " ".join(["python", *sys.argv]),
                "direct": {"latency": direct_latency(url, count=args.requests),
                           "images_per_s": _run(direct_throughput(url, concurrency=args.concurrency,
                                                                  duration=args.duration))},
            }
            model_path = repository / MODEL / "1" / "model.onnx"
            with gateway(repository, args=["--backend", "triton", "--triton-url", url]) as (http_url, grpc_target, pid):
                report["gateway"] = {  # the same measurements as bench_gateway.py
                    "latency": _run(latency(http_url, grpc_target, model_path=model_path, pid=pid,
                                            count=args.requests, rounds=args.rounds)),
                    "images_per_s": _run(throughput(http_url, grpc_target, concurrency=args.concurrency,
                                                    duration=args.duration))}
        finally:
            if server is not None:
                server.close()
    direct, via = report["direct"], report["gateway"]
    report["overhead"] = {
        protocol: {"latency_p50_ratio_1_client": round(via["latency"][protocol]["p50_ms"] / direct["latency"]["p50_ms"], 2),
                   **{f"throughput_ratio_{c}_clients": round(direct["images_per_s"][c] / via["images_per_s"][protocol][c], 2)
                      for c in args.concurrency}}
        for protocol in ("grpc", "http")}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
