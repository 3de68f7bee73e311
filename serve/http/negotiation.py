"""``Accept`` header handling: does the client prefer a raw image over the JSON envelope?"""

from __future__ import annotations

JSON = "application/json"


def _ranges(accept: str) -> list[tuple[str, float]]:
    """``Accept`` -> [(media range, q)]; malformed parts are skipped."""
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if "/" not in media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        out.append((media.lower(), q))
    return out


def _quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """q of the most specific range matching ``media_type`` (RFC 9110 12.5.1), 0 if none."""
    kind = media_type.split("/")[0]
    best, specificity = 0.0, -1
    for media, q in ranges:
        level = 2 if media == media_type else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if level > specificity:
            best, specificity = q, level
    return best


def prefers(accept: str | None, media_type: str) -> bool:
    """True when ``accept`` ranks ``media_type`` strictly above JSON (ties and no header: JSON)."""
    if not accept:
        return False
    ranges = _ranges(accept)
    return _quality(ranges, media_type) > _quality(ranges, JSON)
