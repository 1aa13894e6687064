"""The Node object a node agent registers and keeps current, as kubelet 1.32 builds it: capacity and
allocatable from the host (allocatable = capacity less the default hard eviction thresholds:
memory.available<100Mi, nodefs.available<10%), the well-known labels, taints, the four conditions with
kubelet's reasons and messages, nodeInfo, addresses, the daemon endpoint and status.runtimeHandlers
(KEP-3857: one entry per handler, "" for the default)."""
from __future__ import annotations

import os
import platform
import re
import shutil

from .handlers import HandlerTable

KUBELET_VERSION = "v1.32.0-kubeclass"
EVICTION_MEMORY_KI = 100 * 1024         # memory.available<100Mi
EVICTION_NODEFS_FRACTION = 0.10          # nodefs.available<10%
MAX_PODS = 110

CONDITIONS = [  # type, status when healthy, reason, message (kubelet's texts)
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
]

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def host_facts(data_dir: str) -> dict:
    """What the host has: cores, memory (Ki), disk under data_dir (bytes), kernel, OS image, ids."""
    mem_ki = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_ki = int(line.split()[1])
    os.makedirs(data_dir, exist_ok=True)
    disk = shutil.disk_usage(data_dir).total
    pretty = ""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip('"')
    return {"cpu": os.cpu_count() or 1, "memory_ki": mem_ki, "disk": disk, "kernel": platform.release(),
            "os_image": pretty or "Linux", "arch": _ARCH.get(platform.machine(), platform.machine()),
            "machine_id": _read("/etc/machine-id"), "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "system_uuid": _read("/sys/class/dmi/id/product_uuid")}


def resources(facts: dict, max_pods: int = MAX_PODS) -> tuple[dict, dict]:
    cap = {"cpu": str(facts["cpu"]), "ephemeral-storage": f"{facts['disk'] // 1024}Ki", "hugepages-1Gi": "0",
           "hugepages-2Mi": "0", "memory": f"{facts['memory_ki']}Ki", "pods": str(max_pods)}
    alloc = dict(cap)
    alloc["memory"] = f"{max(facts['memory_ki'] - EVICTION_MEMORY_KI, 0)}Ki"
    alloc["ephemeral-storage"] = str(int(facts["disk"] * (1 - EVICTION_NODEFS_FRACTION)))
    return cap, alloc


def runtime_handlers(table: HandlerTable, rro: dict[str, bool] | None = None) -> list[dict]:
    """status.runtimeHandlers: every handler this node can run, then "" (the default handler)."""
    rro = rro or {}
    out = []
    for h in sorted(table.available(), key=lambda h: h.name):
        out.append({"name": h.name, "features": {"recursiveReadOnlyMounts": rro.get(h.name, False), "userNamespaces": False}})
    d = table.handlers.get(table.default)
    if d is not None and d.available:
        out.append({"name": "", "features": {"recursiveReadOnlyMounts": rro.get(d.name, False), "userNamespaces": False}})
    return out


def parse_labels(spec: str) -> dict[str, str]:
    """--labels k=v,k2=v2"""
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"invalid label {item!r}: want key=value")
        out[k] = v
    return out


_TAINT = re.compile(r"^([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$")


def parse_taints(spec: str) -> list[dict]:
    """--register-with-taints k=v:Effect,k2:Effect"""
    out = []
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        m = _TAINT.match(item)
        if not m:
            raise ValueError(f"invalid taint {item!r}: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
        t = {"key": m.group(1), "effect": m.group(3)}
        if m.group(2):
            t["value"] = m.group(2)
        out.append(t)
    return out


UNAVAILABLE_ANNOTATION = "node.kubeclass.io/unavailable-runtime-handlers"


def unavailable_handlers(table: HandlerTable) -> str:
    """The configured handlers this node cannot run, with why (JSON: handler -> reason), for `kubeclass check`,
    the cluster view and users: status.runtimeHandlers lists only the ones it can."""
    import json
    avail = {h.name for h in table.available()}
    return json.dumps({n: h.reason or "unavailable" for n, h in sorted(table.handlers.items()) if n not in avail}, sort_keys=True)


def node_object(name: str, facts: dict, table: HandlerTable, labels: dict, taints: list, address: str, port: int,
                runtime_version: str, now: str, rro: dict[str, bool] | None = None) -> dict:
    cap, alloc = resources(facts)
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"beta.kubernetes.io/arch": facts["arch"], "beta.kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": facts["arch"], "kubernetes.io/hostname": name,
                                                  "kubernetes.io/os": "linux", **labels},
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                         UNAVAILABLE_ANNOTATION: unavailable_handlers(table)}},
            "spec": {},
            "status": status(name, facts, table, address, port, runtime_version, now, rro)}
    if taints:
        node["spec"]["taints"] = taints
    node["status"]["capacity"], node["status"]["allocatable"] = cap, alloc
    return node


def status(name: str, facts: dict, table: HandlerTable, address: str, port: int, runtime_version: str, now: str,
           rro: dict[str, bool] | None = None, transitions: dict[str, str] | None = None) -> dict:
    cap, alloc = resources(facts)
    transitions = transitions or {}
    return {
        "capacity": cap, "allocatable": alloc,
        "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                        "lastTransitionTime": transitions.get(t, now)} for t, s, r, m in CONDITIONS],
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": facts["machine_id"], "systemUUID": facts["system_uuid"], "bootID": facts["boot_id"],
                     "kernelVersion": facts["kernel"], "osImage": facts["os_image"],
                     "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": facts["arch"]},
        "runtimeHandlers": runtime_handlers(table, rro),
    }
