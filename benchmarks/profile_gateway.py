"""Where the gateway's CPU goes per n=1 request: py-spy samples a ``ganserve serve`` process under
load (sequential requests, or --clients at once) and prints the frames that cost the most.

    .venv/bin/python benchmarks/profile_gateway.py --protocol http [--gil] [--seconds 8] [-- GATEWAY ARGS]
    .venv/bin/python benchmarks/profile_gateway.py --protocol grpc --backend-triton   # in front of CPU Triton

py-spy (the ``bench`` extra) attaches to the gateway once it is ready (it needs the right to ptrace it:
the same user, or root; ``kernel.yama.ptrace_scope`` 0). One client sends ``POST /generate`` (raw PNG) or
gRPC ``Generate`` for the shipped dcgan back to back for --seconds. ``--gil`` samples only the thread holding
the GIL (the Python work; C code that releases it, uvloop's and gRPC's cores, ONNX Runtime, does not
show), otherwise every thread that is not idle. Prints the gateway CPU per request (/proc), then the
top frames by own samples and by inclusive samples (the gateway's own code, uvicorn, Starlette,
FastAPI and grpc frames).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
from bench_peers import GrpcClient, HttpClient, ganserve_body, many_clients
from harness import cpu_seconds, gateway

ROOT = Path(__file__).resolve().parents[1]
SITE = str(Path(sys.prefix) / "lib")


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").replace(str(ROOT) + "/", "")
    if SITE in where:
        where = where.split("site-packages/", 1)[-1]
    return f"{name} ({where})"


def summarise(raw: Path, *, top: int) -> dict:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the thread
        total += int(count)
        if frames:
            own[frames[-1]] += int(count)
        for name in {f.rsplit(":", 1)[0] for f in frames}:
            inclusive[name] += int(count)
    return {"samples": total,
            "own": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
            "inclusive": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(4 * top)
                          if any(k in f for k in ("serve/", "uvicorn", "starlette", "fastapi", "grpc"))][:top]}


async def _load(protocol: str, url: str, target: str, seconds: float, clients: int) -> int:
    channel = grpc.aio.insecure_channel(target) if protocol == "grpc" else None
    pool = [HttpClient(url, "/generate", ganserve_body) if channel is None else GrpcClient(channel)
            for _ in range(clients)]
    times = await many_clients(pool, seconds=seconds, first_seed=0)
    for client in pool:
        await client.close()
    return len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients (1: sequential requests)")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--backend-triton", action="store_true", help="the gateway in front of the CPU Triton")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw (collapsed) stacks here")
    parser.add_argument("gateway_args", nargs="*", help="more ganserve serve arguments (after --)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repository"
        repository.mkdir()
        (repository / "dcgan").symlink_to((args.model_repository / "dcgan").resolve())
        extra = list(args.gateway_args)
        triton = None
        if args.backend_triton:
            from ganserve.dev.triton_cpu import LocalTriton, derive_cpu_repository

            derive_cpu_repository(repository, Path(tmp) / "cpu")
            triton = LocalTriton(Path(tmp) / "cpu").start()
            extra += ["--backend", "triton", "--triton-url", triton.grpc_url]
        raw = args.raw or Path(tmp) / "raw.txt"
        try:
            with gateway(repository, args=extra) as (url, target, pid):
                # attached once the gateway serves: the samples are of serving only
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate",
                     str(args.rate), "--duration", str(int(args.seconds) + 2), "--format", "raw", "--nonblocking",
                     *(["--gil"] if args.gil else []), "--output", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(1.0)
                before = cpu_seconds(pid)
                requests = asyncio.run(_load(args.protocol, url, target, args.seconds, args.clients))
                cpu_ms = (cpu_seconds(pid) - before) / requests * 1000
                if spy.wait(60) != 0:
                    sys.exit(f"py-spy failed: {spy.stderr.read().decode()[-1000:]}")
        finally:
            if triton is not None:
                triton.close()
        report = {"protocol": args.protocol, "clients": args.clients, "backend": "triton" if args.backend_triton else "onnxruntime",
                  "gil_only": args.gil, "requests": requests, "gateway_cpu_ms_per_request": round(cpu_ms, 3),
                  "load_average": os.getloadavg(), **summarise(raw, top=args.top)}
    print(json.dumps({k: v for k, v in report.items() if k not in ("own", "inclusive")}))
    for kind in ("own", "inclusive"):
        print(f"--- {kind} samples (% of {report['samples']})")
        for frame, percent in report[kind]:
            print(f"{percent:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
