"""Rate limits: the token bucket itself, then throttling over real HTTP and gRPC clients (per address
with keys off, per key with keys on), with the Retry-After and RateLimit-* answers and the metric."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ganserve.serve.access.keys import digest_of, parse_keys
from ganserve.serve.access.ratelimit import RateLimiter, TokenBucket
from ganserve.serve.errors import RateLimited
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc.servicer import ERROR_CODE_KEY
from tests.serve.helpers import RunningGateway, running_gateway, test_settings
from tests.serve.test_access import grpc_call


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_takes_refills_and_says_when() -> None:
    bucket = TokenBucket(rate=0.5, burst=2.0, now=0.0)
    assert bucket.take(1.5, 0.0) is None and bucket.tokens == pytest.approx(0.5)
    assert bucket.take(1.5, 0.0) == pytest.approx(2.0)       # 1.0 missing at 0.5/s
    assert bucket.take(1.5, 1.0) == pytest.approx(1.0)       # refilled 0.5 meanwhile
    assert bucket.take(1.5, 2.0) is None                     # 1.5 there now
    assert bucket.headers(2.0) == {"RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "4"}
    assert bucket.take(100, 10.0) is None and bucket.tokens == pytest.approx(-98)  # dearer than the bucket:
    assert bucket.take(0.1, 10.0) == pytest.approx(196.2)  # passes when full, then the debt is paid back


def test_limiter_messages_headers_and_bounded_addresses() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1.0, request_cost=0.6, max_addresses=3, clock=clock)
    bucket = limiter.bucket(key=None, address="10.0.0.1")
    limiter.charge(bucket, 0.6, what="a request", who="address 10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limiter.charge(bucket, 0.6, what="a request", who="address 10.0.0.1")
    assert refused.value.retry_after_s == 1
    assert refused.value.headers == {"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "1",
                                     "Retry-After": "1"}
    assert "address 10.0.0.1 is over its rate limit" in refused.value.message
    for i in range(2, 10):
        limiter.bucket(key=None, address=f"10.0.0.{i}")
    assert limiter.addresses == 3
    assert limiter.bucket(key=None, address="10.0.0.1").tokens == 1.0  # forgotten: a full bucket again
    (own,) = parse_keys(f"k {digest_of('k')} rate=2 burst=5", source="t")
    (free,) = parse_keys(f"f {digest_of('f')} rate=0", source="t")
    assert (limiter.bucket(key=own, address="x").rate, limiter.bucket(key=own, address="x").burst) == (2, 5)
    assert limiter.bucket(key=free, address="x") is None  # rate=0: this key is not limited


def _throttled(gw: RunningGateway) -> dict[str, float]:
    text = gw.gateway.runtime.metrics.exposition().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "ganserve_rate_limited")
    return {s.labels["key"]: s.value for s in family.samples if s.name.endswith("_total")}


@pytest.fixture
def limited(model_repo: Path):
    """Keys off: buckets per client address of 2 s of work, refilled at 0.5 s/s, 0.9 s per request: two
    requests pass, the third waits (a busy machine's delays between requests, up to 1.4 s, do not refill
    what it lacks)."""
    settings = test_settings(model_repo, rate_limit=0.5, rate_limit_burst_s=2.0, rate_limit_request_s=0.9)
    with running_gateway(settings) as gw:
        yield gw


def test_http_throttles_with_retry_after_that_is_enough(limited: RunningGateway) -> None:
    url = f"{limited.http_url}/generate"
    first = httpx.post(url, json={"seed": 1})
    assert first.status_code == 200
    assert first.headers["ratelimit-limit"] == "2" and first.headers["ratelimit-remaining"] == "1"
    assert int(first.headers["ratelimit-reset"]) >= 1
    assert httpx.post(url, json={"seed": 1}).status_code == 200
    refused = httpx.post(url, json={"seed": 1})
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["request_id"] == refused.headers["x-request-id"]
    assert "address 127.0.0.1 is over its rate limit" in error["message"]
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 4 and f"retry in {retry} s" in error["message"]
    assert refused.headers["ratelimit-remaining"] == "0" and refused.headers["ratelimit-limit"] == "2"
    assert httpx.post(url, json={"seed": 1}).status_code == 429  # asking again at once does not help
    time.sleep(retry + 0.05)
    assert httpx.post(url, json={"seed": 1}).status_code == 200  # waiting Retry-After does
    assert _throttled(limited)[""] == 2
    assert httpx.get(f"{limited.http_url}/healthz").status_code == 200  # probes are never limited


def test_grpc_throttles_with_the_same_fields_in_trailing_metadata(limited: RunningGateway) -> None:
    statuses = [grpc_call(limited, "Generate", pb.GenerateRequest(seed=1)) for _ in range(3)]
    assert [s[1] for s in statuses] == ["OK", "OK", "RESOURCE_EXHAUSTED"]
    assert statuses[0][3]["ratelimit-limit"] == "2"
    trailing = statuses[2][3]
    assert trailing[ERROR_CODE_KEY] == "rate_limited" and 1 <= int(trailing["retry-after"]) <= 4
    assert trailing["ratelimit-remaining"] == "0" and int(trailing["ratelimit-reset"]) >= 1
    time.sleep(int(trailing["retry-after"]) + 0.05)
    assert grpc_call(limited, "Generate", pb.GenerateRequest(seed=1))[1] == "OK"


def test_requests_are_priced_in_work(model_repo: Path) -> None:
    """No flat price: a large request empties a tiny bucket by its estimated work alone (it passes as
    the bucket was full, then its debt holds back the next one for seconds)."""
    settings = test_settings(model_repo, rate_limit=0.0002, rate_limit_burst_s=0.0001, rate_limit_request_s=0)
    with running_gateway(settings) as gw:
        spu = gw.gateway.runtime.admission.seconds_per_unit("tiny")
        big = httpx.post(f"{gw.http_url}/generate", json={"n": 64, "seed": 1})
        assert big.status_code == 200
        after = httpx.post(f"{gw.http_url}/generate", json={"seed": 1})
        assert after.status_code == 429
        # the debt: 64 images at the measured throughput, paid back at 0.0002 s/s
        assert int(after.headers["retry-after"]) >= min(64 * spu, 1.0) / 0.0002 * 0.5


def test_buckets_are_per_key(model_repo: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"slow {digest_of('slow-key')} rate=0.1 burst=0.5\n"
                    f"fast {digest_of('fast-key')} rate=100 burst=100\n"
                    f"metrics {digest_of('metrics-key')}\n")
    settings = test_settings(model_repo, api_keys_file=keys, rate_limit_request_s=0.3)
    with running_gateway(settings) as gw:
        url = f"{gw.http_url}/generate"
        assert httpx.post(url, json={}, headers={"X-API-Key": "slow-key"}).status_code == 200
        slow = httpx.post(url, json={}, headers={"X-API-Key": "slow-key"})
        assert slow.status_code == 429 and int(slow.headers["retry-after"]) in (1, 2)  # ~0.1 s missing at 0.1 s/s
        assert "API key 'slow' is over its rate limit" in slow.json()["error"]["message"]
        # the same bucket over gRPC (asked at once: it refills at 0.1 s/s)
        assert grpc_call(gw, "Generate", pb.GenerateRequest(), metadata=(("x-api-key", "slow-key"),))[1] == \
            "RESOURCE_EXHAUSTED"
        assert all(httpx.post(url, json={}, headers={"X-API-Key": "fast-key"}).status_code == 200 for _ in range(5))
        counts = _throttled(gw)
        assert counts["slow"] == 2 and "fast" not in counts
