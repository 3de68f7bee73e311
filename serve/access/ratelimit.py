"""Rate limits: a token bucket per caller (per API key, or per client address when keys are off),
priced in the currency of admission control (:mod:`ganserve.serve.admission`): **seconds of
estimated work** (a request's units at its model's measured throughput), plus a flat price per
request so that cheap calls are limited too.

A bucket holds up to ``burst`` seconds and refills at ``rate`` seconds per second (0.5: a caller may
keep half of one inference worker busy). A request is let through when the bucket holds its price
(or, for a request dearer than the whole bucket, when the bucket is full: it then owes the rest), and
the price is taken. Otherwise :class:`RateLimited` with ``Retry-After``: the seconds until the bucket
holds the price. Headers of every answer to a limited caller (the IETF httpapi draft's names):
``RateLimit-Limit`` (the bucket size), ``RateLimit-Remaining`` (what it holds) and ``RateLimit-Reset``
(seconds until it is full), all whole numbers.

Buckets live in each gateway process: N replicas let a caller through N times as fast
(docs/gateway.md, "Running it in public"). Per-address buckets are kept for the most recent
``max_addresses`` addresses (least recently used ones are dropped, as a full bucket).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from ganserve.serve.access.keys import ApiKey
from ganserve.serve.errors import RateLimited


class TokenBucket:
    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self._stamp = burst, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, cost: float, now: float) -> float | None:
        """Takes ``cost`` and returns None, or returns the seconds until it could be taken."""
        self._refill(now)
        needed = min(cost, self.burst)
        if self.tokens + 1e-9 >= needed:
            self.tokens -= cost
            return None
        return (needed - self.tokens) / self.rate if self.rate > 0 else math.inf

    def headers(self, now: float) -> dict[str, str]:
        """``RateLimit-*`` fields for an answer to this bucket's caller."""
        self._refill(now)
        full_in = (self.burst - self.tokens) / self.rate if self.rate > 0 else 0.0
        return {"RateLimit-Limit": str(math.floor(self.burst)),
                "RateLimit-Remaining": str(max(0, math.floor(self.tokens))),
                "RateLimit-Reset": str(math.ceil(full_in))}


class RateLimiter:
    """The buckets of one gateway. ``rate`` 0: callers without a rate of their own are not limited."""

    def __init__(self, *, rate: float, burst: float, request_cost: float, max_addresses: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._request_cost = rate, burst, request_cost
        self._max_addresses, self._clock = max_addresses, clock
        self._by_key: dict[str, TokenBucket] = {}
        self._by_address: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, *, key: ApiKey | None, address: str) -> TokenBucket | None:
        """The caller's bucket (None: not limited)."""
        if key is not None:
            rate = self._rate if key.rate is None else key.rate
            burst = self._burst if key.burst is None else key.burst
            if rate <= 0:
                return None
            bucket = self._by_key.get(key.id)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):  # new, or limits changed
                bucket = self._by_key[key.id] = TokenBucket(rate=rate, burst=burst, now=self._clock())
            return bucket
        if self._rate <= 0:
            return None
        bucket = self._by_address.get(address)
        if bucket is None:
            bucket = self._by_address[address] = TokenBucket(rate=self._rate, burst=self._burst,
                                                             now=self._clock())
            if len(self._by_address) > self._max_addresses:
                self._by_address.popitem(last=False)
        else:
            self._by_address.move_to_end(address)
        return bucket

    def forget_keys(self, keep: set[str]) -> None:
        """Drops the buckets of keys no longer configured (revoked)."""
        for key_id in set(self._by_key) - keep:
            del self._by_key[key_id]

    @property
    def addresses(self) -> int:
        return len(self._by_address)

    def charge(self, bucket: TokenBucket, seconds: float, *, what: str, who: str) -> None:
        """Takes ``seconds`` from ``bucket``, or raises :class:`RateLimited` (``what``: the price's
        name, ``who``: the caller's, for the message)."""
        now = self._clock()
        wait = bucket.take(seconds, now)
        if wait is None:
            return
        retry = max(1, math.ceil(wait)) if wait != math.inf else 3600
        headers = bucket.headers(now) | {"Retry-After": str(retry)}
        raise RateLimited(
            f"{who} is over its rate limit: {what} costs {seconds:.2f} s of work, its bucket holds "
            f"{max(bucket.tokens, 0):.2f} of {bucket.burst:g} s and refills at {bucket.rate:g} s per "
            f"second; retry in {retry} s", retry_after_s=retry, headers=headers)

    @property
    def request_cost(self) -> float:
        return self._request_cost
