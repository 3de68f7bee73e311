#!/usr/bin/env bash
# Create (or reuse) ./.venv and install ganserve with the extras in $GANSERVE_EXTRAS
# (default: train,serve,client,dev,bench). PyTorch 2.13.0 (CPU) goes in first when training is wanted: a bare
# `torch` requirement would otherwise pull a multi-GB CUDA build. Each step says what it installs (on
# stderr); nothing is printed when ./.venv is already up to date.
# `scripts/bootstrap.sh --check`: install nothing; exit 0 when ./.venv is up to date, 1 when not.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${GANSERVE_EXTRAS:-train,serve,client,dev,bench}"
python="${PYTHON:-python3}"
say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Up to date when the project metadata is unchanged and the wanted extras are already in.
stamp=.venv/.ganserve-installed
digest="$(cat pyproject.toml setup.py scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
installed=""
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$digest" ]; then
    installed="$(sed -n 2p "$stamp")"
fi
missing=0
for extra in ${extras//,/ }; do
    [[ ",$installed," == *",$extra,"* ]] || missing=1
done
if [ "${1:-}" = "--check" ]; then
    exit "$missing"
fi
[ "$missing" = 1 ] || exit 0

start=$SECONDS
if [ ! -x .venv/bin/python ]; then
    say "creating ./.venv ($("$python" --version 2>&1))"
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [[ ",$extras," == *",train,"* ]] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    say "installing PyTorch 2.13.0, CPU build (about 200 MB; a few minutes on a slow link) ..."
    step=$SECONDS
    "${pip[@]}" "torch==2.13.0"
    say "PyTorch installed ($((SECONDS - step)) s)"
fi
say "installing ganserve[$extras] and its dependencies (pip install -e; about 1-2 minutes the first time) ..."
step=$SECONDS
"${pip[@]}" -e ".[${extras}]"
say "ganserve[$extras] installed ($((SECONDS - step)) s)"
all="$(printf '%s\n' ${installed//,/ } ${extras//,/ } | sort -u | paste -sd, -)"
printf '%s\n%s\n' "$digest" "$all" > "$stamp"
say "./.venv is ready: extras $all ($((SECONDS - start)) s in all)"
