"""One gateway process: HTTP (uvicorn) and gRPC (grpc.aio) on one event loop, over one runtime.

Start-up: both servers listen at once (``/healthz`` live, ``/readyz`` 503, gRPC health NOT_SERVING),
the models load and warm up, then the gateway reports ready. Shut-down (SIGTERM/SIGINT or
:meth:`Gateway.request_stop`): readiness and gRPC health go NOT_SERVING, new requests get 503 /
UNAVAILABLE, both servers stop taking connections and calls, in-flight requests may finish for up to
``shutdown_grace_s``; those still running then are answered 503 / UNAVAILABLE (JSON over HTTP), the
backend closes, and the process exits within the grace and a few seconds (``SHUTDOWN_MARGIN_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from ganserve.serve.descriptors import ensure_descriptor_limit
from ganserve.serve.grpc.server import GrpcServer
from ganserve.serve.http import create_app
from ganserve.serve.http.admin import create_admin_app, wants_admin_port
from ganserve.serve.http.connections import HttpConnections
from ganserve.serve.runtime import Runtime
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
_READINESS_POLL_S = 0.25  # how often gRPC health is brought in line with the gateway's readiness
# After shutdown_grace_s, requests still running are answered 503 / UNAVAILABLE; this long is left for
# those answers to go out before the servers cancel what remains.
SHUTDOWN_MARGIN_S = 3.0


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the gateway stops HTTP and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port`` 0: any free port). ``OSError`` says why it failed."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Gateway:
    """The whole gateway. ``await run()`` serves until :meth:`request_stop` (or a signal)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.admin_port: int | None = None  # when settings put something on the admin port
        self.listening = asyncio.Event()   # both servers accept connections (ports known)
        self.ready = asyncio.Event()       # models loaded: the gateway is ready
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_stop(self) -> None:
        """Asks for a graceful stop; safe to call from any thread or a signal handler."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        settings = self.settings
        ensure_descriptor_limit(settings)
        sock = bind_tcp(settings.host, settings.http_port)
        self.http_port = sock.getsockname()[1]
        connections = HttpConnections(settings)  # header and body deadlines, max_connections
        self.runtime.requests_in_progress.append(connections.requests_in_progress)
        public_app = create_app(settings, runtime=self.runtime)
        http = _Server(uvicorn.Config(
            connections.wrap(public_app), http=connections.protocol,
            timeout_keep_alive=settings.http_keepalive_timeout_s, log_config=None, lifespan="on",
            access_log=False,  # the gateway writes its own (ganserve.serve.access.log)
            # uvicorn cancels what is left after this, answering a plain-text 500; the runtime answers
            # it first, with JSON 503s, once shutdown_grace_s is over (Runtime.drain)
            timeout_graceful_shutdown=settings.shutdown_grace_s + SHUTDOWN_MARGIN_S))
        grpc_server = GrpcServer(settings, service=self.runtime.service, metrics=self.runtime.metrics,
                                 gate=self.runtime.gate, tracing=self.runtime.tracing)
        admin, admin_sock = None, None
        try:
            if wants_admin_port(settings):  # /metrics and/or the API docs, away from the public port
                admin_host = settings.admin_host or settings.host
                admin_sock = bind_tcp(admin_host, settings.admin_port)
                self.admin_port = admin_sock.getsockname()[1]
                admin = _Server(uvicorn.Config(
                    create_admin_app(settings, public=public_app, runtime=self.runtime), log_config=None,
                    lifespan="off", access_log=False, timeout_keep_alive=settings.http_keepalive_timeout_s,
                    timeout_graceful_shutdown=SHUTDOWN_MARGIN_S))
                log.info("admin port (%s) on %s:%d", ", ".join(
                    what for what, place in (("metrics", settings.metrics_endpoint), ("docs", settings.docs_endpoint))
                    if place == "admin"), admin_host, self.admin_port)
            self.grpc_port = await grpc_server.start()
        except Exception:
            sock.close()
            if admin_sock is not None:
                admin_sock.close()
            raise
        http_task = asyncio.create_task(http.serve(sockets=[sock]), name="http")
        admin_task = asyncio.create_task(admin.serve(sockets=[admin_sock]), name="admin") \
            if admin is not None else None
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stop.set)
        try:
            while not (http.started and (admin is None or admin.started)) and not http_task.done():
                await asyncio.sleep(0.01)
            self.listening.set()
            log.info("HTTP listening on %s:%d", settings.host, self.http_port)
            loading = asyncio.create_task(self._load(grpc_server), name="load-models")
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({stop, http_task}, return_when=asyncio.FIRST_COMPLETED)
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            stop.cancel()
        finally:
            log.info("shutting down: draining in-flight requests (up to %g s)", settings.shutdown_grace_s)
            self.runtime.begin_shutdown()  # new requests: 503 / UNAVAILABLE
            http.should_exit = True        # both servers stop accepting; kept-alive connections close
            if admin is not None:
                admin.should_exit = True
            grpc_stopping = asyncio.create_task(grpc_server.stop(grace_s=settings.shutdown_grace_s
                                                                 + SHUTDOWN_MARGIN_S))
            await self.runtime.drain(grace_s=settings.shutdown_grace_s, margin_s=SHUTDOWN_MARGIN_S)
            await asyncio.gather(grpc_stopping, http_task, *filter(None, [admin_task]), return_exceptions=True)
            await self.runtime.close()
            sock.close()
            if admin_sock is not None:
                admin_sock.close()
            if install_signal_handlers:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self._loop.remove_signal_handler(sig)
            log.info("stopped")

    async def _load(self, grpc_server: GrpcServer) -> None:
        """Loads the models, then keeps gRPC health and the ready gauge in step with readiness,
        which can change while serving (a Triton server going away and coming back)."""
        await self.runtime.load()
        serving: bool | None = None
        while True:
            ready = self.runtime.ready()
            if ready != serving:
                serving = ready
                await grpc_server.set_serving(ready)
                self.runtime.metrics.ready.set(1 if ready else 0)
                if ready:
                    self.ready.set()
                    log.info("ready: HTTP on port %d, gRPC on port %d", self.http_port, self.grpc_port)
                else:
                    log.error("not ready: %s", self.runtime.readiness())
            await asyncio.sleep(_READINESS_POLL_S)


async def serve(settings: Settings) -> None:
    """Runs a gateway until SIGINT or SIGTERM."""
    await Gateway(settings).run(install_signal_handlers=True)
