"""Reading an uploaded image from a request body, never holding more than ``max_upload_bytes``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ganserve.serve.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType
from ganserve.serve.images import UPLOAD_MEDIA_TYPES

UPLOAD_FIELD = "image"  # the multipart field holding the file
_MULTIPART_SLACK = 64 * 1024  # part headers and boundaries around the file


async def _limited(request: Request, *, limit: int) -> AsyncIterator[bytes]:
    """The body, chunk by chunk; :class:`PayloadTooLarge` as soon as it exceeds ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload is {declared} bytes; the limit is {limit} (max_upload_bytes)")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"upload exceeds {limit} bytes (max_upload_bytes)")
        yield chunk


async def read_upload(request: Request, *, max_bytes: int) -> bytes:
    """The image bytes of a raw ``image/*`` body or of the ``image`` part of a multipart form.

    Nothing goes to disk: Starlette's parser would spool a file part over ``spool_max_size`` (1 MiB)
    to a temporary file (where a small temp directory turned uploads into 500s); here that size is
    the body's own limit, so the part stays in memory, already bounded by ``max_upload_bytes``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in UPLOAD_MEDIA_TYPES:
        return b"".join([chunk async for chunk in _limited(request, limit=max_bytes)])
    if content_type == "multipart/form-data":
        body_limit = max_bytes + _MULTIPART_SLACK
        parser = MultiPartParser(request.headers, _limited(request, limit=body_limit), max_files=1, max_fields=8)
        parser.spool_max_size = body_limit  # a part is smaller than the body: never rolled over to a file
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise InvalidArgument(f"malformed multipart body: {exc.message}") from exc
        try:
            part = form.get(UPLOAD_FIELD)
            if not isinstance(part, UploadFile):
                raise InvalidArgument(f"multipart body has no file field {UPLOAD_FIELD!r}")
            data = await part.read()
        finally:
            await form.close()
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"upload is {len(data)} bytes; the limit is {max_bytes} (max_upload_bytes)")
        return data
    raise UnsupportedMediaType(
        f"content type {content_type or 'none'!r} is not accepted; send the image as the body with "
        f"Content-Type {', '.join(UPLOAD_MEDIA_TYPES)}, or as multipart/form-data field {UPLOAD_FIELD!r}")
