"""The file descriptors the gateway needs, and raising the process's limit to match at start-up.

Each open HTTP or gRPC connection holds a descriptor; an HTTP request may hold a second one while
a large multipart upload spools to /tmp. With ``max_connections`` + ``grpc_max_connections``
connections open, the rest of the process (listening sockets, event loops, gRPC's and ONNX
Runtime's threads, the channel to Triton, logs, model files while loading) must still find
descriptors, or new connections fail with a reset. docs/deploy.md explains how the limit is met in
a container.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
HEADROOM = 256  # descriptors besides connections and uploads


@dataclass(frozen=True)
class DescriptorLimit:
    needed: int
    soft: int | None  # the soft RLIMIT_NOFILE after start-up (None: unlimited or not known)
    hard: int | None


def descriptors_needed(settings: Settings) -> int:
    """2 per HTTP connection (its socket, a spooled upload), 1 per gRPC connection, plus ``HEADROOM``."""
    return 2 * settings.max_connections + settings.grpc_max_connections + HEADROOM


def ensure_descriptor_limit(settings: Settings) -> DescriptorLimit:
    """Raises the soft RLIMIT_NOFILE to :func:`descriptors_needed` when it is lower (as far as the
    hard limit allows; an unprivileged process may), and logs a warning with the numbers when even
    the hard limit is too low: the caps would then hit the limit before the gateway can refuse."""
    needed = descriptors_needed(settings)
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to raise
        return DescriptorLimit(needed, None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < needed:
        target = needed if hard == unlimited else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, target)
                soft = target
            except (ValueError, OSError) as exc:
                log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft != unlimited and soft < needed:
        log.warning(
            "open-file limit %d (hard limit %s) is below the %d descriptors the connection caps need "
            "(2 x max_connections %d + grpc_max_connections %d + %d): connections may be reset before "
            "the caps refuse them; lower the caps or raise the container's nofile limit (docs/deploy.md)",
            soft, "unlimited" if hard == unlimited else hard, needed, settings.max_connections,
            settings.grpc_max_connections, HEADROOM)
    return DescriptorLimit(needed, None if soft == unlimited else soft, None if hard == unlimited else hard)
