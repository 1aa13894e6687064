#!/usr/bin/env bash
# Installs kubeclass and everything its tests need on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is not on PATH: install it (these machines ship it at /usr/bin/kubectl)" >&2
  exit 1
fi
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
echo "kubeclass installed: $(command -v kubeclass)"
