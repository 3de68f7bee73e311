"""Every error the gateway answers arrives as its own exception type, the same over HTTP and gRPC, sync and
async; a URL where nothing answers is a GatewayUnavailable naming it; retries honour Retry-After."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ganserve.client import errors
from ganserve.client.errors import (
    DeadlineExceeded,
    GanserveError,
    GatewayUnavailable,
    InvalidArgument,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    QueueFull,
    UnsupportedMediaType,
)
from tests.client.helpers import MODES, PROTOCOLS, call, png, unused_port, url
from tests.serve.helpers import RunningGateway, add_generator, running_gateway, test_settings

BOTH = pytest.mark.parametrize("protocol,mode", [(p, m) for p in PROTOCOLS for m in MODES])


def _raised(address: str, mode: str, method: str, *args, **kwargs) -> GanserveError:
    with pytest.raises(GanserveError) as caught:
        call(address, mode, method, *args, **kwargs)
    return caught.value


def _check(error: GanserveError, kind: type[GanserveError], *, status: int, grpc_code: str,
           words: str) -> None:
    """The exact type, its code, both protocols' status and the gateway's message."""
    assert type(error) is kind, error
    assert (error.code, error.http_status, error.grpc_code) == (kind.code, status, grpc_code)
    assert words in error.message and str(error) == error.message


@BOTH
def test_unknown_model_is_model_not_found(gateway: RunningGateway, protocol: str, mode: str) -> None:
    error = _raised(url(gateway, protocol), mode, "generate", model="nope")
    _check(error, ModelNotFound, status=404, grpc_code="NOT_FOUND", words="model 'nope' is not loaded")


@BOTH
def test_a_bad_n_is_invalid_argument(gateway: RunningGateway, protocol: str, mode: str) -> None:
    error = _raised(url(gateway, protocol), mode, "generate", 0)
    _check(error, InvalidArgument, status=422, grpc_code="INVALID_ARGUMENT",
           words="max_images_per_request")
    # what protobuf cannot hold is refused before sending, as the gateway would
    error = _raised(url(gateway, protocol), mode, "generate", seed=-1)
    assert type(error) is InvalidArgument and "seed" in error.message


@BOTH
def test_a_big_upload_is_payload_too_large(gateway: RunningGateway, protocol: str, mode: str) -> None:
    big = png((80, 80, 3))  # > max_upload_bytes (16 KiB)
    assert len(big) > 16384
    error = _raised(url(gateway, protocol), mode, "upscale", big)
    _check(error, PayloadTooLarge, status=413, grpc_code="RESOURCE_EXHAUSTED", words="max_upload_bytes")


@BOTH
def test_a_file_that_is_no_image_is_unsupported_media_type(gateway: RunningGateway, protocol: str,
                                                           mode: str) -> None:
    error = _raised(url(gateway, protocol), mode, "upscale", b"these bytes are not an image")
    _check(error, UnsupportedMediaType, status=415, grpc_code="INVALID_ARGUMENT",
           words="not an image in a supported format")


@pytest.fixture(scope="module")
def unready_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway in front of a Triton server that is not there: never ready."""
    root = tmp_path_factory.mktemp("unready")
    add_generator(root, "tiny")
    settings = test_settings(root, backend="triton", triton_url=f"127.0.0.1:{unused_port()}",
                             triton_startup_timeout_s=0.2, triton_health_interval_s=0.2)
    with running_gateway(settings, wait_ready=False) as running:
        yield running


@BOTH
def test_a_gateway_that_is_not_ready_is_not_ready(unready_gateway: RunningGateway, protocol: str,
                                                  mode: str) -> None:
    error = _raised(url(unready_gateway, protocol), mode, "generate")
    _check(error, NotReady, status=503, grpc_code="UNAVAILABLE", words="the gateway is not ready")
    assert error.retryable


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_not_ready_is_retried_with_backoff(unready_gateway: RunningGateway, protocol: str) -> None:
    """No Retry-After on a 503: the retries wait 0.25 s, then 0.5 s."""
    started = time.monotonic()
    error = _raised(url(unready_gateway, protocol), "sync", "generate", client={"retries": 2})
    assert type(error) is NotReady and 0.75 <= time.monotonic() - started < 3


@BOTH
def test_nothing_at_the_url_is_gateway_unavailable(protocol: str, mode: str) -> None:
    port = unused_port()
    address = f"http://127.0.0.1:{port}" if protocol == "http" else f"grpc://127.0.0.1:{port}"
    error = _raised(address, mode, "models")
    assert type(error) is GatewayUnavailable and error.url == address
    assert str(error).startswith(f"no gateway answers at {address}: ") and "refused" in str(error).lower()
    unknown = "nothing-here.invalid:8000"
    error = _raised(f"{protocol}://{unknown}", mode, "models")
    assert type(error) is GatewayUnavailable and unknown in str(error)


# --- queue full, deadlines and retries: a gateway whose batches wait 1 s to fill ------------------------

@pytest.fixture(scope="module")
def slow_gateway(client_repo: Path) -> Iterator[RunningGateway]:
    """Every batch waits 1 s to fill; requests time out after 0.5 s; 4 images may be in flight."""
    settings = test_settings(client_repo, batch_max_queue_delay_ms=1000, batch_wait_alone=True, request_timeout_s=0.5,
                             max_queue_depth=4, max_images_per_request=4, max_interpolation_frames=4)
    with running_gateway(settings) as running:
        yield running


def _while_full(gateway: RunningGateway) -> threading.Thread:
    """Starts 4 images (the whole max_queue_depth) that wait in the queue until their deadline (0.5 s);
    returns once they are queued."""
    filling = threading.Thread(target=httpx.post, args=(f"{gateway.http_url}/generate",),
                               kwargs={"json": {"n": 4}, "timeout": 10})
    filling.start()
    while 'ganserve_backend_queue_depth{model="tiny",version="2"} 4.0' not in gateway.metrics_text():
        time.sleep(0.01)
    return filling


@pytest.mark.parametrize("protocol,mode", [("http", "sync"), ("grpc", "async")])
def test_a_full_queue_is_queue_full_with_retry_after(slow_gateway: RunningGateway, protocol: str,
                                                     mode: str) -> None:
    filling = _while_full(slow_gateway)
    error = _raised(url(slow_gateway, protocol), mode, "generate")
    filling.join()
    _check(error, QueueFull, status=429, grpc_code="RESOURCE_EXHAUSTED", words="max_queue_depth")
    assert error.retry_after_s == (1.0 if protocol == "http" else None)  # gRPC carries no Retry-After


@pytest.mark.parametrize("protocol,mode", [("http", "async"), ("grpc", "sync")])
def test_a_passed_deadline_is_deadline_exceeded(slow_gateway: RunningGateway, protocol: str, mode: str) -> None:
    error = _raised(url(slow_gateway, protocol), mode, "generate")
    _check(error, DeadlineExceeded, status=504, grpc_code="DEADLINE_EXCEEDED", words="0.5")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_client_timeout_is_deadline_exceeded(slow_gateway: RunningGateway, protocol: str) -> None:
    error = _raised(url(slow_gateway, protocol), "sync", "generate", client={"timeout": 0.1})
    assert type(error) is DeadlineExceeded
    assert "0.1" in error.message or protocol == "grpc"  # gRPC: the gateway may answer the deadline first


def test_retries_wait_for_retry_after_then_send_again(slow_gateway: RunningGateway) -> None:
    """Refused with Retry-After: 1, the request goes again a second later: admitted then (the queue has
    emptied), it meets the gateway's deadline instead. Without retries, or with a shorter longest wait,
    the 429 is raised at once."""
    address = url(slow_gateway, "http")
    for client, expected, seconds in (({}, QueueFull, (0, 0.5)), ({"retries": 2, "max_retry_wait_s": 0.5},
                                                                   QueueFull, (0, 0.5)),
                                      ({"retries": 2}, DeadlineExceeded, (1.0, 3))):
        filling = _while_full(slow_gateway)
        started = time.monotonic()
        error = _raised(address, "sync", "generate", client=client)
        elapsed = time.monotonic() - started
        filling.join()
        assert type(error) is expected and seconds[0] <= elapsed < seconds[1], (client, error, elapsed)


# --- the mapping itself ------------------------------------------------------------------------------------

def test_every_gateway_code_has_its_type() -> None:
    from ganserve.serve.errors import ERROR_TYPES
    from ganserve.serve.grpc.servicer import GRPC_CODE
    from ganserve.serve.http.errors import HTTP_STATUS

    ours = {e.code: e for e in errors.ERROR_TYPES}
    assert set(ours) == {e.code for e in ERROR_TYPES}
    for theirs in ERROR_TYPES:
        mine = ours[theirs.code]
        assert (mine.__name__, mine.http_status, mine.grpc_code) == (
            theirs.__name__, HTTP_STATUS[theirs], GRPC_CODE[theirs].name)
        body = f'{{"error": {{"code": "{theirs.code}", "message": "m"}}}}'.encode()
        assert type(errors.from_http(HTTP_STATUS[theirs], body, url="u")) is mine
        assert type(errors.from_grpc(GRPC_CODE[theirs].name, "m", code=theirs.code, url="u")) is mine


def test_answers_that_are_not_the_gateways_still_raise_readably() -> None:
    proxy = errors.from_http(502, b"<html>Bad Gateway</html>", url="http://h:1")
    assert (type(proxy), proxy.code) == (errors.UpstreamError, "http_error")
    assert proxy.message == "HTTP 502 from http://h:1: <html>Bad Gateway</html>"
    wrong_path = errors.from_http(404, b'{"error": {"code": "not_found", "message": "Not Found"}}', url="u")
    assert (type(wrong_path), wrong_path.code) == (GanserveError, "not_found")
    assert type(errors.from_grpc("RESOURCE_EXHAUSTED", "Received message larger than max (5 vs. 4)",
                                 code=None, url="u")) is PayloadTooLarge
    assert type(errors.from_grpc("UNAVAILABLE", "failed to connect", code=None, url="u")) is GatewayUnavailable
