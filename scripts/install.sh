#!/usr/bin/env bash
# Installs kubeclass and everything its tests need on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is not on PATH: install it (these machines ship it at /usr/bin/kubectl)" >&2
  exit 1
fi
# OCI runtimes, conmon (the container monitor) and test tools from Debian: runc, crun, gVisor's runsc, a static busybox (test images and
# the gVisor pod sandbox's pause process), docker-registry and skopeo (the registry pull path, tested for real)
APT_PKGS="runc crun runsc conmon busybox-static docker-registry skopeo"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "warning: missing packages:$missing (install them as root: apt-get install$missing)" >&2
  fi
fi
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
echo "kubeclass installed: $(command -v kubeclass)"
