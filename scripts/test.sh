#!/usr/bin/env bash
# Runs the whole test suite: unit tests, then integration tests against real `kubeclass up` servers
# driven by the real kubectl and the official Python clients.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import kubeclass, kubernetes, pytest" 2>/dev/null || bash scripts/install.sh
exec "$PY" -m pytest -q -p no:cacheprovider "$@" tests
