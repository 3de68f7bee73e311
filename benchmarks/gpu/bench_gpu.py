"""The GPU path measured: Triton on the committed model repository, with the gateway in
front and without, fp32 and fp16, for dcgan, text2img and 1-megapixel upscales.

On a GPU machine, with a stock Triton (the NGC container ``nvcr.io/nvidia/tritonserver:<yy.mm>-py3``,
which has the onnxruntime backend and TensorRT):

    python benchmarks/gpu/bench_gpu.py --tritonserver /opt/tritonserver/bin/tritonserver --json gpu.json
    python benchmarks/gpu/bench_gpu.py --triton-url HOST:8001 --precisions fp32    # a Triton already running

``--tritonserver`` starts it once per precision on a copy of model_repository/ (the committed configs:
``backend: "onnxruntime"``, ``KIND_GPU``; the ONNX files linked, not copied):
  fp32  the configs as committed: ONNX Runtime's CUDA execution provider;
  fp16  the TensorRT accelerator with ``precision_mode FP16``, the block each config.pbtxt documents in
        its header, added to every ONNX model's config (the first load builds the engines: minutes).
On this CPU-only machine ``--cpu`` runs the same measurements against the CPU Triton of
``ganserve triton-cpu`` (ganserve/dev/triton_cpu.py: the python backend running the ONNX files with
ONNX Runtime), fp32 only, with a small upscale: it tests the script, not a GPU.

For each model and precision, ``--seconds`` per point, 1 and ``--concurrency`` clients:
  direct   tritonclient.grpc.aio -> Triton: z (and prompt tokens) made by the client, tensors back
           (for upscales the client cuts the model's tiles and sends them in batches of max_batch_size;
           no stitching or PNG);
  gateway  ``ganserve serve --backend triton`` (its own process, default settings) -> Triton: HTTP
           POST /generate (PNG) and gRPC Generate for the generators, HTTP POST /upscale (PNG in, PNG out).
Reported: images/s (upscales: images of --upscale-side^2 input pixels per s) and p50/p99 latency, and
the machine (GPU name from nvidia-smi when present).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
ROOT = BENCHMARKS.parent
sys.path.insert(0, str(BENCHMARKS))

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
import numpy as np
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio
from bench_peers import GrpcClient, HttpClient, many_clients, server
from google.protobuf import text_format
from harness import free_port, gateway
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from ganserve.serve import seeds, tiling
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.repository import TOKENIZERS, load_repository

MODELS = ["dcgan", "text2img", "srresnet"]
PROMPT = "a red seven"
FP16_ACCELERATOR = """optimization { execution_accelerators { gpu_execution_accelerator: [
  { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }
                     parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }"""


# --- Triton ----------------------------------------------------------------------------------------

def precision_repository(source: Path, target: Path, precision: str) -> Path:
    """A copy of ``source`` (configs written, ONNX files linked) for ``precision``: fp32 as committed,
    fp16 with the TensorRT FP16 accelerator on every ONNX Runtime model."""
    for model_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / model_dir.name
        shutil.copytree(model_dir, out, copy_function=os.link if _same_device(source, target) else shutil.copy2)
        config_path = out / "config.pbtxt"
        if precision == "fp16" and config_path.is_file():
            try:
                config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
            except text_format.ParseError:
                continue  # left as it is: Triton says what is wrong with it
            if config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx":
                text_format.Merge(FP16_ACCELERATOR, config)
                config_path.unlink()  # a hard link: never write through it into the committed file
                config_path.write_text(text_format.MessageToString(config))
    return target


def _same_device(a: Path, b: Path) -> bool:
    b.mkdir(parents=True, exist_ok=True)
    return a.stat().st_dev == b.stat().st_dev


@contextlib.contextmanager
def tritonserver(binary: Path, repository: Path, *, timeout_s: float = 900) -> Iterator[str]:
    """A stock ``tritonserver`` on ``repository`` (GPU): yields its gRPC address once every model is ready."""
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    url = f"127.0.0.1:{grpc_port}"

    def ready() -> bool:
        with contextlib.suppress(Exception), contextlib.closing(tc.InferenceServerClient(url)) as client:
            return client.is_server_ready()
        return False

    with server([str(binary), f"--model-repository={repository}", f"--grpc-port={grpc_port}",
                 f"--http-port={http_port}", f"--metrics-port={metrics_port}", "--exit-timeout-secs=10"],
                ready=ready, cwd=ROOT, what="tritonserver", timeout_s=timeout_s):
        yield url


@contextlib.contextmanager
def cpu_triton(repository: Path) -> Iterator[str]:
    from ganserve.dev.triton_cpu import LocalTriton, derive_cpu_repository

    with tempfile.TemporaryDirectory() as tmp:
        derive_cpu_repository(repository, Path(tmp) / "cpu")
        with LocalTriton(Path(tmp) / "cpu") as server:
            yield server.grpc_url


# --- clients ---------------------------------------------------------------------------------------

class DirectGenerator:
    """tritonclient.grpc.aio -> Triton, one image per request (z, and tokens for a text model)."""

    def __init__(self, client: tc_aio.InferenceServerClient, mv) -> None:
        self._client, self._mv = client, mv
        self._tokens = (TOKENIZERS[mv.tokenizer]([PROMPT], length=mv.max_tokens) if mv.tokenizer else None)

    async def generate(self, seed: int) -> bytes:
        inputs = []
        z = seeds.latents([seed], latent_dim=self._mv.latent_dim)
        for name, value in [("z", z), *([("tokens", self._tokens)] if self._tokens is not None else [])]:
            tensor = tc.InferInput(name, list(value.shape), "FP32" if value.dtype == np.float32 else "INT64")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        result = await self._client.infer(self._mv.name, inputs, outputs=[tc.InferRequestedOutput("image")])
        return result.as_numpy("image").tobytes()

    async def close(self) -> None:
        pass


class DirectUpscale:
    """tritonclient.grpc.aio -> Triton: one image's tiles (the model's tile size and overlap) in batches of
    max_batch_size, as a Triton user would send them; the outputs are received, not stitched."""

    def __init__(self, client: tc_aio.InferenceServerClient, mv, image: np.ndarray) -> None:
        self._client, self._mv = client, mv
        tile, overlap = mv.tile_size or 64, mv.tile_overlap or 0
        layout = tiling.plan(image.shape[0], image.shape[1], tile=tile, overlap=overlap)
        lr = image.transpose(2, 0, 1).astype(np.float32) / 255
        tiles = [lr[:, r.start:r.start + tile, c.start:c.start + tile] for r in layout.rows for c in layout.cols]
        step = max(1, mv.max_batch_size)
        self._batches = [np.stack(tiles[i:i + step]) for i in range(0, len(tiles), step)]

    async def generate(self, seed: int) -> bytes:
        total = 0
        for batch in self._batches:
            tensor = tc.InferInput(self._mv.input_name, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = await self._client.infer(self._mv.name, [tensor])
            total += result.as_numpy(self._mv.output_name).size
        return total.to_bytes(8, "little")

    async def close(self) -> None:
        pass


def photo(side: int) -> np.ndarray:
    """An RGB test image: scikit-image's astronaut (512 x 512) resized to ``side`` (bicubic)."""
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BICUBIC))


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


class GatewayUpscale(HttpClient):
    def __init__(self, url: str, model: str, body: bytes) -> None:
        super().__init__(url, f"/upscale?model={model}", lambda seed: body)
        self._upload = body

    async def generate(self, seed: int) -> bytes:  # the upload is a PNG, not JSON
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._writer.write(f"POST {self._path} HTTP/1.1\r\nHost: {self._host}\r\nAccept: image/png\r\n"
                           f"Content-Type: image/png\r\nContent-Length: {len(self._upload)}\r\n\r\n".encode()
                           + self._upload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        data = await self._reader.readexactly(length)
        if int(head[9:12]) != 200:
            raise RuntimeError(f"POST /upscale: {head[:12]!r} {data[:300]!r}")
        return data


class GatewayGrpc(GrpcClient):
    def __init__(self, channel: grpc.aio.Channel, model: str, prompt: str | None) -> None:
        super().__init__(channel)
        self._model, self._prompt = model, prompt

    async def generate(self, seed: int) -> bytes:
        request = pb.GenerateRequest(model=self._model, seed=seed, **({"prompt": self._prompt} if self._prompt else {}))
        response = await self._stub.Generate(request, timeout=600)
        return response.images[0].image.data


def point(make: Callable[[], object], *, clients: int, seconds: float) -> dict:
    async def run() -> dict:
        pool = [make() for _ in range(clients)]
        await many_clients(pool, seconds=min(1.0, seconds / 4), first_seed=10**9)  # warm-up
        start = time.perf_counter()
        times = await many_clients(pool, seconds=seconds, first_seed=0)
        elapsed = time.perf_counter() - start
        for c in pool:
            await c.close()
        return {"clients": clients, "requests": len(times), "images_per_s": round(len(times) / elapsed, 2),
                "p50_ms": round(float(np.percentile(times, 50)) * 1000, 2),
                "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2)}

    return asyncio.run(run())


def measure(triton_url: str, *, repository: Path, models: list[str], seconds: float, concurrency: int,
            upscale_side: int) -> dict:
    repo = load_repository(repository)
    results: dict = {}
    image = photo(upscale_side)
    upload = png(image)
    with gateway(repository, args=["--backend", "triton", "--triton-url", triton_url],
                 env={"GANSERVE_REQUEST_TIMEOUT_S": "600", "GANSERVE_UPSCALE_TIMEOUT_S": "600",
                      "GANSERVE_MAX_PIXELS": str(max(upscale_side ** 2, 1024 ** 2)),
                      "GANSERVE_MAX_UPLOAD_BYTES": str(max(len(upload) * 2, 8 << 20))}) as (url, target, _):
        for name in models:
            if name not in repo.models:
                results[name] = {"skipped": "not in the repository"}
                continue
            mv = repo.models[name][-1]
            sr = mv.kind == "super-resolution"
            many = min(concurrency, 4) if sr else concurrency
            prompt = PROMPT if mv.kind == "text-conditional" else None
            body = json.dumps({"model": name, "seed": 0, **({"prompt": prompt} if prompt else {})})
            paths: dict[str, Callable[[], object]] = {}
            if sr:
                paths["direct"] = lambda mv=mv: DirectUpscale(tc_aio.InferenceServerClient(triton_url), mv, image)
                paths["gateway-http"] = lambda name=name: GatewayUpscale(url, name, upload)
            else:
                paths["direct"] = lambda mv=mv: DirectGenerator(tc_aio.InferenceServerClient(triton_url), mv)
                paths["gateway-http"] = lambda body=body: HttpClient(
                    url, "/generate", lambda seed, body=body: body.replace('"seed": 0', f'"seed": {seed}').encode())
                paths["gateway-grpc"] = lambda name=name, prompt=prompt: GatewayGrpc(
                    grpc.aio.insecure_channel(target), name, prompt)
            results[name] = {path: [point(make, clients=c, seconds=seconds) for c in (1, many)]
                             for path, make in paths.items()}
            if sr:
                results[name]["input"] = f"{upscale_side}x{upscale_side}"
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return results


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none (nvidia-smi absent)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tritonserver", type=Path, help="a stock tritonserver binary (GPU): started per precision")
    where.add_argument("--triton-url", help="a Triton already serving the repository (gRPC HOST:PORT)")
    where.add_argument("--cpu", action="store_true", help="the CPU Triton of ganserve triton-cpu (tests the script)")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "fp16"], default=["fp32", "fp16"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--upscale-side", type=int, help="upscale input side (default 1024: 1 MP; --cpu: 64)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    side = args.upscale_side or (64 if args.cpu else 1024)
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, GPU: {gpu_name()}",
                    "command": " ".join(["python", *sys.argv]), "load_average_at_start": os.getloadavg(),
                    "precisions": {}}
    repository = args.model_repository.resolve()
    if args.cpu or args.triton_url:
        if args.cpu and "fp16" in args.precisions:
            report["fp16"] = "not measured: the CPU Triton has no TensorRT (fp16 is a GPU path)"
        with contextlib.ExitStack() as stack:
            url = args.triton_url or stack.enter_context(cpu_triton(repository))
            report["triton"] = url if args.triton_url else "CPU Triton (ganserve triton-cpu)"
            report["precisions"]["fp32"] = measure(url, repository=repository, models=args.models,
                                                   seconds=args.seconds, concurrency=args.concurrency,
                                                   upscale_side=side)
    else:
        for precision in args.precisions:
            with tempfile.TemporaryDirectory() as tmp:
                copy = precision_repository(repository, Path(tmp) / "repository", precision)
                with tritonserver(args.tritonserver, copy) as url:
                    report["precisions"][precision] = measure(url, repository=copy, models=args.models,
                                                              seconds=args.seconds, concurrency=args.concurrency,
                                                              upscale_side=side)
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
