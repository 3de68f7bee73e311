#!/usr/bin/env bash
# Create (or reuse) ./.venv and install ganserve with the extras named in $GANSERVE_EXTRAS.
# PyTorch 2.13.0 (CPU) goes in first: a bare `torch` requirement would otherwise pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${GANSERVE_EXTRAS:-train,serve,dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [[ ",$extras," == *",train,"* ]] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${pip[@]}" "torch==2.13.0"
fi
# Re-install only when the project metadata changed since the last install.
stamp=.venv/.ganserve-installed
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "${pip[@]}" -e ".[${extras}]"
    echo "$want" > "$stamp"
fi
