"""API keys: stored as SHA-256 digests, never in the clear; looked up in constant time; reloaded when
their file changes.

A key file (or the ``api_keys`` setting, entries separated by newlines or ``;``) holds one key per
line::

    # id     sha256 of the key (64 hex digits)                              options (all optional)
    alice    2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae  endpoints=generate,upscale models=dcgan
    batch    fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9  rate=2 burst=120

``endpoints``: the operations the key may call (generate, interpolate, upscale, list_models; default
all); ``models``: the models it may use (default all); ``rate`` and ``burst``: its own rate limit
(:mod:`ganserve.serve.access.ratelimit`; default the gateway's). The digest of a key is
``printf '%s' "$KEY" | sha256sum``. A key is revoked by deleting its line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganserve.serve.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)
ENDPOINTS = ("generate", "interpolate", "upscale", "list_models")  # what a key's scope can name
MAX_KEY_CHARS = 256
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_OPTIONS = ("endpoints", "models", "rate", "burst")


@dataclass(frozen=True)
class ApiKey:
    """One key's entry: its id (logged, a metric label), digest and scope."""

    id: str
    digest: bytes                              # sha256 of the key
    endpoints: frozenset[str] | None = None    # None: every endpoint
    models: frozenset[str] | None = None       # None: every model
    rate: float | None = None                  # own rate limit (work seconds per second); None: default
    burst: float | None = None                 # own bucket size (work seconds); None: default

    def check_endpoint(self, endpoint: str) -> None:
        if self.endpoints is not None and endpoint not in self.endpoints:
            raise PermissionDenied(f"API key {self.id!r} may not call {endpoint}; it may call "
                                   f"{', '.join(sorted(self.endpoints)) or 'nothing'}")

    def check_model(self, model: str) -> None:
        if self.models is not None and model not in self.models:
            raise PermissionDenied(f"API key {self.id!r} may not use model {model!r}; it may use "
                                   f"{', '.join(sorted(self.models)) or 'none'}", model=model)


def presented_key(*, authorization: str, api_key: str) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` (scheme in any case), else
    ``X-API-Key: <key>`` (the same names over gRPC metadata)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return api_key.strip() or None


def digest_of(key: str) -> str:
    """The hex SHA-256 of a key, as the key file holds it."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(text: str, *, source: str) -> tuple[ApiKey, ...]:
    """Every key of a key file's text; ValueError naming the line and what is wrong with it."""
    keys: list[ApiKey] = []
    ids: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, entry {number}"
        fields = line.split()
        if len(fields) < 2:
            raise ValueError(f"{where}: expected 'ID SHA256 [endpoints=...] [models=...] [rate=...] "
                             f"[burst=...]', got {len(fields)} field(s)")
        key_id, digest = fields[:2]
        if not _ID.fullmatch(key_id):
            raise ValueError(f"{where}: key id {key_id[:64]!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"{where}: key {key_id!r}: the second field must be the key's SHA-256 "
                             f"(64 hex digits: printf '%s' \"$KEY\" | sha256sum), not the key itself")
        options: dict[str, str] = {}
        for option in fields[2:]:
            name, sep, value = option.partition("=")
            if not sep or name not in _OPTIONS or name in options:
                raise ValueError(f"{where}: key {key_id!r}: {option[:64]!r} is not one of "
                                 f"{', '.join(o + '=...' for o in _OPTIONS)} (each at most once)")
            options[name] = value
        entry = ApiKey(id=key_id, digest=bytes.fromhex(digest), endpoints=_names(options, "endpoints", where),
                       models=_names(options, "models", where), rate=_number(options, "rate", where),
                       burst=_number(options, "burst", where))
        if entry.id in ids or entry.digest in digests:
            raise ValueError(f"{where}: key {key_id!r}: its id or its digest is given twice")
        ids.add(entry.id)
        digests.add(entry.digest)
        keys.append(entry)
    return tuple(keys)


def _names(options: dict[str, str], name: str, where: str) -> frozenset[str] | None:
    if name not in options:
        return None
    names = frozenset(filter(None, options[name].split(",")))
    bad = [n for n in names if not _NAME.fullmatch(n) or (name == "endpoints" and n not in ENDPOINTS)]
    if bad:
        valid = f" (endpoints: {', '.join(ENDPOINTS)})" if name == "endpoints" else ""
        raise ValueError(f"{where}: {name}= names {bad[0][:64]!r}, which is not valid{valid}")
    return names


def _number(options: dict[str, str], name: str, where: str) -> float | None:
    if name not in options:
        return None
    try:
        value = float(options[name])
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{where}: {name}= must be a number >= 0, got {options[name][:32]!r}")
    return value


class KeyStore:
    """The keys a gateway accepts, from a file (reloaded when it changes: checked at most every
    ``reload_s``, by its modification time, size and inode) and/or inline text."""

    def __init__(self, *, path: Path | None, inline: str = "", reload_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path, self._inline, self._reload_s, self._clock = path, inline, reload_s, clock
        self._inline_keys = parse_keys(inline, source="api_keys") if inline.strip() else ()
        self._file_keys: tuple[ApiKey, ...] = ()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -float("inf")
        self.generation = 0  # counts (re)loads; rate-limit buckets follow a key's new limits
        if path is not None:
            self._file_keys = parse_keys(path.read_text(), source=str(path))
            self._stamp = _stamp(path)
            self._checked = clock()
        self._keys = self._inline_keys + self._file_keys

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        self._maybe_reload()
        return self._keys

    def authenticate(self, presented: str | None) -> ApiKey:
        """The entry of the presented key, or :class:`Unauthenticated`. Every entry is compared (in
        constant time), so the answer's timing does not depend on which key matched."""
        if not presented:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or "
                                  "'X-API-Key: <key>' (gRPC: metadata authorization or x-api-key)")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")[:MAX_KEY_CHARS * 4]).digest()
        found = None
        for entry in self.keys:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        if found is None:
            raise Unauthenticated("the API key is not valid (unknown, mistyped or revoked)")
        return found

    def _maybe_reload(self) -> None:
        if self._path is None or self._clock() - self._checked < self._reload_s:
            return
        self._checked = self._clock()
        try:
            stamp = _stamp(self._path)
            if stamp == self._stamp:
                return
            keys = parse_keys(self._path.read_text(), source=str(self._path))
        except (OSError, ValueError) as exc:
            log.error("API keys not reloaded, the previous ones stay in use: %s", exc)
            return
        self._stamp, self._file_keys = stamp, keys
        self._keys = self._inline_keys + keys
        self.generation += 1
        log.info("API keys reloaded from %s: %d key(s)", self._path, len(keys))


def _stamp(path: Path) -> tuple[int, int, int]:
    info = os.stat(path)  # follows symbolic links: a Kubernetes Secret volume swaps one on update
    return info.st_mtime_ns, info.st_size, info.st_ino
