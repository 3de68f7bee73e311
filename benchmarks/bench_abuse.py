"""The gateway under abuse (issue #11): storms of hostile or unlucky traffic against a real gateway, with
its health, memory and goodput measured throughout.

    .venv/bin/python benchmarks/bench_abuse.py [--json runs/bench_abuse.json] [--soak-s 600] [--quick]
        [--storms upscale disconnect bodies costly slow deadline soak shutdown]

One ``ganserve serve`` process (benchmarks/harness.py) on the shipped model_repository with default
settings, loopback only. Run on demand; no test runs it. While the storms run:

  * a health prober GETs ``/healthz`` every 100 ms on a kept-alive connection and every second on a
    fresh one, and asks gRPC health (``Check``) every 500 ms, each from its own thread;
  * an RSS sampler reads the gateway's VmRSS (/proc/PID/status) every 100 ms, and its VmHWM (peak,
    reset at each storm's start) once per storm;
  * a metrics sampler reads ``ganserve_admission_memory_bytes`` and ``ganserve_admission_backlog_seconds``
    from ``/metrics`` every second.

Storms, in this order (``--quick`` shrinks each to a few seconds and the soak to 30 s):

  1. upscale: 8, then 32 clients posting a 256x256 photo (scikit-image's astronaut) to /upscale again
     and again (no pause, Retry-After ignored) for 60 s, with the model's tile size and with
     ``tile_size=128``; then 4 clients posting one 1024x1024 each (the largest max_pixels allows);
  2. disconnect: 16 clients sending an upscale and dropping the connection after 0.2-1 s, for 30 s;
     then the seconds until the gateway's CPU time stops rising and its admission backlog is empty;
  3. bodies: 4 normal clients (POST /generate n = 1) alone (the baseline), then beside 4 clients
     sending 20 MB and 50 MB JSON bodies (two with Content-Length, two chunked) for 30 s;
  4. costly: the 4 normal clients beside 4 clients asking n = 64 at truncation 0.05, for 30 s; then
     the baseline again (this machine's speed drifts);
  5. slow: 300 slow-header (a byte a second), 100 slow-body (Content-Length 1000, a byte a second)
     and 100 idle connections, each held until the gateway closes it or 40 s; then 1,100 idle ones at
     once (over max_connections, 512); then one normal request;
  6. deadline: gRPC Generate(n = 64) from 50 concurrent callers with 2 ms deadlines or cancelled after
     0-5 ms, for 30 s; then 16 HTTP clients with 5 ms timeouts (they hang up), for 30 s;
  7. soak: --soak-s seconds of mixed valid traffic from 8 clients (6 HTTP, 2 gRPC): generate n 1-8
     with and without truncation, text2img prompts, interpolate 8 frames, 64x64 upscales;
  8. shutdown: SIGTERM during a 16-client upscale storm (12 HTTP, 4 gRPC): seconds until the process
     exits and what the requests in flight got.

Every loop ends by time or count; a request still in flight when a storm's window closes may finish,
up to its deadline and a margin (then it is cancelled and counted "abandoned"). After each storm the
gateway must still answer /healthz, POST /generate and gRPC Generate ("still serves").

Per storm: RSS peak (the larger of the sampled maximum and VmHWM) and after, /healthz p50/p99/max and
failures, gRPC health, the status mix per client group, goodput (successes/s and images/s or output
megapixels/s), how fast refusals (429, 413, 503, 408, RESOURCE_EXHAUSTED, UNAVAILABLE) came back,
and any 504 that came only after seconds of work. The load generator shares the CPU with the gateway
(loopback), so its own CPU time is recorded too. ``--json`` keeps every raw figure.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import grpc
import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import cpu_seconds, gateway, peak_rss_mib, reset_peak, rss_mib
from prometheus_client.parser import text_string_to_metric_families

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc

MIB = 1024 * 1024
SCALE = 4                       # srresnet is x4
MEMORY_BUDGET_MIB = 1536        # memory_budget_mb's default
HEALTH_LIMIT_S = 1.0            # issue #11: /healthz p99 under a second throughout
LATE_504_S = 2.0                # a 504 slower than this came after work (an up-front one is immediate)
UPSCALE_CLIENT_TIMEOUT_S = 200  # upscale_timeout_s (180) and a margin
SHUTDOWN_LIMIT_S = 10 + 3       # shutdown_grace_s + SHUTDOWN_MARGIN_S
OK = {"200", "OK"}
REFUSALS = {"429", "413", "503", "408", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}
UPSCALE_HEADERS = {"Content-Type": "image/png", "Accept": "image/png"}
PROMPTS = ["a red seven", "a small blue three", "a green zero", "a yellow one", "a large purple eight"]


@dataclass(frozen=True)
class Plan:
    """How long and how hard each storm is (``QUICK`` for a smoke run)."""

    upscale_clients: tuple[int, ...] = (8, 32)
    upscale_window_s: float = 60
    upscale_drain_s: float = UPSCALE_CLIENT_TIMEOUT_S  # in-flight upscales may finish this long after
    largest_image: int = 1024                          # max_pixels' default is 1024 x 1024
    largest_clients: int = 4
    disconnect_window_s: float = 30
    idle_wait_s: float = 200                           # most seconds to wait for the gateway to go idle
    baseline_s: float = 20
    bodies_window_s: float = 30
    costly_window_s: float = 30
    slow_hold_s: float = 40
    flood_connections: int = 1100
    deadline_window_s: float = 30
    soak_s: float = 600
    shutdown_after_s: float = 8                        # SIGTERM this long into the storm


QUICK = Plan(upscale_window_s=5, upscale_drain_s=30, largest_image=512, largest_clients=1,
             disconnect_window_s=5, idle_wait_s=30, baseline_s=3, bodies_window_s=5, costly_window_s=5,
             slow_hold_s=12, flood_connections=600, deadline_window_s=5, soak_s=30, shutdown_after_s=4)
# Every storm for about a second: only that the benchmark still runs (tests/test_benchmarks.py)
SMOKE = Plan(upscale_clients=(2,), upscale_window_s=1, upscale_drain_s=10, largest_image=128, largest_clients=1,
             disconnect_window_s=1, idle_wait_s=10, baseline_s=1, bodies_window_s=1, costly_window_s=1,
             slow_hold_s=2, flood_connections=40, deadline_window_s=1, soak_s=1, shutdown_after_s=1)


# --- images -----------------------------------------------------------------------------------------

def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512 x 512 RGB


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def png_size(body: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, without decoding it."""
    if body[:8] != b"\x89PNG\r\n\x1a\n" or len(body) < 24:
        return None
    return struct.unpack(">II", body[16:24])


# --- what the monitor threads record ----------------------------------------------------------------

class Series(threading.Thread):
    """Calls ``sample()`` every ``interval_s`` (start to start; a slow call is followed at once) and
    keeps ``(monotonic time, *result)``; a call that raises or returns None leaves no point."""

    def __init__(self, name: str, interval_s: float, sample: Callable[[], tuple | None]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s, self.sample = interval_s, sample
        self.points: list[tuple] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            start = time.monotonic()
            try:
                value = self.sample()
            except (OSError, KeyError, ValueError, httpx.HTTPError):  # the gateway gone: no point
                value = None
            if value is not None:
                self.points.append((start, *value))
            self.stopping.wait(max(0.0, self.interval_s - (time.monotonic() - start)))

    def between(self, start: float, end: float) -> list[tuple]:
        return [p for p in list(self.points) if start <= p[0] <= end]


class Monitor:
    """The health prober, the RSS sampler and the metrics sampler, each in its own thread."""

    def __init__(self, url: str, grpc_target: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self._probe = httpx.Client(base_url=url, timeout=5)
        self._scrape = httpx.Client(base_url=url, timeout=5)
        self._channel = grpc.insecure_channel(grpc_target)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.healthz = Series("healthz", 0.1, lambda: self._get(self._probe))
        self.healthz_fresh = Series("healthz-fresh", 1.0, self._fresh)
        self.grpc_health = Series("grpc-health", 0.5, self._grpc)
        self.rss = Series("rss", 0.1, lambda: (rss_mib(pid),))
        self.admission = Series("admission", 1.0, self._admission)
        self.series = [self.healthz, self.healthz_fresh, self.grpc_health, self.rss, self.admission]

    @staticmethod
    def _get(client: httpx.Client) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            ok = client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - start, ok

    def _fresh(self) -> tuple[float, bool]:
        with httpx.Client(base_url=self.url, timeout=5) as client:  # a new connection each time
            return self._get(client)

    def _grpc(self) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            answer = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            ok = answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            ok = False
        return time.perf_counter() - start, ok

    def _admission(self) -> tuple[float, float] | None:
        values = {}
        for line in self._scrape.get("/metrics").text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("ganserve_admission_memory_bytes", "ganserve_admission_backlog_seconds"):
                values[name] = float(value)
        if len(values) < 2:
            return None
        return values["ganserve_admission_memory_bytes"] / MIB, values["ganserve_admission_backlog_seconds"]

    def outcomes(self) -> Counter:
        """ganserve_requests_total by (protocol, endpoint, outcome), summed over models."""
        counts: Counter = Counter()
        for family in text_string_to_metric_families(self._scrape.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "ganserve_requests_total":
                    labels = sample.labels
                    counts[f"{labels['protocol']} {labels['endpoint']} {labels['outcome']}"] += sample.value
        return counts

    def start(self) -> None:
        for series in self.series:
            series.start()

    def stop(self) -> None:
        for series in self.series:
            series.stopping.set()
        for series in self.series:
            series.join(10)
        self._probe.close()
        self._scrape.close()
        self._channel.close()


# --- one storm's records ----------------------------------------------------------------------------

@dataclass
class Storm:
    """One storm: its window and every request its clients made, ``(group, start s after the storm
    began, seconds, status, units carried)``; status is ``200``, ``429 queue_full`` (HTTP status and
    the error body's code), a gRPC code name, or the client's exception (``ReadTimeout``, ``dropped``)."""

    name: str
    title: str
    start: float = 0.0
    end: float = 0.0
    requests: list[tuple[str, float, float, str, float]] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)      # group -> what its successes carry
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, group: str, started: float, status: str, units: float = 0.0) -> None:
        self.requests.append((group, round(started - self.start, 4), round(time.monotonic() - started, 4),
                              status, units))


def http_status(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "200"
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = response.headers.get("content-type", "?").split(";")[0]
    return f"{response.status_code} {code}"


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ms(values: list[float], q: float) -> float | None:
    """The q-th percentile of seconds, in milliseconds."""
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 1)


async def run_for(coroutines: list[Coroutine], *, bound_s: float) -> int:
    """Runs the coroutines together for at most ``bound_s``; cancels what is left (each records its
    request as ``abandoned``) and returns how many were."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    _, pending = await asyncio.wait(tasks, timeout=bound_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(pending)


def run_async(coroutine: Coroutine) -> Any:
    """On uvloop when installed (less of the load generator's CPU taken from the gateway)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


# --- clients ----------------------------------------------------------------------------------------

async def post_upscale(client: httpx.AsyncClient, storm: Storm, group: str, png: bytes, size: int,
                       params: dict[str, Any] | None = None) -> None:
    started, status, units = time.monotonic(), "abandoned", 0.0
    try:
        response = await client.post("/upscale", params=params, content=png, headers=UPSCALE_HEADERS)
        status = http_status(response)
        if response.status_code == 200:
            if png_size(response.content) == (SCALE * size, SCALE * size):
                units = (SCALE * size) ** 2 / 1e6
            else:
                status = "200 wrong size"
        elif response.status_code == 429:
            storm.extra.setdefault("retry_after_s", []).append(int(response.headers.get("retry-after", -1)))
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    finally:
        storm.record(group, started, status, units)


async def post_json(client: httpx.AsyncClient, storm: Storm, group: str, path: str, body: dict,
                    images: int) -> None:
    started, status = time.monotonic(), "abandoned"
    try:
        status = http_status(await client.post(path, json=body))
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    finally:
        storm.record(group, started, status, images if status == "200" else 0)


async def grpc_call(storm: Storm, group: str, call: Coroutine, units: float) -> None:
    started, status = time.monotonic(), "abandoned"
    try:
        await call
        status = "OK"
    except grpc.aio.AioRpcError as exc:
        status = exc.code().name
    finally:
        storm.record(group, started, status, units if status == "OK" else 0)


def upscale_client(url: str, clients: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(UPSCALE_CLIENT_TIMEOUT_S, connect=10),
                             limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients))


# --- the storms -------------------------------------------------------------------------------------

class Bench:
    def __init__(self, url: str, grpc_target: str, pid: int, plan: Plan, monitor: Monitor) -> None:
        self.url, self.grpc_target, self.pid, self.plan, self.monitor = url, grpc_target, pid, plan, monitor
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        photo = astronaut()
        self.png_256 = png_bytes(photo.resize((256, 256), Image.Resampling.LANCZOS))
        size = plan.largest_image
        self.png_largest = png_bytes(photo.resize((size, size), Image.Resampling.BICUBIC))
        small = photo.resize((256, 256), Image.Resampling.LANCZOS)
        self.png_64 = [png_bytes(small.crop((x, y, x + 64, y + 64))) for x, y in [(0, 0), (96, 64), (160, 160)]]
        self.storms: list[dict] = []
        self.baseline_rps: list[float] = []

    # -- running one storm ----------------------------------------------------------------------------

    def run(self, name: str, title: str, body: Callable[[Storm], Coroutine], *, bound_s: float,
            after_check: bool = True) -> dict:
        storm = Storm(name, title)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {title}", file=sys.stderr, flush=True)
        outcomes = self.monitor.outcomes()
        hwm_reset = reset_peak(self.pid)
        gateway_cpu, client_cpu = cpu_seconds(self.pid), own_cpu_seconds()
        rss_before = rss_mib(self.pid)
        started_at, load = time.strftime("%H:%M:%S"), os.getloadavg()[0]
        storm.start = time.monotonic()
        try:
            run_async(asyncio.wait_for(body(storm), bound_s))
        except (TimeoutError, OSError, httpx.HTTPError, grpc.RpcError) as exc:  # recorded; the next storm runs
            storm.extra["error"] = repr(exc)
        storm.end = time.monotonic()
        alive = Path(f"/proc/{self.pid}/status").exists() and after_check
        figures = {
            "started_at": started_at, "load_average_1min": round(load, 2),
            "gateway_cpu_s": round(cpu_seconds(self.pid) - gateway_cpu, 1) if alive else None,
            "client_cpu_s": round(own_cpu_seconds() - client_cpu, 1),
            "rss_before_mib": round(rss_before, 1),
            "rss_after_mib": round(rss_mib(self.pid), 1) if alive else None,
            "rss_hwm_mib": round(peak_rss_mib(self.pid), 1) if alive and hwm_reset else None,
            "outcomes": (dict(sorted((k, int(v)) for k, v in (self.monitor.outcomes() - outcomes).items()))
                         if alive else None),
            "still_serves": self.still_serves() if after_check else None,
        }
        summary = summarise(storm, self.monitor, figures)
        self.storms.append(summary)
        print(json.dumps({k: v for k, v in summary.items() if k != "raw"}), file=sys.stderr, flush=True)
        return summary

    def still_serves(self) -> dict:
        """/healthz, POST /generate and gRPC Generate after a storm (each bounded by its timeout)."""
        checks: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            checks["healthz"] = str(httpx.get(f"{self.url}/healthz", timeout=10).status_code)
        except httpx.HTTPError as exc:
            checks["healthz"] = type(exc).__name__
        try:
            checks["generate"] = http_status(httpx.post(f"{self.url}/generate", json={"n": 1, "seed": 7},
                                                        timeout=30))
        except httpx.HTTPError as exc:
            checks["generate"] = type(exc).__name__
        with grpc.insecure_channel(self.grpc_target) as channel:
            try:
                pb_grpc.GatewayStub(channel).Generate(pb.GenerateRequest(n=1, seed=7), timeout=30)
                checks["grpc_generate"] = "OK"
            except grpc.RpcError as exc:
                checks["grpc_generate"] = exc.code().name
        checks["seconds"] = round(time.perf_counter() - start, 3)
        checks["ok"] = checks["healthz"] == "200" and checks["generate"] == "200" and checks["grpc_generate"] == "OK"
        return checks

    # -- 1. upscale -------------------------------------------------------------------------------------

    def upscale_storms(self) -> None:
        plan = self.plan
        for tile_size in (None, 128):
            for clients in plan.upscale_clients:
                params = {"model": "srresnet"} | ({"tile_size": tile_size} if tile_size else {})
                tiles = f"tile_size={tile_size}" if tile_size else "model's tile size (64)"
                self.run(f"upscale-{clients}" + (f"-t{tile_size}" if tile_size else ""),
                         f"{clients} clients, 256x256 PNG, {tiles}, {plan.upscale_window_s:g} s",
                         lambda storm, c=clients, p=params: self._upscale(storm, c, p),
                         bound_s=plan.upscale_window_s + plan.upscale_drain_s + 30)
        size, clients = plan.largest_image, plan.largest_clients
        self.run("largest-upscale", f"{clients} clients, one {size}x{size} PNG each (upscale_timeout_s 180)",
                 self._largest, bound_s=UPSCALE_CLIENT_TIMEOUT_S + 30)

    async def _upscale(self, storm: Storm, clients: int, params: dict) -> None:
        group = f"{clients} upscale clients"
        storm.units[group] = "output MP"
        until = time.monotonic() + self.plan.upscale_window_s
        async with upscale_client(self.url, clients) as client:
            async def one() -> None:
                while time.monotonic() < until:
                    await post_upscale(client, storm, group, self.png_256, 256, params)

            storm.extra["abandoned"] = await run_for(
                [one() for _ in range(clients)], bound_s=self.plan.upscale_window_s + self.plan.upscale_drain_s)

    async def _largest(self, storm: Storm) -> None:
        size = self.plan.largest_image
        group = f"{size}x{size} upscales"
        storm.units[group] = "output MP"
        storm.extra["input_png_mib"] = round(len(self.png_largest) / MIB, 2)
        async with upscale_client(self.url, self.plan.largest_clients) as client:
            storm.extra["abandoned"] = await run_for(
                [post_upscale(client, storm, group, self.png_largest, size, {"model": "srresnet"})
                 for _ in range(self.plan.largest_clients)], bound_s=UPSCALE_CLIENT_TIMEOUT_S)

    # -- 2. clients that hang up ------------------------------------------------------------------------

    async def disconnect(self, storm: Storm) -> None:
        png = self.png_256
        request = (b"POST /upscale?model=srresnet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                   b"Accept: image/png\r\nContent-Length: %d\r\n\r\n" % len(png)) + png
        idle_rate = await self._cpu_rate(2.0)   # the probes' own cost, before the storm
        until = time.monotonic() + self.plan.disconnect_window_s

        async def one(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < until:
                started, status, writer = time.monotonic(), "dropped", None
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
                    writer.write(request)
                    try:  # an answer before the drop (a refusal) is recorded; otherwise hang up
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), rng.uniform(0.2, 1.0))
                        status = head.split(b" ", 2)[1].decode()
                    except TimeoutError:
                        status = "dropped"
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    status = type(exc).__name__
                finally:
                    if writer is not None:
                        writer.transport.abort()
                    storm.record("16 clients dropping at 0.2-1 s", started, status)

        await run_for([one(i) for i in range(16)], bound_s=self.plan.disconnect_window_s + 10)
        storm.extra |= await self._until_idle(idle_rate)

    async def _cpu_rate(self, seconds: float) -> float:
        before = cpu_seconds(self.pid)
        await asyncio.sleep(seconds)
        return (cpu_seconds(self.pid) - before) / seconds

    async def _until_idle(self, idle_rate: float) -> dict:
        """Seconds from now until the gateway's CPU rate (over 1 s) falls to its idle rate (the probes'
        cost, + 0.1 core), and until its admission backlog is 0; polled every 0.25 s."""
        threshold = idle_rate + 0.1
        start = time.monotonic()
        trace: list[tuple[float, float]] = []  # (seconds since the storm ended, gateway CPU s)
        cpu_idle_s = backlog_zero_s = None
        while time.monotonic() - start < self.plan.idle_wait_s:
            now = time.monotonic()
            trace.append((round(now - start, 2), cpu_seconds(self.pid)))
            earlier = [(t, c) for t, c in trace if t <= trace[-1][0] - 1.0]
            if cpu_idle_s is None and earlier:
                t, c = earlier[-1]
                if (trace[-1][1] - c) / (trace[-1][0] - t) <= threshold:
                    cpu_idle_s = t  # idle since the start of that window
            points = self.monitor.admission.between(start, now + 1)
            if backlog_zero_s is None and points and points[-1][2] == 0:
                backlog_zero_s = round(points[-1][0] - start, 2)
            if cpu_idle_s is not None and backlog_zero_s is not None:
                break
            await asyncio.sleep(0.25)
        return {"idle_cpu_rate": round(idle_rate, 3), "cpu_idle_after_s": cpu_idle_s,
                "backlog_zero_after_s": backlog_zero_s,
                "cpu_trace": [(t, round(c - trace[0][1], 2)) for t, c in trace]}

    # -- 3, 4. big bodies and costly parameters beside normal clients ------------------------------------

    async def _normal_clients(self, storm: Storm, until: float) -> None:
        group = NORMAL
        storm.units[group] = "images"
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            async def one(seed: int) -> None:
                rng = random.Random(seed)
                while time.monotonic() < until:
                    await post_json(client, storm, group, "/generate", {"n": 1, "seed": rng.getrandbits(32)}, 1)

            await run_for([one(i) for i in range(4)], bound_s=until - time.monotonic() + 35)

    async def baseline(self, storm: Storm) -> None:
        await self._normal_clients(storm, time.monotonic() + self.plan.baseline_s)

    async def bodies(self, storm: Storm) -> None:
        until = time.monotonic() + self.plan.bodies_window_s
        group = "4 big-body clients (20/50 MB)"
        bodies = {mb: b'{"n": 1, "model": "' + b"x" * (mb * 1_000_000) + b'"}' for mb in (20, 50)}

        async def chunks(body: bytes) -> AsyncIterator[bytes]:  # no Content-Length: refused as it arrives
            view = memoryview(body)
            for i in range(0, len(body), MIB):
                yield bytes(view[i:i + MIB])

        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            async def one(i: int) -> None:
                body = bodies[20 if i % 2 == 0 else 50]
                while time.monotonic() < until:
                    started, status = time.monotonic(), "abandoned"
                    try:
                        content = chunks(body) if i >= 2 else body
                        status = http_status(await client.post(
                            "/generate", content=content, headers={"Content-Type": "application/json"}))
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    finally:
                        storm.record(group, started, status)

            await run_for([one(i) for i in range(4)] + [self._normal_clients(storm, until)],
                          bound_s=self.plan.bodies_window_s + 60)

    async def costly(self, storm: Storm) -> None:
        until = time.monotonic() + self.plan.costly_window_s
        group = "4 clients n=64 truncation=0.05"
        storm.units[group] = "images"
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            async def one(seed: int) -> None:
                rng = random.Random(seed)
                while time.monotonic() < until:
                    await post_json(client, storm, group, "/generate",
                                    {"n": 64, "truncation": 0.05, "seed": rng.getrandbits(32)}, 64)

            await run_for([one(100 + i) for i in range(4)] + [self._normal_clients(storm, until)],
                          bound_s=self.plan.costly_window_s + 60)

    # -- 5. slow and idle connections -------------------------------------------------------------------

    async def _slow_connection(self, storm: Storm, group: str, *, first: bytes, drip: bytes) -> None:
        """Opens a connection, sends ``first``, then a byte of ``drip`` a second; ends when the gateway
        answers or closes it, or after slow_hold_s ("held"). Seconds = how long it was held."""
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
        except (OSError, TimeoutError) as exc:
            storm.record(group, started, f"connect {type(exc).__name__}")
            return
        opened = time.monotonic()
        answer = asyncio.ensure_future(reader.read(4096))
        status = "held"
        try:
            if first:
                writer.write(first)
            deadline, i = opened + self.plan.slow_hold_s, 0
            while (left := deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait({answer}, timeout=min(1.0, left))
                if done:
                    data = answer.result()
                    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                    break
                if drip and not writer.transport.is_closing():
                    writer.write(drip[i % len(drip):i % len(drip) + 1])
                    i += 1
        except OSError as exc:
            status = type(exc).__name__
        finally:
            answer.cancel()
            writer.transport.abort()
            storm.requests.append((group, round(opened - storm.start, 4), round(time.monotonic() - opened, 4),
                                   status, 0.0))

    async def slow(self, storm: Storm) -> None:
        header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        body_head = (b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        await run_for([self._slow_connection(storm, "300 slow-header", first=b"", drip=header) for _ in range(300)]
                      + [self._slow_connection(storm, "100 slow-body", first=body_head, drip=b'{"n": 1' + b" " * 993)
                         for _ in range(100)]
                      + [self._slow_connection(storm, "100 idle", first=b"", drip=b"") for _ in range(100)],
                      bound_s=self.plan.slow_hold_s + 30)

    async def flood(self, storm: Storm) -> None:
        n = self.plan.flood_connections
        await run_for([self._slow_connection(storm, f"{n} idle at once", first=b"", drip=b"") for _ in range(n)],
                      bound_s=self.plan.slow_hold_s + 30)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            await post_json(client, storm, "a normal request afterwards", "/generate", {"n": 1, "seed": 1}, 1)

    # -- 6. deadlines and cancellations -----------------------------------------------------------------

    async def grpc_deadlines(self, storm: Storm) -> None:
        until = time.monotonic() + self.plan.deadline_window_s
        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)

            async def one(seed: int) -> None:
                rng = random.Random(seed)
                while time.monotonic() < until:
                    request = pb.GenerateRequest(n=64, seed=rng.getrandbits(32))
                    if rng.random() < 0.5:
                        await grpc_call(storm, "Generate n=64, 2 ms deadline", stub.Generate(request, timeout=0.002), 64)
                        continue
                    started, status, call = time.monotonic(), "abandoned", stub.Generate(request, timeout=10)
                    try:
                        await asyncio.sleep(rng.uniform(0, 0.005))
                        call.cancel()
                        await call
                        status = "OK"
                    except asyncio.CancelledError:
                        if not call.cancelled():
                            raise
                        status = "CANCELLED"
                    except grpc.aio.AioRpcError as exc:
                        status = exc.code().name
                    finally:
                        storm.record("Generate n=64, cancelled at 0-5 ms", started, status, 64 if status == "OK" else 0)

            await run_for([one(i) for i in range(50)], bound_s=self.plan.deadline_window_s + 20)
            await grpc_call(storm, "a normal call afterwards", stub.Generate(pb.GenerateRequest(n=1), timeout=10), 1)

    async def http_timeouts(self, storm: Storm) -> None:
        until = time.monotonic() + self.plan.deadline_window_s
        group = "16 clients, 5 ms timeout"

        async def one(seed: int) -> None:
            rng = random.Random(seed)
            async with httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(0.005, connect=2)) as client:
                while time.monotonic() < until:
                    await post_json(client, storm, group, "/generate",
                                    {"n": rng.randint(1, 64), "seed": rng.getrandbits(32)}, 0)

        await run_for([one(i) for i in range(16)], bound_s=self.plan.deadline_window_s + 20)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            await post_json(client, storm, "a normal request afterwards", "/generate", {"n": 1}, 1)

    # -- 7. soak ----------------------------------------------------------------------------------------

    async def soak(self, storm: Storm) -> None:
        until = time.monotonic() + self.plan.soak_s
        for group, unit in [("generate", "images"), ("text2img", "images"), ("interpolate", "frames"),
                            ("upscale 64x64", "output MP"), ("grpc generate", "images"),
                            ("grpc upscale 64x64", "output MP")]:
            storm.units[group] = unit

        async def http_client(seed: int) -> None:
            rng = random.Random(seed)
            async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
                while time.monotonic() < until:
                    pick, s = rng.random(), rng.getrandbits(32)
                    if pick < 0.4:
                        n = rng.randint(1, 8)
                        body = {"n": n, "seed": s} | ({"truncation": rng.choice([0.5, 0.7, 1.0])} if rng.random() < 0.5
                                                      else {})
                        await post_json(client, storm, "generate", "/generate", body, n)
                    elif pick < 0.65:
                        n = rng.randint(1, 4)
                        await post_json(client, storm, "text2img", "/generate",
                                        {"prompt": rng.choice(PROMPTS), "n": n, "seed": s}, n)
                    elif pick < 0.85:
                        await post_json(client, storm, "interpolate", "/interpolate",
                                        {"frames": 8, "seed_a": s, "seed_b": s + 1}, 8)
                    else:
                        await post_upscale(client, storm, "upscale 64x64", rng.choice(self.png_64), 64,
                                           {"model": "srresnet"})

        async def grpc_client(seed: int, channel: grpc.aio.Channel) -> None:
            rng = random.Random(seed)
            stub = pb_grpc.GatewayStub(channel)
            while time.monotonic() < until:
                if rng.random() < 0.7:
                    n = rng.randint(1, 8)
                    await grpc_call(storm, "grpc generate", stub.Generate(
                        pb.GenerateRequest(n=n, seed=rng.getrandbits(32)), timeout=30), n)
                else:
                    request = pb.UpscaleRequest(model="srresnet", image=pb.Image(data=rng.choice(self.png_64)))
                    await grpc_call(storm, "grpc upscale 64x64", stub.Upscale(request, timeout=60),
                                    (SCALE * 64) ** 2 / 1e6)

        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            await run_for([http_client(i) for i in range(6)] + [grpc_client(10 + i, channel) for i in range(2)],
                          bound_s=self.plan.soak_s + 90)

    # -- 8. shutdown --------------------------------------------------------------------------------------

    async def shutdown(self, storm: Storm) -> None:
        stopping = asyncio.Event()

        async def http_client(client: httpx.AsyncClient) -> None:
            while not stopping.is_set():
                await post_upscale(client, storm, "12 HTTP upscale clients", self.png_256, 256, {"model": "srresnet"})

        async def grpc_client(channel: grpc.aio.Channel) -> None:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.UpscaleRequest(model="srresnet", image=pb.Image(data=self.png_256))
            while not stopping.is_set():
                await grpc_call(storm, "4 gRPC upscale clients", stub.Upscale(request, timeout=UPSCALE_CLIENT_TIMEOUT_S),
                                (SCALE * 256) ** 2 / 1e6)

        async with upscale_client(self.url, 12) as client, grpc.aio.insecure_channel(self.grpc_target) as channel:
            clients = asyncio.ensure_future(run_for([http_client(client) for _ in range(12)]
                                                    + [grpc_client(channel) for _ in range(4)], bound_s=300))
            await asyncio.sleep(self.plan.shutdown_after_s)
            os.kill(self.pid, signal.SIGTERM)
            sigterm = time.monotonic()
            stopping.set()
            await asyncio.sleep(0.3)  # new requests after SIGTERM: 503 / UNAVAILABLE at once, or refused
            async with httpx.AsyncClient(base_url=self.url, timeout=10) as fresh:
                await post_json(fresh, storm, "new request after SIGTERM", "/generate", {"n": 1}, 1)
            await grpc_call(storm, "new gRPC call after SIGTERM",
                            pb_grpc.GatewayStub(channel).Generate(pb.GenerateRequest(n=1), timeout=10), 1)
            exit_s, status = await asyncio.to_thread(wait_exit, self.pid, sigterm, 60)
            await clients
        storm.extra |= {"sigterm_after_s": round(sigterm - storm.start, 2),
                        "exit_after_sigterm_s": rounded(exit_s, 2), "exit_code": status}
        # regroup: the requests in flight when SIGTERM came
        term = sigterm - storm.start
        storm.requests = [(g + (", in flight at SIGTERM" if t < term < t + s and "after" not in g else ""), t, s, st, u)
                          for g, t, s, st, u in storm.requests]


def wait_exit(pid: int, since: float, bound_s: float) -> tuple[float | None, int | None]:
    """Seconds from ``since`` until the child ``pid`` exits (polled every 20 ms, at most ``bound_s``),
    and its exit code; reaps it (the harness's Popen then finds it gone, and copes)."""
    while time.monotonic() - since < bound_s:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return time.monotonic() - since, os.waitstatus_to_exitcode(wait_status)
        time.sleep(0.02)
    return None, None


def git_commit() -> str:
    """HEAD, and "+ changes" when serve/ or model_repository/ differ from it (what the gateway ran)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "serve", "model_repository")
    return git("rev-parse", "--short", "HEAD") + (" + changes in serve/ or model_repository/" if dirty else "")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- summaries --------------------------------------------------------------------------------------

def summarise(storm: Storm, monitor: Monitor, figures: dict) -> dict:
    window = (storm.start, storm.end)

    def probe(series: Series) -> dict:
        points = series.between(*window)
        latencies = [p[1] for p in points if p[2]]
        return {"n": len(points), "failures": sum(not p[2] for p in points),
                "p50_ms": ms(latencies, 50), "p99_ms": ms(latencies, 99),
                "max_ms": rounded(max(latencies) * 1000, 1) if latencies else None}

    rss = monitor.rss.between(*window)
    admission = monitor.admission.between(*window)
    rss_peak = max([p[1] for p in rss] + [figures["rss_hwm_mib"] or 0.0], default=None)
    groups = {}
    for group in dict.fromkeys(r[0] for r in storm.requests):
        rows = [r for r in storm.requests if r[0] == group]
        span = max(t + s for _, t, s, _, _ in rows) - min(t for _, t, _, _, _ in rows)
        ok = [r for r in rows if r[3] in OK]
        refused = [r[2] for r in rows if r[3].split()[0] in REFUSALS]
        late = [r[2] for r in rows if r[3].split()[0] in ("504", "DEADLINE_EXCEEDED") and r[2] > LATE_504_S]
        all_504 = [r[2] for r in rows if r[3].split()[0] in ("504", "DEADLINE_EXCEEDED")]
        groups[group] = {
            "requests": len(rows), "span_s": round(span, 2),
            "mix": dict(Counter(r[3] for r in rows).most_common()),
            "ok": len(ok), "ok_per_s": round(len(ok) / span, 2) if span > 0 and len(rows) > 1 else None,
            "units": storm.units.get(group),
            "units_per_s": (round(sum(r[4] for r in ok) / span, 3)
                            if span > 0 and len(rows) > 1 and storm.units.get(group) else None),
            "latency_p50_s": rounded(percentile([r[2] for r in rows], 50)),
            "latency_p99_s": rounded(percentile([r[2] for r in rows], 99)),
            "latency_max_s": rounded(max(r[2] for r in rows)),
            "ok_latency_p50_s": rounded(percentile([r[2] for r in ok], 50)),
            "ok_latency_max_s": rounded(max((r[2] for r in ok), default=None)),
            "refusal_p50_ms": ms(refused, 50), "refusal_p99_ms": ms(refused, 99),
            "504": len(all_504), "504_late": len(late), "504_max_s": rounded(max(all_504, default=None)),
        }
    extra = dict(storm.extra)
    if "retry_after_s" in extra:
        values = extra.pop("retry_after_s")
        extra["retry_after"] = {"n": len(values), "min": min(values), "p50": percentile(values, 50),
                                "max": max(values)}
    t0 = storm.start
    return {
        "name": storm.name, "title": storm.title, "seconds": round(storm.end - storm.start, 1),
        **figures, "rss_peak_mib": rounded(rss_peak, 1),
        "admission_memory_peak_mib": rounded(max((p[1] for p in admission), default=None), 1),
        "admission_backlog_peak_s": rounded(max((p[2] for p in admission), default=None), 1),
        "healthz": probe(monitor.healthz), "healthz_fresh_connection": probe(monitor.healthz_fresh),
        "grpc_health": probe(monitor.grpc_health), "groups": groups, "extra": extra,
        "raw": {"requests": storm.requests,
                "rss_mib": [(round(p[0] - t0, 2), round(p[1], 1)) for p in rss],
                "admission": [(round(p[0] - t0, 2), round(p[1], 1), round(p[2], 2)) for p in admission],
                "healthz": [(round(p[0] - t0, 2), round(p[1], 4), p[2]) for p in monitor.healthz.between(*window)],
                "healthz_fresh": [(round(p[0] - t0, 2), round(p[1], 4), p[2])
                                  for p in monitor.healthz_fresh.between(*window)],
                "grpc_health": [(round(p[0] - t0, 2), round(p[1], 4), p[2])
                                for p in monitor.grpc_health.between(*window)]},
    }


def soak_rss(summary: dict) -> dict:
    """RSS at the start, after each minute and at the end of the soak, and its slope after minute 1."""
    points = summary["raw"]["rss_mib"]
    if not points:
        return {}
    end = points[-1][0]

    def at(t: float) -> float:
        return min(points, key=lambda p: abs(p[0] - t))[1]

    marks = [0.0, *range(60, int(end), 60), end]
    later = [(t, v) for t, v in points if t >= min(60.0, end / 2)]
    slope = float(np.polyfit([t for t, _ in later], [v for _, v in later], 1)[0]) * 60 if len(later) > 2 else None
    return {"marks": [(round(t), at(t)) for t in marks], "slope_mib_per_min": rounded(slope, 2),
            "growth_after_first_minute_mib": round(at(end) - at(min(60.0, end / 2)), 1)}


def fmt(value: Any, unit: str = "") -> str:
    return "–" if value is None else f"{value}{unit}"


def storms_table(storms: list[dict]) -> str:
    lines = [("| storm | start (load) | s | RSS before / peak / after MiB | admission MiB / backlog s (peak) "
              "| /healthz p50 / p99 / max ms (fails) | fresh conn. fails | gRPC health p99 ms (fails) "
              "| gateway / client CPU s | still serves |"),
             "| --- | --- | ---: | --- | --- | --- | ---: | --- | --- | --- |"]
    for s in storms:
        h, f, g = s["healthz"], s["healthz_fresh_connection"], s["grpc_health"]
        serves = s["still_serves"]
        lines.append(
            f"| {s['name']} | {s['started_at']} ({s['load_average_1min']}) | {s['seconds']} | {s['rss_before_mib']} / {fmt(s['rss_peak_mib'])} / "
            f"{fmt(s['rss_after_mib'])} | {fmt(s['admission_memory_peak_mib'])} / {fmt(s['admission_backlog_peak_s'])} "
            f"| {fmt(h['p50_ms'])} / {fmt(h['p99_ms'])} / {fmt(h['max_ms'])} ({h['failures']}/{h['n']}) "
            f"| {f['failures']}/{f['n']} | {fmt(g['p99_ms'])} ({g['failures']}/{g['n']}) "
            f"| {fmt(s['gateway_cpu_s'])} / {s['client_cpu_s']} "
            f"| {'–' if serves is None else ('yes' if serves['ok'] else 'NO ' + json.dumps(serves))} |")
    return "\n".join(lines)


def groups_table(storm: dict) -> str:
    lines = [f"**{storm['name']}**: {storm['title']}", "",
             ("| clients | requests | status mix | ok/s | carried/s | latency p50 / p99 / max s "
              "| refusals p50 / p99 ms | 504 (late) |"),
             "| --- | ---: | --- | ---: | ---: | --- | --- | --- |"]
    for name, g in storm["groups"].items():
        mix = ", ".join(f"{k} ×{v}" for k, v in g["mix"].items())
        carried = f"{g['units_per_s']} {g['units']}/s" if g["units_per_s"] is not None else "–"
        late = f"{g['504']} ({g['504_late']}, max {g['504_max_s']} s)" if g["504"] else "0"
        lines.append(f"| {name} | {g['requests']} | {mix} | {fmt(g['ok_per_s'])} | {carried} "
                     f"| {fmt(g['latency_p50_s'])} / {fmt(g['latency_p99_s'])} / {fmt(g['latency_max_s'])} "
                     f"| {fmt(g['refusal_p50_ms'])} / {fmt(g['refusal_p99_ms'])} | {late} |")
    extra = {k: v for k, v in storm["extra"].items() if k != "cpu_trace"}
    if extra:
        lines += ["", "  " + json.dumps(extra)]
    return "\n".join(lines)


def verdict(storms: list[dict], budget_mib: float) -> dict:
    """Issue #11's "Done when", storm by storm (the shutdown storm is judged by its own figures)."""
    running = [s for s in storms if s["name"] != "shutdown"]
    upscale = [s for s in storms if s["name"].startswith("upscale-")]
    result: dict[str, Any] = {
        "no_hang": all(s["still_serves"] and s["still_serves"]["ok"] for s in running),
        "rss_under_budget": {s["name"]: (s["rss_peak_mib"] or 0) < budget_mib for s in storms},
        "healthz_p99_under_1s": {s["name"]: (s["healthz"]["p99_ms"] or 0) < HEALTH_LIMIT_S * 1000
                                 and s["healthz"]["failures"] == 0 for s in running},
        "upscale_some_ok_rest_refused_early": {
            s["name"]: any(g["ok"] for g in s["groups"].values())
            and all((g["refusal_p99_ms"] or 0) < HEALTH_LIMIT_S * 1000 and g["504_late"] == 0
                    for g in s["groups"].values()) for s in upscale},
    }
    soak = next((s for s in storms if s["name"] == "soak"), None)
    if soak:
        result["soak_rss"] = soak["extra"].get("rss")
    shutdown = next((s for s in storms if s["name"] == "shutdown"), None)
    if shutdown:
        exit_s = shutdown["extra"].get("exit_after_sigterm_s")
        result["shutdown_exit_within_13s"] = exit_s is not None and exit_s <= SHUTDOWN_LIMIT_S
    return result


# --- main -------------------------------------------------------------------------------------------

STORMS = ["upscale", "disconnect", "bodies", "costly", "slow", "deadline", "soak", "shutdown"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--json", type=Path, help="write every figure, raw samples included, here")
    parser.add_argument("--soak-s", type=float, help="length of the soak (default 600; --quick: 30)")
    parser.add_argument("--quick", action="store_true", help="every storm a few seconds, the soak 30 s")
    parser.add_argument("--smoke", action="store_true", help="every storm about a second: checks the "
                                                            "benchmark runs, measures nothing")
    parser.add_argument("--storms", nargs="+", choices=STORMS, default=STORMS, help="run only these")
    args = parser.parse_args()

    plan = SMOKE if args.smoke else QUICK if args.quick else Plan()
    if args.soak_s is not None:
        plan = replace(plan, soak_s=args.soak_s)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the floods need ~1,700 descriptors here
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                   f"Python {platform.python_version()}, onnxruntime {ort.__version__}",
        "load_average_at_start": os.getloadavg(), "command": " ".join(["python", *sys.argv]),
        "gateway": "default settings", "commit": git_commit(), "plan": asdict(plan), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with gateway(args.model_repository) as (url, grpc_target, pid):
        monitor = Monitor(url, grpc_target, pid)
        monitor.start()
        bench = Bench(url, grpc_target, pid, plan, monitor)
        try:
            run_storms(bench, args.storms)
        finally:
            monitor.stop()
            report["load_average_at_end"] = os.getloadavg()
            report["storms"] = bench.storms
            report["verdict"] = verdict(bench.storms, MEMORY_BUDGET_MIB)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report) + "\n")
    print(f"\n{report['machine']}; gateway at {report['commit']}; load average "
          f"{report['load_average_at_start']} at the start\n")
    print(storms_table(bench.storms))
    for storm in bench.storms:
        print("\n" + groups_table(storm))
    print("\n" + json.dumps(report["verdict"], indent=1))


NORMAL = "4 normal clients (n=1)"


def compare(bench: Bench, summary: dict) -> None:
    """The normal clients' requests/s during a storm against their baseline, alone, measured first."""
    if bench.baseline_rps and NORMAL in summary["groups"]:
        rps = summary["groups"][NORMAL]["ok_per_s"] or 0
        summary["extra"]["normal_rps_vs_baseline"] = {
            "storm": rps, "baseline": bench.baseline_rps[0],
            "ratio": round(rps / bench.baseline_rps[0], 2) if bench.baseline_rps[0] else None}


def run_storms(bench: Bench, names: list[str]) -> None:
    plan = bench.plan
    for name in STORMS:
        if name not in names:
            continue
        if bench.storms and not all(s["still_serves"]["ok"] for s in bench.storms if s["still_serves"]):
            print("the gateway stopped serving: the remaining storms are skipped", file=sys.stderr)
            return
        if name == "upscale":
            bench.upscale_storms()
        elif name == "disconnect":
            bench.run("disconnect", f"16 clients dropping upscales after 0.2-1 s, {plan.disconnect_window_s:g} s",
                      bench.disconnect, bound_s=plan.disconnect_window_s + plan.idle_wait_s + 30)
        elif name == "bodies":
            baseline = bench.run("baseline", f"4 normal clients (POST /generate n=1) alone, {plan.baseline_s:g} s",
                                 bench.baseline, bound_s=plan.baseline_s + 60)
            bench.baseline_rps.append(baseline["groups"].get(NORMAL, {}).get("ok_per_s") or 0)
            compare(bench, bench.run("bodies", f"4 clients sending 20 / 50 MB JSON bodies beside the normal "
                                     f"clients, {plan.bodies_window_s:g} s", bench.bodies,
                                     bound_s=plan.bodies_window_s + 90))
        elif name == "costly":
            compare(bench, bench.run("costly", f"4 clients n=64 truncation=0.05 beside the normal clients, "
                                     f"{plan.costly_window_s:g} s", bench.costly,
                                     bound_s=plan.costly_window_s + 90))
            compare(bench, bench.run("baseline-again", f"4 normal clients alone again, {plan.baseline_s:g} s",
                                     bench.baseline, bound_s=plan.baseline_s + 60))
        elif name == "slow":
            bench.run("slow", f"300 slow-header, 100 slow-body, 100 idle connections, held up to "
                      f"{plan.slow_hold_s:g} s", bench.slow, bound_s=plan.slow_hold_s + 60)
            bench.run("idle-flood", f"{plan.flood_connections} idle connections at once "
                      f"(max_connections 512), held up to {plan.slow_hold_s:g} s", bench.flood,
                      bound_s=plan.slow_hold_s + 90)
        elif name == "deadline":
            bench.run("grpc-deadline", f"gRPC Generate n=64, 50 callers, 2 ms deadlines or cancelled at "
                      f"0-5 ms, {plan.deadline_window_s:g} s", bench.grpc_deadlines,
                      bound_s=plan.deadline_window_s + 60)
            bench.run("http-timeout", f"16 HTTP clients POST /generate n=1-64 with 5 ms timeouts, "
                      f"{plan.deadline_window_s:g} s", bench.http_timeouts, bound_s=plan.deadline_window_s + 60)
        elif name == "soak":
            summary = bench.run("soak", f"8 clients of mixed valid traffic, {plan.soak_s:g} s", bench.soak,
                                bound_s=plan.soak_s + 120)
            summary["extra"]["rss"] = soak_rss(summary)
        elif name == "shutdown":
            bench.run("shutdown", f"SIGTERM {plan.shutdown_after_s:g} s into a 16-client upscale storm "
                      f"(12 HTTP, 4 gRPC)", bench.shutdown, bound_s=400, after_check=False)


if __name__ == "__main__":
    main()
