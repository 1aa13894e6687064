#!/usr/bin/env bash
# Runs the whole test suite: unit tests, then integration tests against real `kubeclass up` servers
# driven by the real kubectl and the official Python clients (then the integration tests once more on etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import kubeclass, kubernetes, pytest" 2>/dev/null || bash scripts/install.sh
# what only the tests need: a TCP load balancer in front of several API servers, a headless browser for the
# cluster view (Debian's chromium and its chromedriver), and the browser driver's Python side (selenium)
missing=""
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium chromium-driver"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
fi
"$PY" -c "import selenium" 2>/dev/null || "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
"$PY" -m pytest -q -p no:cacheprovider "$@" tests
if [ $# -eq 0 ]; then
  # the integration suite again with every cluster on etcd (a local member of Debian's etcd-server each)
  KUBECLASS_TEST_STORAGE=etcd "$PY" -m pytest -q -p no:cacheprovider tests/integration
fi
