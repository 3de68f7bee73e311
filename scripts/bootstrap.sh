#!/usr/bin/env bash
# Create (or reuse) ./.venv and install ganserve with the extras in $GANSERVE_EXTRAS
# (default: train,serve,client,dev). PyTorch 2.13.0 (CPU) goes in first when training is wanted: a bare
# `torch` requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${GANSERVE_EXTRAS:-train,serve,client,dev}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# Skip the install when the project metadata is unchanged and the wanted extras are already in.
stamp=.venv/.ganserve-installed
digest="$(cat pyproject.toml setup.py scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
installed=""
if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$digest" ]; then
    installed="$(sed -n 2p "$stamp")"
fi
missing=0
for extra in ${extras//,/ }; do
    [[ ",$installed," == *",$extra,"* ]] || missing=1
done
[ "$missing" = 1 ] || exit 0

if [[ ",$extras," == *",train,"* ]] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${pip[@]}" "torch==2.13.0"
fi
"${pip[@]}" -e ".[${extras}]"
all="$(printf '%s\n' ${installed//,/ } ${extras//,/ } | sort -u | paste -sd, -)"
printf '%s\n%s\n' "$digest" "$all" > "$stamp"
