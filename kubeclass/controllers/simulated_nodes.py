"""Simulated nodes, by KWOK's convention: Node objects annotated `kwok.x-k8s.io/node: fake` are kept Ready
by this controller, and the Pods bound to them go Running without any container (and are confirmed
deleted when deleted), so the real scheduler can be exercised against thousands of nodes on one machine.
`kubeclass up --simulated-nodes N` creates N of them from a template (labels, taints, capacity,
runtimeHandlers)."""
from __future__ import annotations

import asyncio
import copy
import logging

from ..client import ApiError, Client, now_rfc3339, path_for
from ..httpclient import TransportError

log = logging.getLogger("kubeclass.simulator")

ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_TEMPLATE = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"annotations": {ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                 "labels": {"type": "kwok", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
    "spec": {"taints": [{"key": ANNOTATION, "value": "fake", "effect": "NoSchedule"}]},
    "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
               "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
               "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.32.0-kwok",
                            "containerRuntimeVersion": "kwok", "osImage": "", "kernelVersion": "", "kubeProxyVersion": "",
                            "machineID": "", "systemUUID": "", "bootID": ""}},
}
READY = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
         ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
         ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
         ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]


def is_fake(node: dict) -> bool:
    return ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION) == "fake"


def node_from_template(template: dict | None, name: str, index: int) -> dict:
    n = copy.deepcopy(template or DEFAULT_TEMPLATE)
    md = n.setdefault("metadata", {})
    md["name"] = name
    md.setdefault("annotations", {})[ANNOTATION] = "fake"
    md.setdefault("labels", {})["kubernetes.io/hostname"] = name
    n.setdefault("status", {}).setdefault("addresses", [{"type": "InternalIP", "address": f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"}])
    return n


def ready_status(node: dict, now: str) -> dict:
    st = {"conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                          "lastTransitionTime": now} for t, s, r, m in READY], "phase": "Running"}
    status = node.get("status") or {}
    if not status.get("addresses"):
        st["addresses"] = [{"type": "InternalIP", "address": "10.0.0.1"}]
    return st


class Simulator:
    def __init__(self, client: Client, concurrency: int = 32):
        self.client = client
        self.fake: dict[str, dict] = {}
        self.sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._seen_pods: set[str] = set()
        self._completed: set[str] = set()

    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _call(self, coro) -> None:
        async with self.sem:
            try:
                await coro
            except (ApiError, TransportError) as e:
                if not isinstance(e, ApiError) or e.status not in (404, 409):
                    log.warning("simulator: %s", e)

    # ---- nodes
    def on_node(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            for n in obj.get("items", []):
                self.on_node("ADDED", n)
            return
        name = obj["metadata"]["name"]
        if typ == "DELETED" or not is_fake(obj):
            self.fake.pop(name, None)
            return
        self.fake[name] = obj
        conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") != "True":
            self._spawn(self._call(self.client.patch(path_for("", "v1", "nodes", None, name, "status"),
                                                     {"status": ready_status(obj, now_rfc3339())}, kind="merge")))

    # ---- pods
    def on_pod(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            for p in obj.get("items", []):
                self.on_pod("ADDED", p)
            return
        md, spec = obj["metadata"], obj.get("spec") or {}
        node = self.fake.get(spec.get("nodeName") or "")
        if node is None or typ == "DELETED":
            self._seen_pods.discard(md.get("uid", ""))
            self._completed.discard(md.get("uid", ""))
            return
        if md.get("deletionTimestamp"):
            self._spawn(self._call(self.client.delete(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                                      {"gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}})))
            return
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Running" and _job_pod(obj) and md["uid"] not in self._completed:
            # KWOK's default pod-complete stage: a Job's Pods succeed once running
            self._completed.add(md["uid"])
            self._spawn(self._call(self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"], "status"),
                                                     {"status": completed_status(obj)}, kind="merge")))
            return
        if phase in ("Running", "Succeeded", "Failed") or md["uid"] in self._seen_pods:
            return
        self._seen_pods.add(md["uid"])
        self._spawn(self._call(self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"], "status"),
                                                 {"status": running_status(obj, node)}, kind="merge")))

    async def run(self) -> None:
        await asyncio.gather(self.client.informer(path_for("", "v1", "nodes"), self.on_node),
                             self.client.informer(path_for("", "v1", "pods"), self.on_pod))


def running_status(pod: dict, node: dict) -> dict:
    now = now_rfc3339()
    addrs = (node.get("status") or {}).get("addresses") or [{"address": "10.0.0.1"}]
    host_ip = addrs[0]["address"]
    spec = pod.get("spec") or {}
    conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
    old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    if "PodScheduled" in old:
        conds.append(old["PodScheduled"])
    pod_ip = host_ip if spec.get("hostNetwork") else fake_pod_ip(pod["metadata"].get("uid", ""))
    return {"phase": "Running", "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now,
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                                   "restartCount": 0, "started": True, "containerID": f"kwok://{c['name']}",
                                   "state": {"running": {"startedAt": now}}, "lastState": {}}
                                  for c in spec.get("containers") or []],
            **({"qosClass": pod["status"]["qosClass"]} if (pod.get("status") or {}).get("qosClass") else {})}


def _job_pod(pod: dict) -> bool:
    return any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences") or [])


def completed_status(pod: dict) -> dict:
    now = now_rfc3339()
    conds = [{"type": t, "status": "False" if t in ("Ready", "ContainersReady", "PodReadyToStartContainers") else "True",
              "lastProbeTime": None, "lastTransitionTime": now,
              **({"reason": "PodCompleted"} if t != "PodReadyToStartContainers" else {})}
             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
    old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    if "PodScheduled" in old:
        conds.append(old["PodScheduled"])
    started = ((pod.get("status") or {}).get("startTime")) or now
    return {"phase": "Succeeded", "conditions": conds,
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                   "restartCount": 0, "started": False, "containerID": f"kwok://{c['name']}",
                                   "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                                            "finishedAt": now, "containerID": f"kwok://{c['name']}"}},
                                   "lastState": {}}
                                  for c in (pod.get("spec") or {}).get("containers") or []]}


def fake_pod_ip(uid: str) -> str:
    """A stable address in 10.244.0.0/16 for a simulated Pod."""
    h = int(uid.replace("-", "")[:8] or "0", 16)
    return f"10.244.{(h >> 8) & 255}.{max(h & 255, 1)}"


async def create_nodes(client: Client, count: int, template: dict | None = None, prefix: str = "kwok-node-") -> None:
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            try:
                await client.create(path_for("", "v1", "nodes"), node_from_template(template, f"{prefix}{i}", i))
            except ApiError as e:
                if e.status != 409:
                    raise
    await asyncio.gather(*(one(i) for i in range(count)))
