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
# the gVisor pod sandbox's pause process), docker-registry and skopeo (the registry pull path, tested for real); QEMU for VM Pods
# (the Kata handlers) and gcc + libc6-dev to build their static guest agent; the CNI plugins (bridge, host-local,
# loopback, portmap) with iptables (their NAT rules) and iproute2 (`ip netns`) for Pod networking
APT_PKGS="runc crun runsc conmon busybox-static docker-registry skopeo qemu-system-x86 gcc libc6-dev containernetworking-plugins iptables iproute2 util-linux nftables etcd-server"
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
# The guest kernel of VM Pods: Debian's linux-image, extracted (never installed as the host's kernel) into
# /var/lib/kubeclass/guest with the modules the guest loads, and the initramfs with kubeclass's guest agent
GUEST_DIR=${KUBECLASS_GUEST_DIR:-/var/lib/kubeclass/guest}
# (again when a module the guest now loads is missing: virtio_net since VM Pods have the Pod's network)
if { [ ! -f "$GUEST_DIR/current/vmlinux" ] || [ ! -f "$GUEST_DIR/current/modules/virtio_net.ko" ]; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$kpkg" ]; then apt-get update -qq; kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); fi
  (cd "$tmp" && apt-get download -qq "$kpkg" 2>/dev/null) && dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x" \
    && "$PY" -m kubeclass.node.vm.guestimage install --deb-root "$tmp/x" --dest "$GUEST_DIR" \
    || echo "warning: no guest kernel for VM Pods (the kata handlers stay unavailable)" >&2
  rm -rf "$tmp"
fi
echo "kubeclass installed: $(command -v kubeclass)"
