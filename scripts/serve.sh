#!/usr/bin/env bash
# The main job: the gateway serving the shipped models (model_repository/) on the embedded
# ONNX Runtime backend. Installs only what serving needs (no PyTorch) into ./.venv.
# Arguments go to `ganserve serve` (`make serve ARGS="--backend triton --triton-url HOST:PORT"`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! GANSERVE_EXTRAS="${GANSERVE_EXTRAS:-serve}" scripts/bootstrap.sh --check; then
    echo "serve: installing what the gateway needs into ./.venv first (once)" >&2
    GANSERVE_EXTRAS="${GANSERVE_EXTRAS:-serve}" scripts/bootstrap.sh
fi
echo "serve: starting .venv/bin/ganserve serve --model-repository model_repository $*" >&2
exec .venv/bin/ganserve serve --model-repository model_repository "$@"
