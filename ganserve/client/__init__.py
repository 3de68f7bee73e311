"""Python client of a running ganserve gateway, over HTTP or gRPC, sync or async.

```
from ganserve.client import Client

with Client("http://localhost:8000") as gateway:      # or "grpc://localhost:50051"
    for image in gateway.generate(4, seed=42):
        image.save(f"{image.seed}.png")               # image.image: the PIL image; image.provenance
```

``AsyncClient`` has the same methods as coroutines. Every failure raises a :class:`GanserveError`
subclass that mirrors the gateway's error codes (docs/gateway.md, "Errors"), or
:class:`GatewayUnavailable` when nothing answers at the URL. Needs the ``client`` extra (httpx, grpcio).
"""

from ganserve.client._client import AsyncClient, Client
from ganserve.client.errors import (
    DeadlineExceeded,
    GanserveError,
    GatewayUnavailable,
    InvalidArgument,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    PermissionDenied,
    QueueFull,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamError,
)
from ganserve.client.results import (
    GeneratedImage,
    ImageFile,
    Interpolation,
    Model,
    ModelProblem,
    Models,
    ModelStep,
    UpscaledImage,
)

__all__ = [
    "AsyncClient", "Client", "DeadlineExceeded", "GanserveError", "GatewayUnavailable", "GeneratedImage",
    "ImageFile", "Interpolation", "InvalidArgument", "Model", "ModelNotFound", "ModelProblem", "ModelStep",
    "Models", "NotReady", "PayloadTooLarge", "PermissionDenied", "QueueFull", "RateLimited", "Unauthenticated",
    "UnsupportedMediaType", "UpscaledImage",
    "UpstreamError",
]
