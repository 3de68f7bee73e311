#!/usr/bin/env bash
# The main job: the gateway serving the shipped models (model_repository/) on the embedded
# ONNX Runtime backend. Installs only what serving needs (no PyTorch) into ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
GANSERVE_EXTRAS="${GANSERVE_EXTRAS:-serve}" scripts/bootstrap.sh
exec .venv/bin/ganserve serve --model-repository model_repository "$@"
