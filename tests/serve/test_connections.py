"""Connection limits, over real sockets against a real gateway (docs/deploy.md, "Connections and
file descriptors"): slow request headers and bodies get a 408 and the connection closes, idle
kept-alive connections close, connections over ``max_connections`` get a 503 at once with a log
line, gRPC calls over ``grpc_max_concurrent_rpcs`` get RESOURCE_EXHAUSTED, gRPC connections that
never start HTTP/2 or exceed ``grpc_max_connections`` are closed, and start-up raises the
open-file limit the caps need."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2_grpc as pb_grpc
from ganserve.serve.http.connections import RateLimitedLog
from tests.serve.helpers import RunningGateway, add_generator, running_gateway, test_settings

TIMEOUT = 0.5  # header, body and keep-alive timeouts of the `quick` gateway, seconds
SLACK = 1.5    # how much later than its timeout a connection may close on a busy machine
CAP = 4        # max_connections of the `capped` gateway


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_repository")
    add_generator(root, "tiny")
    return root


@pytest.fixture(scope="module")
def quick(tiny_repo: Path) -> Iterator[RunningGateway]:
    """A gateway whose header, body and keep-alive timeouts are all 0.5 s."""
    settings = test_settings(tiny_repo, http_header_timeout_s=TIMEOUT, http_body_timeout_s=TIMEOUT,
                             http_keepalive_timeout_s=TIMEOUT)
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def capped(tiny_repo: Path) -> Iterator[RunningGateway]:
    """A gateway taking 4 HTTP connections and 2 gRPC calls at once, whose batches wait 1 s to fill."""
    settings = test_settings(tiny_repo, max_connections=CAP, grpc_max_concurrent_rpcs=2,
                             batch_max_queue_delay_ms=1000, batch_wait_alone=True)
    with running_gateway(settings) as running:
        yield running


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_until_closed(sock: socket.socket, *, within: float, trickle: bytes = b"") -> tuple[bytes, float | None]:
    """What the server sends and how many seconds after the call it closed the connection (None:
    still open after ``within`` s). With ``trickle``, sends one byte of it every 0.1 s meanwhile,
    as a slow client does."""
    start = time.monotonic()
    data, next_send = b"", start
    sock.settimeout(0.05)
    while time.monotonic() - start < within:
        if trickle and time.monotonic() >= next_send:
            try:
                sock.sendall(trickle[:1])
            except OSError:  # closed by the server; what it sent is still to be read
                pass
            trickle, next_send = trickle[1:], next_send + 0.1
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, time.monotonic() - start
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    return data, None


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP/1.1 response."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_error(response: bytes, status: int, code: str, setting: str) -> None:
    got, headers, body = parse(response)
    assert got == status, response
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and setting in error["message"], error


# ---- HTTP: header, body and keep-alive timeouts --------------------------------------------------

@pytest.mark.parametrize("answered_first,sent,trickle", [
    (False, b"", b""),                                                          # connects, says nothing
    (False, b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n", b"X-Slow: " + b"y" * 40),  # a byte at a time
    (True, b"GET /healthz HTTP/1.1\r\n", b""),    # a kept-alive connection's next request stalls
], ids=["silent", "slow-headers", "slow-next-request"])
def test_a_client_slow_to_send_its_headers_gets_408_and_is_closed(quick: RunningGateway, answered_first, sent,
                                                                  trickle) -> None:
    with connect(quick.gateway.http_port) as sock:
        if answered_first:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(sent)
        response, closed_after = read_until_closed(sock, within=TIMEOUT + SLACK, trickle=trickle)
    assert closed_after is not None, f"still open after {TIMEOUT + SLACK} s"
    assert closed_after >= TIMEOUT * 0.8
    assert_error(response, 408, "request_timeout", "http_header_timeout_s")


def test_a_client_slow_to_send_its_body_gets_a_json_408(quick: RunningGateway) -> None:
    """The whole body must arrive within the timeout: a byte every 0.1 s does not keep it open."""
    head = (b"POST /generate HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    with connect(quick.gateway.http_port) as sock:
        sock.sendall(head + b'{"n"')
        response, closed_after = read_until_closed(sock, within=TIMEOUT + SLACK, trickle=b" " * 30)
    assert closed_after is not None, f"still open after {TIMEOUT + SLACK} s"
    assert TIMEOUT * 0.8 <= closed_after
    assert_error(response, 408, "request_timeout", "http_body_timeout_s")


def test_an_idle_kept_alive_connection_is_closed(quick: RunningGateway) -> None:
    with connect(quick.gateway.http_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        response, closed_after = read_until_closed(sock, within=TIMEOUT + SLACK)
    assert parse(response)[0] == 200  # answered, then closed while idle
    assert closed_after is not None and closed_after >= TIMEOUT * 0.8


def test_healthz_answers_while_slow_clients_hold_connections(quick: RunningGateway) -> None:
    """40 slow clients (headers, bodies) do not delay /healthz, and each is cut after its timeout."""
    port = quick.gateway.http_port
    slow = [b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ",
            b"POST /generate HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n{"] * 20
    socks = [connect(port) for _ in slow]
    results: list[tuple[bytes, float | None]] = [(b"", None)] * len(socks)

    def hold(i: int) -> None:
        socks[i].sendall(slow[i])
        results[i] = read_until_closed(socks[i], within=TIMEOUT + SLACK + 1)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(len(socks))]
    for thread in threads:
        thread.start()
    try:
        latencies = []
        for _ in range(5):
            start = time.monotonic()
            assert httpx.get(f"{quick.http_url}/healthz", timeout=5).status_code == 200
            latencies.append(time.monotonic() - start)
    finally:
        for thread in threads:
            thread.join()
        for sock in socks:
            sock.close()
    assert max(latencies) < 0.25, latencies
    assert all(closed is not None and parse(data)[0] == 408 for data, closed in results), results


# ---- HTTP: the connection cap --------------------------------------------------------------------

def test_connections_over_the_cap_get_503_at_once_and_a_log_line(capped: RunningGateway, caplog) -> None:
    port = capped.gateway.http_port
    held = [connect(port) for _ in range(CAP)]
    try:
        for sock in held:  # each one answered: the gateway counts it (then it idles, kept alive)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        with caplog.at_level(logging.WARNING, logger="ganserve.serve.http.connections"):
            with connect(port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
                response, closed_after = read_until_closed(sock, within=3)
            refused = httpx.get(f"{capped.http_url}/healthz", timeout=5)  # a real client reads it too
    finally:
        for sock in held:
            sock.close()
    assert closed_after is not None and closed_after < 1.2, closed_after
    assert_error(response, 503, "too_many_connections", "max_connections")
    assert parse(response)[1]["retry-after"] == "1"
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_connections"
    lines = [r for r in caplog.records if r.name == "ganserve.serve.http.connections"]
    assert len(lines) == 1, "one line per 10 s, however many are refused"
    assert lines[0].levelno == logging.WARNING and "max_connections" in lines[0].getMessage()
    deadline = time.monotonic() + 3  # once the held connections are gone, requests are served again
    while (status := httpx.get(f"{capped.http_url}/healthz", timeout=5).status_code) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_a_run_of_refusals_is_logged_once_then_counted(caplog) -> None:
    async def main():
        refused = RateLimitedLog(logging.WARNING, interval_s=0.2)
        for _ in range(5):
            refused.event("refused: %d open", 4)
        await asyncio.sleep(0.5)  # one summary, then quiet: no more lines

    with caplog.at_level(logging.WARNING, logger="ganserve.serve.http.connections"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == ["refused: 4 open", "refused: 4 open (4 more in the last 0.2 s)"]


# ---- gRPC ------------------------------------------------------------------------------------------

def test_grpc_calls_over_the_limit_get_resource_exhausted(capped: RunningGateway) -> None:
    """Two calls wait in a batch (1 s to fill); a third, over grpc_max_concurrent_rpcs=2, is refused."""
    async def main():
        async with grpc.aio.insecure_channel(capped.grpc_target) as channel:
            stub = pb_grpc.GatewayStub(channel)
            held = [asyncio.ensure_future(stub.Generate(pb.GenerateRequest(n=1), timeout=10)) for _ in range(2)]
            await asyncio.sleep(0.3)
            assert not any(call.done() for call in held), "the batch should still be filling"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Generate(pb.GenerateRequest(n=1), timeout=10)
            return refused.value.code(), [len((await call).images) for call in held]

    code, held = asyncio.run(main())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert held == [1, 1]


def test_a_grpc_connection_that_never_starts_http2_is_closed(quick: RunningGateway) -> None:
    """gRPC's handshake timeout is http_header_timeout_s (its own default: 120 s)."""
    with connect(quick.gateway.grpc_port) as sock:
        _, closed_after = read_until_closed(sock, within=TIMEOUT + SLACK)
    assert closed_after is not None and closed_after >= TIMEOUT * 0.8


def test_grpc_connections_over_the_cap_are_closed(tiny_repo: Path) -> None:
    def check(channel: grpc.aio.Channel):
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

    async def main(target: str):
        # Separate subchannel pools: one connection per channel, as from separate clients.
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(3)]
        try:
            for channel in channels[:2]:
                await check(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check(channels[2])
            return refused.value.code()
        finally:
            for channel in channels:
                await channel.close()

    with running_gateway(test_settings(tiny_repo, grpc_max_connections=2)) as running:
        assert asyncio.run(main(running.grpc_target)) == grpc.StatusCode.UNAVAILABLE


# ---- file descriptors --------------------------------------------------------------------------

def _descriptor_limit_after_start(soft: int, hard: int) -> subprocess.CompletedProcess:
    """Runs the gateway's start-up check in a process whose RLIMIT_NOFILE is (soft, hard), with caps
    needing 2 x 100 + 10 + 256 = 466 descriptors; prints the soft limit afterwards."""
    code = textwrap.dedent(f"""
        import logging, resource
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from ganserve.serve.descriptors import ensure_descriptor_limit
        from ganserve.serve.settings import Settings
        limit = ensure_descriptor_limit(Settings(max_connections=100, grpc_max_connections=10))
        print("needed", limit.needed, "soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True, cwd=Path(__file__).resolve().parents[2])


def test_start_up_raises_the_open_file_limit_the_caps_need() -> None:
    resource = pytest.importorskip("resource")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 466:
        pytest.skip(f"this machine's hard limit ({hard}) is below what the test raises to")
    raised = _descriptor_limit_after_start(256, hard)
    assert "needed 466 soft 466" in raised.stdout, raised.stdout + raised.stderr
    assert "raised the open-file limit (RLIMIT_NOFILE) from 256 to 466" in raised.stderr
    assert "WARNING" not in raised.stderr
    short = _descriptor_limit_after_start(200, 300)  # the hard limit is too low: a warning with the numbers
    assert "needed 466 soft 300" in short.stdout, short.stdout + short.stderr
    assert "WARNING open-file limit 300 (hard limit 300) is below the 466 descriptors" in short.stderr
