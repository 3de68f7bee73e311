"""Gateway settings: one validated object, read from ``GANSERVE_*`` environment variables.

Every field is also a ``ganserve serve`` option (``model_repository`` -> ``--model-repository``),
generated from this class by :mod:`ganserve.serve.cli`. The names are a public interface (the Helm chart sets
them): rename nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganserve.serve.access.keys import parse_keys

BackendName = Literal["onnxruntime", "triton"]
REQUEST_KINDS = ("unconditional", "text-conditional", "super-resolution")  # kinds a request can ask for
_GRPC_TARGET_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract")
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
EndpointPlace = Literal["public", "admin", "off"]


class Settings(BaseSettings):
    """Everything the gateway can be told. Build one per process; there is no module-level instance."""

    model_config = SettingsConfigDict(env_prefix="GANSERVE_", frozen=True, extra="forbid")

    # --- where and what -----------------------------------------------------------------------
    model_repository: Path = Field(
        Path("model_repository"), description="Triton model repository to serve")
    host: str = Field(
        "127.0.0.1", description="address to listen on (HTTP and gRPC); 0.0.0.0 in a container")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port (0: any free port)")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0: any free port)")
    backend: BackendName = Field("onnxruntime", description="inference backend")
    triton_url: str = Field("localhost:8001", description="Triton's gRPC endpoint, HOST:PORT or a gRPC target "
                                                     "(dns:///HOST:PORT: balance over every address; backend=triton)")
    triton_startup_timeout_s: float = Field(
        60.0, ge=0, description="backend=triton: how long start-up waits for Triton and its models "
                                "(afterwards the gateway stays not ready and keeps checking)")
    triton_health_interval_s: float = Field(
        2.0, gt=0, description="backend=triton: how often Triton's and each model's readiness is checked")

    # --- limits (a request over one gets a 4xx / gRPC status, never a crash) ---------------------
    max_images_per_request: int = Field(64, ge=1, description="largest n of POST /generate")
    max_interpolation_frames: int = Field(64, ge=2, description="most frames of POST /interpolate")
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1, description="largest image upload, in bytes")
    max_pixels: int = Field(
        1024 * 1024, ge=1, description="largest uploaded image, in pixels (width x height)")
    max_queue_depth: int = Field(
        256, ge=1, description="images waiting per model version before requests get 429")
    request_timeout_s: float = Field(
        30.0, gt=0, description="server-side deadline of one /generate or /interpolate request (and "
                                "of the gRPC calls); a request estimated to take longer is refused at once")
    upscale_timeout_s: float = Field(
        180.0, gt=0, description="server-side deadline of one /upscale request (upload, decoding, every "
                                 "tile, encoding): the largest image max_pixels allows must fit it")
    max_json_bytes: int = Field(
        64 * 1024, ge=1024, description="largest JSON request body, in bytes (413 before it is parsed)")

    # --- admission: work and memory in flight (docs/gateway.md, "Admission") ---------------------
    memory_budget_mb: int = Field(
        1536, ge=64, description="memory the gateway may use in all (MiB): requests are admitted while "
                                 "their estimated memory fits what the gateway's own footprint leaves "
                                 "(over it: 429, or 413 for a request that could never fit); the Helm "
                                 "chart derives the container's memory limit from it")
    max_inflight_work_s: float = Field(
        180.0, gt=0, description="estimated seconds of work (at the measured throughput) admitted on "
                                 "the whole gateway at once; beyond it requests get 429 with Retry-After")
    upscale_max_inflight_pixels: int = Field(
        8 * 1024 * 1024, ge=1, description="LR pixels (tiles x tile_size^2, overlaps included) admitted "
                                           "at once per super-resolution model; beyond it 429")

    default_models: str = Field(
        "unconditional=dcgan,super-resolution=srresnet",
        description="the model a request that names none gets, per kind, when several models of the "
                    "kind are loaded: 'KIND=MODEL,...' (kinds: unconditional, text-conditional, "
                    "super-resolution); the default picks the shipped dcgan over lapgan and the "
                    "PSNR-oriented srresnet over srgan; "
                    "a name that is not loaded is ignored, '' picks none")

    # --- text prompts -----------------------------------------------------------------------------
    max_prompt_chars: int = Field(
        200, ge=1, description="longest prompt (and prompt_b) of POST /generate, in characters")

    # --- embedded backend -------------------------------------------------------------------------
    batching: bool = Field(
        True, description="merge concurrent requests into one inference (micro-batching)")
    batch_max_queue_delay_ms: float | None = Field(
        None, ge=0, description="how long a batch waits to fill, at most; unset: the model's "
                                "dynamic_batching.max_queue_delay_microseconds (0 if none)")
    batch_wait_alone: bool = Field(
        False, description="a batch waits the queue delay even when no other request is on its way (as "
                           "Triton's dynamic batcher does); default: a lone request runs at once, and a "
                           "batch waits only for requests known to be coming")
    batch_inline_max_ms: float = Field(
        3.0, ge=0, description="a batch expected to run in at most this long runs on the event loop, without "
                               "the hop to the model's thread and back (which costs more CPU than a small "
                               "model's batch of one), while the gateway serves no other request; 0: every "
                               "batch in the thread")
    ort_intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads per session (0: per model, ONNX Runtime's pool "
                             "when it runs the model at least 1.5x faster than one thread, measured at load; "
                             "else one thread)")

    # --- upscale (super-resolution in tiles; docs/model-contract.md) -------------------------------
    upscale_min_tile_size: int = Field(
        16, ge=1, description="smallest tile_size a /upscale request may ask for (LR pixels)")
    upscale_max_tile_size: int = Field(
        128, ge=1, description="largest tile_size a /upscale request may ask for (LR pixels); a tile over "
                               "upscale_batch_pixels goes alone, past that budget")
    upscale_tile_batch: int = Field(
        8, ge=1, description="most tiles of one /upscale request per backend call (also at most the "
                             "model's max_batch_size and upscale_batch_pixels): bounds memory per request; "
                             "raise it on a GPU")
    upscale_batch_pixels: int = Field(
        8 * 64 * 64, ge=1, description="most LR pixels (tiles x tile_size^2) per backend call of one "
                                       "/upscale request, so large tiles mean fewer per call (at least one)")

    # --- connections (each open connection holds a file descriptor: docs/deploy.md) ---------------
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="HTTP: a connection must send its request line and headers within this "
                                "long of opening (or of the first byte of its next request); else it gets "
                                "408 request_timeout and is closed. Also gRPC's handshake timeout (a "
                                "connection that has not started HTTP/2 by then is closed)")
    http_body_timeout_s: float = Field(
        30.0, gt=0, description="HTTP: the whole request body must arrive within this long of the gateway "
                                "starting to read it; else the request ends with 408 request_timeout and "
                                "the connection is closed")
    http_keepalive_timeout_s: float = Field(
        5.0, gt=0, description="HTTP: an idle kept-alive connection is closed after this long without a "
                               "new request")
    max_connections: int = Field(
        512, ge=1, description="most open HTTP connections; one more is answered 503 too_many_connections "
                               "(Connection: close) at once and closed, and a warning is logged")
    grpc_max_connections: int = Field(
        128, ge=1, description="most open gRPC connections; one more is closed at once (its client sees "
                               "UNAVAILABLE and may retry)")
    grpc_max_concurrent_rpcs: int = Field(
        256, ge=1, description="most gRPC calls in progress (health checks included); one more gets "
                               "RESOURCE_EXHAUSTED at once")
    grpc_max_connection_idle_s: float = Field(
        300.0, gt=0, description="a gRPC connection without a call for this long is closed (GOAWAY; its "
                                 "client reconnects when it needs to)")
    grpc_max_connection_age_s: float = Field(
        1800.0, gt=0, description="a gRPC connection is closed (GOAWAY) after this long, its calls in "
                                  "progress left to run to their deadline (request_timeout_s, "
                                  "upscale_timeout_s): clients reconnect and spread over replicas added since")

    # --- in public (docs/gateway.md, "Running it in public") -----------------------------------------
    access_log: bool = Field(
        True, description="one JSON line per request on the logger ganserve.access (request id, key id, "
                          "route, model, status, duration, bytes, client address)")
    api_keys_file: Path | None = Field(
        None, description="API keys on: a file of 'ID SHA256 [endpoints=..] [models=..] [rate=..] "
                          "[burst=..]' lines (the key's sha256, never the key), reloaded when it changes")
    api_keys: str = Field(
        "", description="API keys on: the same lines as api_keys_file, separated by newlines or ';' "
                        "(e.g. from a Kubernetes Secret); both may be given")
    api_keys_reload_s: float = Field(
        5.0, gt=0, description="how often api_keys_file is checked for changes (modification time)")
    rate_limit: float = Field(
        0.0, ge=0, description="seconds of estimated work per second each caller may use on average (per "
                               "API key, or per client address when keys are off); 0: no default limit "
                               "(a key's own rate= still applies)")
    rate_limit_burst_s: float = Field(
        10.0, gt=0, description="seconds of estimated work a caller may use at once (its bucket's size)")
    rate_limit_request_s: float = Field(
        0.01, ge=0, description="flat price of every request in its caller's bucket, in seconds, on top "
                                "of its work (so that cheap requests are limited too)")
    rate_limit_max_addresses: int = Field(
        10000, ge=1, description="most client addresses with a bucket (least recently seen ones are "
                                 "forgotten)")
    metrics_endpoint: EndpointPlace = Field(
        "public", description="where GET /metrics is served: public (the HTTP port), admin (admin_port) "
                              "or off")
    docs_endpoint: EndpointPlace = Field(
        "public", description="where /docs, /redoc and /openapi.json are served: public, admin or off")
    admin_port: int = Field(
        9000, ge=0, le=65535, description="HTTP port of what metrics_endpoint / docs_endpoint put on "
                                          "'admin' (0: any free port), on the address admin_host")
    admin_host: str = Field("", description="address of the admin port (default: host)")
    grpc_reflection: bool = Field(True, description="gRPC server reflection on the gRPC port")
    cors_allow_origins: str = Field(
        "", description="origins whose web pages may call the API (CORS), comma-separated, e.g. "
                        "'https://app.example.com'; '*' for any; empty: none")
    cross_site_forms: bool = Field(
        False, description="accept form-encoded and text/plain POSTs (which browsers send from any "
                           "site without asking) from pages of other origins than cors_allow_origins")
    models_show_training: bool = Field(
        False, description="GET /models and ListModels show the training metadata (commit, config, "
                           "steps, data); else only what a client needs (the model card has the rest)")

    otlp_endpoint: str = Field(
        "", description="tracing on: OpenTelemetry spans (requests, backend calls, image work) sent over "
                        "OTLP/HTTP to this URL, e.g. http://otel-collector:4318/v1/traces (needs the 'tracing' "
                        "extra); empty: no tracing")
    otlp_service_name: str = Field("ganserve", description="service.name of the spans (tracing on)")

    # --- process ----------------------------------------------------------------------------------
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="on SIGTERM: how long in-flight requests may finish")
    log_level: LogLevel = Field("info", description="log level")

    @field_validator("triton_url")
    @classmethod
    def _grpc_target(cls, value: str) -> str:
        """HOST:PORT, or a gRPC target URI (``dns:///triton-headless:8001`` to balance over the pods
        of a headless Service; ``ipv4:``, ``ipv6:``, ``unix:``)."""
        scheme, colon, rest = value.partition(":")
        if colon and scheme in _GRPC_TARGET_SCHEMES and rest.strip("/"):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or "/" in value or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be HOST:PORT or a gRPC target such as dns:///triton:8001 (Triton's "
                             f"gRPC endpoint), got {value!r}")
        return value

    @field_validator("default_models")
    @classmethod
    def _kind_model_pairs(cls, value: str) -> str:
        parse_default_models(value)
        return value

    @field_validator("api_keys")
    @classmethod
    def _key_lines(cls, value: str) -> str:
        parse_keys(value, source="api_keys")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _key_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                text = value.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read the API key file: {exc}") from None
            parse_keys(text, source=str(value))
        return value

    @model_validator(mode="after")
    def _queue_fits_one_request(self) -> Settings:
        largest = max(self.max_images_per_request, self.max_interpolation_frames)
        if self.max_queue_depth < largest:
            raise ValueError(
                f"max_queue_depth ({self.max_queue_depth}) must be at least the largest request "
                f"(max_images_per_request / max_interpolation_frames = {largest})")
        return self

    @model_validator(mode="after")
    def _tile_limits_in_order(self) -> Settings:
        if self.upscale_min_tile_size > self.upscale_max_tile_size:
            raise ValueError(f"upscale_min_tile_size ({self.upscale_min_tile_size}) must be at most "
                             f"upscale_max_tile_size ({self.upscale_max_tile_size})")
        return self


def parse_default_models(value: str) -> dict[str, str]:
    """``"KIND=MODEL,..."`` -> {kind: model}; ValueError naming what is wrong."""
    defaults: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        kind, sep, model = (x.strip() for x in part.partition("="))
        if not sep or not model:
            raise ValueError(f"expected KIND=MODEL, got {part!r}")
        if kind not in REQUEST_KINDS:
            raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(REQUEST_KINDS)}")
        if kind in defaults:
            raise ValueError(f"kind {kind!r} is given twice")
        defaults[kind] = model
    return defaults
