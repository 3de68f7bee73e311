"""The ``grpc.aio`` server: the Gateway service, standard health checking and server reflection."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ganserve.serve.access.gate import Gate
from ganserve.serve.access.tracing import Tracing
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc.servicer import GatewayServicer, add_to_server
from ganserve.serve.metrics import Metrics
from ganserve.serve.service import GatewayService
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name  # "ganserve.v1.Gateway"
_MESSAGE_OVERHEAD = 4 * 1024 * 1024  # room for the rest of a message besides image bytes


class GrpcServer:
    """Owns a ``grpc.aio`` server; health follows the gateway's readiness."""

    def __init__(self, settings: Settings, *, service: GatewayService, metrics: Metrics, gate: Gate,
                 tracing: Tracing | None = None) -> None:
        self._settings = settings
        # A response holds up to max_images_per_request encoded images; an upload max_upload_bytes.
        limit = max(settings.max_upload_bytes * 4, 64 * 1024 * 1024) + _MESSAGE_OVERHEAD
        self._server = grpc.aio.server(options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", settings.max_upload_bytes + _MESSAGE_OVERHEAD),
            # Connections (docs/deploy.md, "Connections and file descriptors"). One over the cap is
            # closed at once; one that has not started HTTP/2 within the header timeout is closed
            # (gRPC's default: 120 s).
            ("grpc.max_allowed_incoming_connections", settings.grpc_max_connections),
            ("grpc.server_handshake_timeout_ms", round(settings.http_header_timeout_s * 1000)),
            # Idle and old connections get GOAWAY; the calls of an old one may run to their deadline.
            ("grpc.max_connection_idle_ms", round(settings.grpc_max_connection_idle_s * 1000)),
            ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms",
             round(max(settings.request_timeout_s, settings.upscale_timeout_s) * 1000)),
            # No cap on HTTP/2 streams per connection: a client's cancelled and expired calls still
            # count as streams until both ends have closed them, and a storm of them made grpc refuse
            # new ones (RST_STREAM REFUSED_STREAM, seen as UNAVAILABLE). maximum_concurrent_rpcs
            # below bounds the whole server, with a clean RESOURCE_EXHAUSTED.
            # Ping each connection after 60 s without traffic and drop it if no answer in 20 s: a
            # vanished client is found in 80 s, not gRPC's default 2 h. Clients may ping as well,
            # even without calls, but not more often than every 10 s (else GOAWAY too_many_pings).
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 2),
        ], maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs)  # then RESOURCE_EXHAUSTED
        add_to_server(GatewayServicer(service=service, metrics=metrics, gate=gate,
                                      access_log=settings.access_log, tracing=tracing), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.grpc_reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        self.port: int | None = None

    async def start(self, *, host: str | None = None, port: int | None = None) -> int:
        """Binds and starts serving (health NOT_SERVING until :meth:`set_serving`); returns the port."""
        address = f"{host or self._settings.host}:{self._settings.grpc_port if port is None else port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"gRPC could not bind {address}")
        await self.set_serving(False)
        await self._server.start()
        log.info("gRPC listening on %s:%d", host or self._settings.host, self.port)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        """Sets the health of the whole server ("") and of the Gateway service."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self, *, grace_s: float) -> None:
        """Graceful stop: health NOT_SERVING, refuse new calls, let in-flight ones finish for up to
        ``grace_s``, then cancel what is left."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
