"""ganserve against what a user would pick instead, side by side in one run.

    .venv/bin/python benchmarks/bench_peers.py [--rounds 3] [--seconds 4] [--json runs/bench_peers.json]
    .venv/bin/python benchmarks/bench_peers.py --quick        # a few seconds; peers not installed are skipped

Every system serves the shipped dcgan (model_repository/dcgan/1/model.onnx) and does the same work per
image: seed -> z (NumPy PCG64, docs/model-contract.md) -> the ONNX model -> a PNG, one image per request:

  ganserve-http, ganserve-grpc    ``ganserve serve`` (default settings: adaptive batching), POST /generate
                                  (raw PNG) and gRPC Generate, one gateway process;
  ganserve-http-wait, -grpc-wait  the same with Triton-style batching (settings ``--batch-wait-alone
                                  --batch-inline-max-ms 0``: a lone request waits the model's queue delay,
                                  every batch runs in the model's thread): the gateway's batching before
                                  it became adaptive;
  ganserve-http-nobatch           the same with ``--no-batching``;
  plain-fastapi                   FastAPI + ONNX Runtime written by hand (benchmarks/peers/plain_app.py), no
                                  batching, under uvicorn;
  bentoml                         BentoML with adaptive batching (benchmarks/peers/bentoml_service.py;
                                  answers JSON with a base64 PNG, its batchable APIs' form);
  ray-serve                       Ray Serve with ``@serve.batch`` (benchmarks/peers/ray_app.py);
  triton-direct                   tritonclient.grpc.aio -> Triton (CPU: ``ganserve triton-cpu``'s server,
                                  ganserve/dev/triton_cpu.py); the client makes z and the PNG itself;
  ganserve-http->triton           ``ganserve serve --backend triton`` in front of that same Triton.

BentoML and Ray Serve are installed on demand, each into its own virtualenv under runs/peers/ (ignored by
git; pinned versions below); the plain app and tritonclient use what ganserve already installs. The peers'
own code is in benchmarks/peers/ (work.py: the shared per-image work, as each framework's user writes it).

What loads them (``--load``): wrk for HTTP (one C thread; a new seed per request from
peers/wrk_seeds.lua) and h2load for ganserve's gRPC (one C thread; the same request every time, as h2load
sends one body: the same work, since nothing is cached), so that the load itself takes little of a small
machine's CPU; or the Python clients below for everything (asyncio; a minimal HTTP/1.1 client, grpc.aio).

Measured in interleaved rounds (each round every system in turn, the order rotated per round, so the
machine's drift hits all alike): p50/p99 at 1 client (sequential requests), images/s and p99 at 32
concurrent clients (keep-alive connections; one channel for gRPC), and server CPU per request: user +
system time of the server's whole process tree (Linux /proc: Ray's raylet and workers, BentoML's workers,
Triton's python-backend stubs; for ganserve->Triton the gateway and Triton together, and the gateway
alone). A system that burns CPU with no requests (``--freeze-above``, 5 % of a core: Ray's raylet and GCS
take ~14 %) is stopped (SIGSTOP, then SIGCONT) while the others are measured, so that its background
work does not slow them on a 2-core machine; the rest keep running (stopped and resumed, BentoML's
answers took over a second from then on, and Triton's python backend answered the gateway in front of
it with errors). What the other systems took during each measurement is recorded as a check. Before
measuring, each system's image for seed 7 is decoded and compared with the reference work.
All on loopback; every load stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
import httpx
import numpy as np
from harness import cpu_seconds, free_port, gateway
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))

from work import Generator

from ganserve.serve import seeds
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

MODEL = "dcgan"
VENVS = ROOT / "runs" / "peers"  # git-ignored (runs/)
# The peers that need installing, pinned: what runs/peers/<name> gets.
INSTALLS = {
    "bentoml": ["bentoml==1.4.40", "onnxruntime", "pillow", "numpy"],
    "ray": ["ray[serve]==2.60.0", "onnxruntime", "pillow", "numpy"],
}
CHECK_SEED = 7


# --- processes -----------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants now."""
    children, seen, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo.extend(children.get(pid, ()))
    return seen


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds so far of every process in the trees."""
    out = {}
    for pid in process_tree(roots):
        with contextlib.suppress(OSError, IndexError, ValueError):
            out[pid] = cpu_seconds(pid)
    return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots (processes that started meanwhile count from 0)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """Stops the processes (SIGSTOP) for the block, then lets them go on (SIGCONT): while one system is
    measured, the background work of a busy idle one (Ray's raylet and GCS) cannot take the cores it
    needs. Processes that are gone meanwhile are skipped."""
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def others_of(system: "System", systems: list["System"]) -> list[int]:
    """The processes of ``systems`` other than ``system``, less those ``system`` shares (one gateway
    serves HTTP and gRPC; one Triton serves the direct client and the gateway in front of it)."""
    mine = set(process_tree(system.roots))
    return [pid for pid in process_tree([p for s in systems if s is not system for p in s.roots]) if pid not in mine]


@contextlib.contextmanager
def server(command: list[str], *, ready: Callable[[], bool], env: dict[str, str] | None = None,
           cwd: Path = PEERS, what: str, timeout_s: float = 180) -> Iterator[int]:
    """Runs ``command`` in its own session until ``ready()``; yields its pid. Afterwards SIGTERM to its
    process group, then SIGKILL to the group and to every descendant seen (Ray starts its own)."""
    with tempfile.TemporaryFile() as log:
        yield from _run_server(command, ready=ready, env=env, cwd=cwd, what=what, timeout_s=timeout_s, log=log)


def _run_server(command: list[str], *, ready: Callable[[], bool], env: dict[str, str] | None, cwd: Path, what: str,
                timeout_s: float, log) -> Iterator[int]:
    process = subprocess.Popen(command, cwd=cwd, env=os.environ | (env or {}), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    seen: set[int] = {process.pid}
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{what} did not start ({' '.join(command)}):\n{tail}")
            time.sleep(0.3)
        yield process.pid
        seen.update(process_tree([process.pid]))
    finally:
        seen.update(process_tree([process.pid]))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        for pid in seen:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _answers(url: str, body: dict) -> bool:
    try:
        return httpx.post(url, json=body, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def peer_python(name: str, *, install: bool) -> Path | None:
    """runs/peers/<name>/bin/python with the pinned packages, installed now when ``install``; None when
    not installed and not to be."""
    venv = VENVS / name
    python, stamp = venv / "bin" / "python", venv / "installed.json"
    wanted = INSTALLS[name]
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return python
    if not install:
        return None
    print(f"bench_peers: installing {' '.join(wanted)} into {venv} (once)", file=sys.stderr, flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
                   check=True)
    stamp.write_text(json.dumps(wanted))
    return python


def _version(python: Path | None, package: str) -> str:
    if python is None:
        return metadata.version(package)
    done = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


# --- clients -------------------------------------------------------------------------------------

class HttpClient:
    """A minimal HTTP/1.1 keep-alive client (Content-Length or chunked answers): a load generator's own
    CPU is taken from the servers on a small machine, and httpx costs several times this."""

    def __init__(self, url: str, path: str, body: Callable[[int], bytes],
                 decode: Callable[[bytes], bytes] = lambda data: data) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self._host, self._port, self._path, self._body, self._decode = host, int(port), path, body, decode
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def generate(self, seed: int) -> bytes:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        body = self._body(seed)
        self._writer.write(f"POST {self._path} HTTP/1.1\r\nHost: {self._host}\r\nAccept: image/png\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
        if b"content-length" in headers:
            data = await self._reader.readexactly(int(headers[b"content-length"]))
        else:  # chunked
            parts = []
            while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
            await self._reader.readexactly(2)
            data = b"".join(parts)
        if status != 200:
            raise RuntimeError(f"POST {self._path}: HTTP {status}: {data[:300]!r}")
        return self._decode(data)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class GrpcClient:
    """ganserve's gRPC Generate over one shared grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.GatewayStub(channel)

    async def generate(self, seed: int) -> bytes:
        response = await self._stub.Generate(pb.GenerateRequest(model=MODEL, seed=seed), timeout=60)
        return response.images[0].image.data

    async def close(self) -> None:
        pass


class TritonClient:
    """tritonclient.grpc.aio straight to Triton: z made here, the float image made a PNG here (Pillow)."""

    def __init__(self, client) -> None:
        import tritonclient.grpc as tc

        self._client, self._tc = client, tc

    async def generate(self, seed: int) -> bytes:
        z = seeds.latent(seed, latent_dim=100)[None]
        tensor = self._tc.InferInput("z", [1, 100], "FP32")
        tensor.set_data_from_numpy(z)
        image = (await self._client.infer(MODEL, [tensor])).as_numpy("image")
        pixels = np.clip(np.rint((image[0, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        return buffer.getvalue()

    async def close(self) -> None:
        pass


def _bentoml_png(data: bytes) -> bytes:
    return base64.b64decode(json.loads(data)[0])


# --- systems -------------------------------------------------------------------------------------

@dataclass
class System:
    """A running system: the pids whose trees are its server, and how to make a client (a shared
    channel where the protocol multiplexes, else one connection per client)."""

    name: str
    roots: list[int]
    client: Callable[[], object]
    gateway_roots: list[int] = field(default_factory=list)  # ganserve->Triton: the gateway alone
    http: tuple[str, str] | None = None  # (URL, body template with %d for the seed): what wrk can load
    grpc: str | None = None  # ganserve's gRPC target: what h2load can load (Generate)


def ganserve_body(seed: int) -> bytes:
    return json.dumps({"model": MODEL, "seed": seed}).encode()


GANSERVE_TEMPLATE = ganserve_body(0).decode().replace("0", "%d")


def seed_body(seed: int) -> bytes:
    return json.dumps({"seed": seed}).encode()


def bentoml_body(seed: int) -> bytes:
    return json.dumps({"seeds": [seed]}).encode()


async def one_client(client, *, seconds: float, first_seed: int) -> list[float]:
    times, seed, stop = [], first_seed, time.monotonic() + seconds
    while time.monotonic() < stop:
        start = time.perf_counter()
        await client.generate(seed)
        times.append(time.perf_counter() - start)
        seed += 1
    return times


async def many_clients(clients: list, *, seconds: float, first_seed: int) -> list[float]:
    results = await asyncio.gather(*(one_client(c, seconds=seconds, first_seed=first_seed + i * 1_000_000)
                                     for i, c in enumerate(clients)))
    return [t for times in results for t in times]


def wrk_load(system: System, *, clients: int, seconds: float, first_seed: int, warm_up: bool = False) -> dict:
    """``clients`` keep-alive connections from wrk (one thread) for ``seconds``: wrk's figures. Any
    error fails the run; no answer at all fails it too, except in a ``warm_up`` (a cold peer's first
    answer may take longer than the warm-up)."""
    assert system.http is not None
    url, template = system.http
    done = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s",
                           "-s", str(PEERS / "wrk_seeds.lua"), url, "--", "/generate", template, str(first_seed)],
                          capture_output=True, text=True, check=True, timeout=seconds + 120)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["non_2xx"] or figures["socket_errors"] or not (figures["requests"] or warm_up):
        raise RuntimeError(f"{system.name}: wrk saw {figures}:\n{done.stdout[-2000:]}")
    return figures


def h2load_load(system: System, *, clients: int, seconds: float, seed: int) -> dict:
    """``clients`` HTTP/2 connections from h2load (one thread, one stream each at a time) calling
    gRPC Generate for ``seed`` (the same request every time: h2load sends one body) for ``seconds``:
    the figures of its per-request log. Every answer must be HTTP 200 with grpc-status 0; h2load sees
    only the HTTP status, so a sample of the same request is checked through grpcio first."""
    assert system.grpc is not None
    message = pb.GenerateRequest(model=MODEL, seed=seed).SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "log.tsv"
        body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC's length-prefixed message
        done = subprocess.run(["h2load", "-t1", f"-c{clients}", "-m1", f"-D{max(1, round(seconds))}",
                               "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body),
                               "--log-file", str(log), f"http://{system.grpc}/ganserve.v1.Gateway/Generate"],
                              capture_output=True, text=True, check=True, timeout=seconds + 120)
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    statuses = {r[1] for r in rows}
    if not rows or statuses != {"200"}:
        raise RuntimeError(f"{system.name}: h2load saw statuses {statuses}:\n{done.stdout[-2000:]}")
    times_ms = np.array([int(r[2]) / 1000 for r in rows])
    starts = np.array([int(r[0]) for r in rows])
    span_s = (starts.max() - starts.min()) / 1e6 + float(np.median(times_ms)) / 1000
    return {"requests": len(rows), "images_per_s": len(rows) / span_s, "p50_ms": float(np.percentile(times_ms, 50)),
            "p99_ms": float(np.percentile(times_ms, 99))}


def _check_grpc_seed(system: System, seed: int) -> None:
    async def one() -> None:
        client = system.client()
        try:
            await client.generate(seed)
        finally:
            await client.close()

    asyncio.run(one())


def measure(system: System, *, seconds: float, concurrency: int, round_: int, load: str = "python") -> dict:
    """1 client, then ``concurrency`` clients, each for ``seconds`` after a short warm-up. ``load``
    "wrk": HTTP systems are loaded by wrk (its own figures: p50/p99 from its histogram), the others
    by the Python clients."""
    if load == "wrk" and system.grpc is not None and shutil.which("h2load"):
        figures = {}
        seed = round_ * 10**8 + 7
        _check_grpc_seed(system, seed)
        for clients_n in (1, concurrency):
            h2load_load(system, clients=clients_n, seconds=1, seed=seed)  # warm-up
            before = tree_cpu(system.roots)
            got = h2load_load(system, clients=clients_n, seconds=seconds, seed=seed)
            cpu = cpu_between(before, tree_cpu(system.roots))
            figures["c1" if clients_n == 1 else f"c{concurrency}"] = {
                **got, "server_cpu_ms": cpu / got["requests"] * 1000, "load": "h2load"}
        return figures
    if load == "wrk" and system.http is not None:
        figures: dict = {}
        for clients_n in (1, concurrency):
            wrk_load(system, clients=clients_n, seconds=1, first_seed=10**9 + round_ * 10**8, warm_up=True)
            before, gw_before = tree_cpu(system.roots), tree_cpu(system.gateway_roots)
            got = wrk_load(system, clients=clients_n, seconds=seconds, first_seed=round_ * 10**8 + clients_n * 10**6)
            cpu = cpu_between(before, tree_cpu(system.roots))
            gw_cpu = cpu_between(gw_before, tree_cpu(system.gateway_roots))
            key = "c1" if clients_n == 1 else f"c{concurrency}"
            figures[key] = {"requests": got["requests"], "images_per_s": got["requests"] / (got["duration_us"] / 1e6),
                            "p50_ms": got["p50_us"] / 1000, "p99_ms": got["p99_us"] / 1000,
                            "server_cpu_ms": cpu / got["requests"] * 1000, "load": "wrk"}
            if system.gateway_roots:
                figures[key]["gateway_cpu_ms"] = gw_cpu / got["requests"] * 1000
        return figures

    async def run() -> dict:
        figures: dict = {}
        for clients_n in (1, concurrency):
            clients = [system.client() for _ in range(clients_n)]
            await many_clients(clients, seconds=min(0.5, seconds / 4), first_seed=10**9 + round_ * 10**8)  # warm-up
            before = tree_cpu(system.roots)
            gw_before = tree_cpu(system.gateway_roots)
            start = time.perf_counter()
            times = await many_clients(clients, seconds=seconds, first_seed=round_ * 10**8 + clients_n)
            elapsed = time.perf_counter() - start
            cpu = cpu_between(before, tree_cpu(system.roots))
            gw_cpu = cpu_between(gw_before, tree_cpu(system.gateway_roots))
            for c in clients:
                await c.close()
            key = "c1" if clients_n == 1 else f"c{concurrency}"
            figures[key] = {"load": "python", "requests": len(times), "images_per_s": len(times) / elapsed,
                            "p50_ms": float(np.percentile(times, 50)) * 1000,
                            "p99_ms": float(np.percentile(times, 99)) * 1000,
                            "server_cpu_ms": cpu / len(times) * 1000,
                            "samples_ms": [round(t * 1000, 3) for t in times]}
            if system.gateway_roots:
                figures[key]["gateway_cpu_ms"] = gw_cpu / len(times) * 1000
        return figures

    return asyncio.run(run())


def check_image(system: System, reference: bytes) -> float:
    """Max abs pixel difference between the system's PNG for CHECK_SEED and the reference work's."""

    async def one() -> bytes:
        client = system.client()
        try:
            return await client.generate(CHECK_SEED)
        finally:
            await client.close()

    got = np.asarray(Image.open(io.BytesIO(asyncio.run(one()))).convert("L"), dtype=np.int16)
    want = np.asarray(Image.open(io.BytesIO(reference)).convert("L"), dtype=np.int16)
    if got.shape != want.shape:
        raise RuntimeError(f"{system.name}: a {got.shape} image for seed {CHECK_SEED}, expected {want.shape}")
    return float(np.abs(got - want).max())


def start_systems(stack: contextlib.ExitStack, names: list[str], *, repository: Path, model_path: Path,
                  install: bool, skipped: dict[str, str], versions: dict[str, str]) -> list[System]:
    env = {"GANSERVE_BENCH_MODEL": str(model_path)}
    systems: list[System] = []
    if {"ganserve-http", "ganserve-grpc"} & set(names):
        url, target, pid = stack.enter_context(gateway(repository))
        if "ganserve-http" in names:
            systems.append(System("ganserve-http", [pid], lambda url=url: HttpClient(url, "/generate", ganserve_body),
                                  http=(url, GANSERVE_TEMPLATE)))
        if "ganserve-grpc" in names:
            # a channel is bound to the event loop it was made on: one per measurement (asyncio.run)
            systems.append(System("ganserve-grpc", [pid], lambda t=target: GrpcClient(_channel(t)), grpc=target))
        versions["ganserve"] = metadata.version("ganserve")
    if {"ganserve-http-wait", "ganserve-grpc-wait"} & set(names):
        # Triton-style batching, by settings: a lone request waits the model's queue delay, every batch
        # runs in the model's thread (the gateway's batching before it became adaptive).
        url, target, pid = stack.enter_context(gateway(repository, args=["--batch-inline-max-ms", "0",
                                                                         "--batch-wait-alone"]))
        if "ganserve-http-wait" in names:
            systems.append(System("ganserve-http-wait", [pid],
                                  lambda url=url: HttpClient(url, "/generate", ganserve_body),
                                  http=(url, GANSERVE_TEMPLATE)))
        if "ganserve-grpc-wait" in names:
            systems.append(System("ganserve-grpc-wait", [pid], lambda t=target: GrpcClient(_channel(t)), grpc=target))
    if "ganserve-http-nobatch" in names:
        url, _, pid = stack.enter_context(gateway(repository, args=["--no-batching"]))
        systems.append(System("ganserve-http-nobatch", [pid], lambda url=url: HttpClient(url, "/generate", ganserve_body),
                              http=(url, GANSERVE_TEMPLATE)))
    def http_peer(name: str, command: Callable[[int], list[str]], *, probe: dict, body: Callable[[int], bytes],
                  decode: Callable[[bytes], bytes] = lambda data: data, extra_env: dict[str, str] | None = None,
                  what: str) -> None:
        """Starts a peer answering POST /generate on a free port (``command(port)``); ready once ``probe``
        gets a 200."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        pid = stack.enter_context(server(command(port), ready=lambda: _answers(f"{url}/generate", probe),
                                         env=env | (extra_env or {}), what=what))
        systems.append(System(name, [pid], lambda: HttpClient(url, "/generate", body, decode),
                              http=(url, body(0).decode().replace("0", "%d"))))

    if "plain-fastapi" in names:
        http_peer("plain-fastapi", lambda port: [
            sys.executable, "-m", "uvicorn", "plain_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"], probe={"seed": 1}, body=seed_body, what="plain FastAPI app")
        versions |= {"fastapi": metadata.version("fastapi"), "uvicorn": metadata.version("uvicorn")}
    peers = {  # name -> (venv, command after the python, readiness probe, body, decode, environment)
        "bentoml": ("bentoml", ["-m", "bentoml", "serve", "bentoml_service:DCGAN", "--host", "127.0.0.1", "--port"],
                    {"seeds": [1]}, bentoml_body, _bentoml_png, {"BENTOML_DO_NOT_TRACK": "True"}),
        "ray-serve": ("ray", ["ray_app.py", "--port"], {"seed": 1}, seed_body, lambda data: data,
                      {"RAY_USAGE_STATS_ENABLED": "0"}),
    }
    for name, (venv, args, probe, body, decode, extra_env) in peers.items():
        if name not in names:
            continue
        python = peer_python(venv, install=install)
        if python is None:
            skipped[name] = f"not installed (runs/peers/{venv}; run without --quick to install it)"
            continue
        http_peer(name, lambda port, python=python, args=args: [str(python), *args, str(port)], probe=probe,
                  body=body, decode=decode, extra_env=extra_env, what=name)
        versions[venv] = _version(python, venv)
    if {"triton-direct", "ganserve-http->triton"} & set(names):
        from ganserve.dev.triton_cpu import LocalTriton, TritonNotInstalled, derive_cpu_repository

        try:
            cpu_repository = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "cpu"
            derive_cpu_repository(repository, cpu_repository)
            triton = stack.enter_context(LocalTriton(cpu_repository))
        except TritonNotInstalled as exc:
            for name in ("triton-direct", "ganserve-http->triton"):
                if name in names:
                    skipped[name] = f"no Triton server here: {exc}"
        else:
            triton_pid = triton._process.pid  # the tritonserver process; its python-backend stubs below it
            versions["tritonserver"] = "2.51 (nvidia-pytriton 0.7.0, CPU, python backend running ONNX Runtime)"
            versions["tritonclient"] = metadata.version("tritonclient")
            if "triton-direct" in names:
                systems.append(System("triton-direct", [triton_pid],
                                      lambda url=triton.grpc_url: TritonClient(_triton_client(url))))
            if "ganserve-http->triton" in names:
                url, _, pid = stack.enter_context(gateway(repository, args=["--backend", "triton", "--triton-url",
                                                                            triton.grpc_url]))
                systems.append(System("ganserve-http->triton", [pid, triton_pid],
                                      lambda url=url: HttpClient(url, "/generate", ganserve_body), gateway_roots=[pid],
                                      http=(url, GANSERVE_TEMPLATE)))
    return systems


def _channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target)


def _triton_client(url: str):
    import tritonclient.grpc.aio as tc_aio

    return tc_aio.InferenceServerClient(url)


SYSTEMS = ["ganserve-http", "ganserve-grpc", "ganserve-http-wait", "ganserve-grpc-wait", "ganserve-http-nobatch",
           "plain-fastapi", "bentoml", "ray-serve", "triton-direct", "ganserve-http->triton"]


def _p99(rounds: list[dict], phase: str) -> float:
    """p99 of every round's samples pooled (Python clients), or the median of the rounds' p99s (wrk,
    which reports percentiles, not samples)."""
    if "samples_ms" in rounds[0][phase]:
        return float(np.percentile([t for r in rounds for t in r[phase]["samples_ms"]], 99))
    return float(np.median([r[phase]["p99_ms"] for r in rounds]))


def summarise(per_round: dict[str, list[dict]], *, concurrency: int, baseline: str = "ganserve-http") -> dict:
    """Medians over rounds; ratios to ``baseline`` within each round, then their median."""
    many = f"c{concurrency}"
    out = {}
    for name, rounds in per_round.items():
        def med(phase: str, key: str, rounds: list[dict] = rounds) -> float:
            return float(np.median([r[phase][key] for r in rounds]))

        row = {"p50_ms_1_client": med("c1", "p50_ms"),
               "p99_ms_1_client": _p99(rounds, "c1"),
               f"images_per_s_{concurrency}_clients": med(many, "images_per_s"),
               f"p99_ms_{concurrency}_clients": _p99(rounds, many),
               "server_cpu_ms_per_request": med(many, "server_cpu_ms"),
               "server_cpu_ms_per_request_1_client": med("c1", "server_cpu_ms")}
        if "gateway_cpu_ms" in rounds[0][many]:
            row["gateway_cpu_ms_per_request"] = med(many, "gateway_cpu_ms")
            row["gateway_cpu_ms_per_request_1_client"] = med("c1", "gateway_cpu_ms")
        if baseline in per_round:
            base = per_round[baseline]
            row["ratio_p50_1_client"] = float(np.median([r["c1"]["p50_ms"] / b["c1"]["p50_ms"] for r, b in zip(rounds, base)]))
            row[f"ratio_images_per_s_{concurrency}_clients"] = float(np.median(
                [r[many]["images_per_s"] / b[many]["images_per_s"] for r, b in zip(rounds, base)]))
            row["ratio_server_cpu"] = float(np.median(
                [r[many]["server_cpu_ms"] / b[many]["server_cpu_ms"] for r, b in zip(rounds, base)]))
        out[name] = {k: round(v, 3) for k, v in row.items()}
    return out


def table(summary: dict, *, concurrency: int, idle: dict[str, float] | None = None) -> str:
    lines = [(f"| system | p50 ms, 1 client | p99 ms, 1 client | images/s, {concurrency} clients | p99 ms, "
              f"{concurrency} clients | server CPU ms/request, 1 client | server CPU ms/request, {concurrency} "
              f"clients | idle CPU % | ratios to ganserve-http: p50 1 client / images/s / CPU |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in summary.items():
        cpu1, cpu = f"{r['server_cpu_ms_per_request_1_client']:.2f}", f"{r['server_cpu_ms_per_request']:.2f}"
        if "gateway_cpu_ms_per_request" in r:
            cpu1 += f" (gateway {r['gateway_cpu_ms_per_request_1_client']:.2f})"
            cpu += f" (gateway {r['gateway_cpu_ms_per_request']:.2f})"
        ratios = (f"{r['ratio_p50_1_client']:.2f} / {r[f'ratio_images_per_s_{concurrency}_clients']:.2f} / "
                  f"{r['ratio_server_cpu']:.2f}" if "ratio_p50_1_client" in r else "")
        lines.append(f"| {name} | {r['p50_ms_1_client']:.2f} | {r['p99_ms_1_client']:.2f} | "
                     f"{r[f'images_per_s_{concurrency}_clients']:.0f} | {r[f'p99_ms_{concurrency}_clients']:.1f} | "
                     f"{cpu1} | {cpu} | {(idle or {}).get(name, '')} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=SYSTEMS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per system, phase and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 1 s, 4 clients; peers not installed yet are skipped, not installed")
    parser.add_argument("--json", type=Path, help="also write the results (raw samples included) here")
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto",
                        help="what loads the systems: wrk (C, one thread: little of the machine's CPU goes "
                             "to the load itself) for HTTP, and h2load (C, nghttp2) for ganserve's gRPC where "
                             "installed, or the Python clients (asyncio) for all; auto: wrk when installed. "
                             "Triton direct always runs its Python client (it makes z and the PNG itself)")
    parser.add_argument("--freeze-above", type=float, default=5.0, metavar="PERCENT",
                        help="stop (SIGSTOP) a system while the others are measured when, idle, it takes at "
                             "least this much of a core (Ray: ~14 %%), so that its background work does not "
                             "slow them; 0: every system, 100: none. Stopping BentoML or Triton breaks them")
    args = parser.parse_args()
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "python"
    elif args.load == "wrk" and not shutil.which("wrk"):
        sys.exit("--load wrk: wrk is not installed (Debian: apt-get install wrk)")
    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 1.0, 4

    model_path = args.model_repository / MODEL / "1" / "model.onnx"
    if not model_path.is_file():
        sys.exit(f"{model_path} not found: this benchmark serves the shipped dcgan")
    report: dict = {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                   f"Python {platform.python_version()}",
        "command": " ".join(["python", *sys.argv]), "model": str(model_path.relative_to(ROOT)) if
        model_path.is_relative_to(ROOT) else str(model_path),
        "rounds": args.rounds, "seconds": args.seconds, "concurrency": args.concurrency, "load": args.load,
        "load_average_at_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    skipped: dict[str, str] = {}
    versions: dict[str, str] = {"onnxruntime": metadata.version("onnxruntime")}
    reference = Generator(str(model_path)).pngs([CHECK_SEED])[0]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        repository = Path(tmp)
        (repository / MODEL).symlink_to((args.model_repository / MODEL).resolve())
        systems = start_systems(stack, args.systems, repository=repository, model_path=model_path,
                                install=not args.quick, skipped=skipped, versions=versions)
        report["image_check_max_abs_diff"] = {s.name: check_image(s, reference) for s in systems}
        bad = {k: v for k, v in report["image_check_max_abs_diff"].items() if v > 2}
        if bad:
            sys.exit(f"these systems do not give the reference image for seed {CHECK_SEED}: {bad}")
        idle = {s.name: tree_cpu(s.roots) for s in systems}
        time.sleep(min(2.0, args.seconds))
        report["idle_cpu_percent"] = {s.name: round(100 * cpu_between(idle[s.name], tree_cpu(s.roots))
                                                    / min(2.0, args.seconds), 1) for s in systems}
        per_round: dict[str, list[dict]] = {s.name: [] for s in systems}
        others_cpu: dict[str, list[float]] = {s.name: [] for s in systems}
        report["others_cpu_percent"] = others_cpu
        busy = [s for s in systems if report["idle_cpu_percent"][s.name] >= args.freeze_above]
        report["frozen_while_others_measured"] = [s.name for s in busy]
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for system in order:
                others = others_of(system, systems)
                with frozen(others_of(system, busy)):
                    before, started = tree_cpu(others), time.perf_counter()
                    figures = measure(system, seconds=args.seconds, concurrency=args.concurrency, round_=r,
                                      load=args.load)
                    # what the other systems took meanwhile (nothing, for those stopped): a check
                    others_cpu[system.name].append(round(
                        100 * cpu_between(before, tree_cpu(others)) / (time.perf_counter() - started), 1))
                per_round[system.name].append(figures)
                print(f"round {r + 1}/{args.rounds} {system.name}: "
                      + json.dumps({k: {m: round(v, 2) if isinstance(v, float) else v for m, v in f.items() if m != "samples_ms"}
                                    for k, f in figures.items()})
                      + f" (other systems meanwhile: {others_cpu[system.name][-1]} % CPU)", file=sys.stderr, flush=True)
    report["load_average_at_end"] = os.getloadavg()
    report["versions"], report["skipped"] = versions, skipped
    report["summary"] = summarise(per_round, concurrency=args.concurrency)
    report["rounds_raw"] = per_round
    print(table(report["summary"], concurrency=args.concurrency, idle=report["idle_cpu_percent"]))
    print(json.dumps({k: v for k, v in report.items() if k not in ("rounds_raw",)}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
