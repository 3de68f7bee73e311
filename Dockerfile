# syntax=docker/dockerfile:1
# The ganserve gateway: `ganserve serve` (HTTP :8000, gRPC :50051) with the `serve` extra only —
# ONNX Runtime, FastAPI, gRPC; no PyTorch. Build from the repository root:
#   docker build -t ganserve:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# The models in model_repository/ are baked in at /models (GANSERVE_MODEL_REPOSITORY). To serve
# other models, mount a repository over it:  docker run -v "$PWD/my_repo:/models:ro" ganserve:0.1.0
# Docs: docs/deploy.md. Triton is NVIDIA's own image (nvcr.io/nvidia/tritonserver), not this one.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its serve dependencies into a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the gateway distribution needs (training/ is left out: the image carries no PyTorch code;
# .dockerignore keeps out the development tools in ganserve/dev/). setup.py installs the folders that
# are there under the one name ganserve: ganserve/ and serve/ (as ganserve.serve).
COPY pyproject.toml setup.py README.md ./
COPY ganserve/ ganserve/
COPY serve/ serve/
# The project itself is installed from source (nothing to pin); its dependencies' ranges are in
# pyproject.toml. The checks after it fail the build if anything pulled in PyTorch, or if the installed
# package cannot import the gateway or build its HTTP app (-I: the installed ganserve, not the source
# folder in /src); building the app checks that the playground's files and the API docs' assets (served at
# /, /docs and /redoc, no CDN) are installed.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[serve]" \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && python -I -c "import ganserve.serve.app, ganserve.serve.cli" \
    && python -I -c "from ganserve.serve.http.app import create_app; from ganserve.serve.settings import Settings; create_app(Settings())"

# ---- runtime: the virtualenv and the models, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ganserve-gateway" \
      org.opencontainers.image.description="ganserve gateway: GAN generators over HTTP and gRPC, embedded ONNX Runtime or in front of NVIDIA Triton" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed, non-root UID/GID (the Helm chart's runAsUser/fsGroup default).
RUN groupadd --system --gid 10001 ganserve \
    && useradd --system --uid 10001 --gid ganserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ganserve

COPY --from=build /opt/venv /opt/venv
# The committed models; mount another repository over /models to serve others.
COPY model_repository/ /models/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GANSERVE_MODEL_REPOSITORY=/models \
    GANSERVE_HOST=0.0.0.0 \
    GANSERVE_HTTP_PORT=8000 \
    GANSERVE_GRPC_PORT=50051

USER 10001:10001
EXPOSE 8000 50051

# Liveness of the process (python's urllib: slim images have no curl). Readiness (/readyz: models
# loaded) is for load balancers and Kubernetes, not for restarting the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GANSERVE_HTTP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["ganserve", "serve"]
