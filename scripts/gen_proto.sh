#!/usr/bin/env bash
# Regenerates the gRPC Python code from proto/ into serve/grpc/_generated/ (or into $1).
# Reproducible: grpcio-tools is pinned in the 'dev' extra, and the output is rewritten only by the
# one sed below (generated code imports its own package absolutely as `ganserve.v1`, which would
# clash with the `ganserve` CLI package; the rewrite makes that import relative).
# Check: tests/serve/test_proto.py regenerates into a temporary folder and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-serve/grpc/_generated}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$out/ganserve/v1"
"$python" -m grpc_tools.protoc -I proto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/ganserve/v1/ganserve.proto
sed -i 's/^from ganserve\.v1 import ganserve_pb2 as/from . import ganserve_pb2 as/' \
    "$out/ganserve/v1/ganserve_pb2_grpc.py"
for d in "$out" "$out/ganserve" "$out/ganserve/v1"; do
    [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
