"""The gate every request passes, over HTTP and gRPC alike: its API key (when keys are on), the
endpoint and model its key may use, and its rate limit. The adapters call :meth:`Gate.enter` before
anything else is done for a request; the service calls :func:`charge_work` when it prices a request
for admission, so that a request is charged the work admission estimates for it."""

from __future__ import annotations

from prometheus_client import Counter

from ganserve.serve.access.context import RequestContext, current
from ganserve.serve.access.keys import KeyStore
from ganserve.serve.access.ratelimit import RateLimiter
from ganserve.serve.access.tracing import add_event
from ganserve.serve.errors import RateLimited
from ganserve.serve.metrics import Metrics
from ganserve.serve.settings import Settings


class Gate:
    def __init__(self, settings: Settings, *, metrics: Metrics) -> None:
        self.keys = KeyStore(path=settings.api_keys_file, inline=settings.api_keys,
                             reload_s=settings.api_keys_reload_s) \
            if settings.api_keys_file is not None or settings.api_keys.strip() else None
        self.limiter = RateLimiter(rate=settings.rate_limit, burst=settings.rate_limit_burst_s,
                                   request_cost=settings.rate_limit_request_s,
                                   max_addresses=settings.rate_limit_max_addresses)
        self._throttled = Counter(
            "ganserve_rate_limited", "Requests refused by a rate limit, by API key id ('' when keys are "
            "off: per-address buckets).", ["key"], registry=metrics.registry)
        self._generation = 0

    def enter(self, context: RequestContext, *, credential: str | None, endpoint: str) -> None:
        """Authenticates the request (keys on), checks its key may call ``endpoint``, finds its bucket
        and takes the flat price of a request. Raises :class:`Unauthenticated`,
        :class:`PermissionDenied` or :class:`RateLimited`."""
        context.gate = self
        if self.keys is not None:
            context.key = self.keys.authenticate(credential)
            if self.keys.generation != self._generation:  # reloaded: drop revoked keys' buckets
                self._generation = self.keys.generation
                self.limiter.forget_keys({k.id for k in self.keys.keys})
            context.key.check_endpoint(endpoint)
        context.bucket = self.limiter.bucket(key=context.key, address=_host(context.client))
        self.charge(context, self.limiter.request_cost, what="a request")

    def charge(self, context: RequestContext, seconds: float, *, what: str) -> None:
        """Takes ``seconds`` from the request's bucket (if it has one), or :class:`RateLimited`."""
        if context.bucket is None or seconds <= 0:
            return
        who = f"API key {context.key_id!r}" if context.key is not None else f"address {_host(context.client)}"
        try:
            self.limiter.charge(context.bucket, seconds, what=what, who=who)
        except RateLimited:
            self._throttled.labels(context.key_id).inc()
            raise


def charge_work(*, model: str, seconds: float) -> None:
    """Called by the service as it admits (or re-prices) a request: checks that the request's key may
    use ``model`` and takes ``seconds`` of estimated work from its bucket. Outside a gated request
    (the service called directly): nothing."""
    context = current()
    if context is None or context.gate is None:
        return
    if context.key is not None:
        context.key.check_model(model)
    add_event("priced", **{"ganserve.model": model, "ganserve.work_s": seconds})
    try:
        context.gate.charge(context, seconds, what=f"{seconds:.2f} s of work on model {model!r}")
    except RateLimited as exc:
        exc.model = model
        raise


def _host(client: str) -> str:
    """The address part of ``host:port`` (IPv6 hosts keep their colons)."""
    return client.rsplit(":", 1)[0] if ":" in client else client
