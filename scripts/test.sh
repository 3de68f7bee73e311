#!/usr/bin/env bash
# The test command: installs everything it needs into ./.venv and ./tools, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/install-tools.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
