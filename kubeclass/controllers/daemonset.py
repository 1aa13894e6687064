"""The DaemonSet controller (kube-controller-manager's daemonset controller): one Pod per eligible node.
A node is eligible when the template's nodeSelector / required node affinity select it and its
NoSchedule / NoExecute taints are tolerated (upstream's nodeShouldRunDaemonPod) and, beyond upstream,
when the Pod's RuntimeClass can run there: the class's scheduling (nodeSelector, tolerations) is taken into
account and a node that publishes its runtime handlers must have the class's handler, otherwise the node is
skipped with a FailedPlacement event naming the handler (upstream would create a Pod that never schedules).
Pods are pinned to their node by node affinity on metadata.name and tolerate the node-condition taints, as
upstream. RollingUpdate replaces Pods node by node within maxUnavailable; OnDelete only replaces deleted
Pods. Template history is kept in ControllerRevisions (`kubectl rollout history ds/x`)."""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import podstate, rollout, tolerations, workloads
from ..api.nodeaffinity import required_matches
from ..client import ApiError, Client, path_for
from .expectations import Expectations
from .informers import Informers, by_controller_uid, key_of
from .replicaset import PodControl
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.daemonset")
COMPONENT = "daemonset-controller"
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def daemon_tolerations(spec: dict) -> list[dict]:
    extra = DAEMON_TOLERATIONS + ([NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    return tolerations.merge(spec.get("tolerations") or [], extra)


def should_run(pod_spec: dict, node: dict, runtime_class: dict | None) -> tuple[bool, str]:
    """(eligible, why not) for a daemon Pod of `pod_spec` on `node`; runtime_class is the Pod's class, if any."""
    spec = copy.deepcopy(pod_spec)
    name = node["metadata"]["name"]
    labels = node["metadata"].get("labels") or {}
    tols = daemon_tolerations(spec)
    if runtime_class is not None:
        sched = runtime_class.get("scheduling") or {}
        spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **(sched.get("nodeSelector") or {})}
        tols = tols + (sched.get("tolerations") or [])
        published = (node.get("status") or {}).get("runtimeHandlers")
        handler = runtime_class.get("handler", "")
        if published is not None and handler not in {h.get("name") for h in published}:
            return False, f'node(s) didn\'t have the runtime handler "{handler}"'
    if not required_matches({"spec": spec}, labels, name):
        return False, "node(s) didn't match Pod's node affinity/selector"
    for t in (node.get("spec") or {}).get("taints") or []:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not any(tolerations.tolerates_taint(x, t) for x in tols):
            return False, f"node(s) had untolerated taint {{{t.get('key')}: {t.get('value', '')}}}"
    return True, ""


def pin_to_node(spec: dict, node: str) -> None:
    """The required node affinity that binds a daemon Pod to its node (metadata.name), replacing any other
    matchFields term (util.ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    aff = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    req = aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not req or not req.get("nodeSelectorTerms"):
        aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
        return
    terms = []
    for t in req["nodeSelectorTerms"]:
        t = dict(t)
        t["matchFields"] = [f for f in t.get("matchFields") or [] if f.get("key") != "metadata.name"] + term["matchFields"]
        terms.append(t)
    req["nodeSelectorTerms"] = terms


class DaemonSetController:
    name = "daemonset"

    def __init__(self, client: Client, informers: Informers, workers: int = 2):
        self.client = client
        self.sets = informers.get("apps", "v1", "daemonsets")
        self.pods = informers.get("", "v1", "pods")
        self.nodes = informers.get("", "v1", "nodes")
        self.classes = informers.get("node.k8s.io", "v1", "runtimeclasses")
        self.revisions = informers.get("apps", "v1", "controllerrevisions")
        self.pods.add_index("controller", by_controller_uid)
        self.revisions.add_index("controller", by_controller_uid)
        self.queue = WorkQueue(self.name)
        self.expectations = Expectations()
        self.pod_control = PodControl(client, COMPONENT)
        self.workers = workers
        self._reported: set[tuple[str, str, str]] = set()
        self.sets.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._deleted)
        self.pods.add_handlers(self._pod_added, self._pod_changed, self._pod_deleted)
        self.nodes.add_handlers(self._all, lambda old, new: self._node_changed(old, new), self._all)
        self.classes.add_handlers(self._all, lambda old, new: self._all(new), self._all)

    def _enqueue(self, ds: dict) -> None:
        self.queue.add(key_of(ds))

    def _deleted(self, ds: dict) -> None:
        self.expectations.forget(key_of(ds))

    def _all(self, _obj: dict | None = None) -> None:
        for ds in self.sets.list():
            self._enqueue(ds)

    def _node_changed(self, old: dict, new: dict) -> None:
        if old["metadata"].get("labels") != new["metadata"].get("labels") or \
                (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get("taints") or \
                (old.get("status") or {}).get("runtimeHandlers") != (new.get("status") or {}).get("runtimeHandlers"):
            self._all()

    def _owner(self, p: dict) -> dict | None:
        ref = podstate.controller_ref(p)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        ds = self.sets.get(p["metadata"]["namespace"], ref.get("name", ""))
        return ds if ds is not None and ds["metadata"]["uid"] == ref.get("uid") else None

    def _pod_added(self, p: dict) -> None:
        ds = self._owner(p)
        if ds is not None:
            self.expectations.creation_observed(key_of(ds))
            self._enqueue(ds)

    def _pod_changed(self, old: dict, p: dict) -> None:
        ds = self._owner(p)
        if ds is not None:
            if p["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
                self.expectations.deletion_observed(key_of(ds), key_of(p))
            self._enqueue(ds)

    def _pod_deleted(self, p: dict) -> None:
        ds = self._owner(p)
        if ds is not None:
            self.expectations.deletion_observed(key_of(ds), key_of(p))
            self._enqueue(ds)

    async def run(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in (self.sets, self.pods, self.nodes, self.classes, self.revisions)))
        await run_workers(self.queue, self.sync, self.workers)

    # ---- history
    async def _current_revision(self, ds: dict) -> tuple[str, int]:
        """The ControllerRevision of the current template (created when new): (hash, revision)."""
        tmpl = ds["spec"]["template"]
        h = rollout.template_hash(tmpl, (ds.get("status") or {}).get("collisionCount"))
        mine = self.revisions.by_index("controller", ds["metadata"]["uid"])
        top = max([cr.get("revision", 0) for cr in mine] or [0])
        ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
        for cr in mine:
            if (cr["metadata"].get("labels") or {}).get(HASH_LABEL) == h:
                if cr.get("revision", 0) < top:
                    # an earlier template back in use becomes the newest revision, as upstream
                    try:
                        cr = await self.client.patch(path_for("apps", "v1", "controllerrevisions", ns, cr["metadata"]["name"]),
                                                     {"revision": top + 1}, kind="merge")
                    except ApiError as e:
                        if e.status not in (404, 409):
                            raise
                        raise Requeue() from e
                return h, cr.get("revision", 0)
        rev = top + 1
        cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": f"{name}-{h}", "namespace": ns,
                           "labels": {**((tmpl.get("metadata") or {}).get("labels") or {}), HASH_LABEL: h},
                           "ownerReferences": [podstate.new_controller_ref(ds, "apps/v1", "DaemonSet")]},
              "data": {"spec": {"template": {**tmpl, "$patch": "replace"}}}, "revision": rev}
        try:
            await self.client.create(path_for("apps", "v1", "controllerrevisions", ns), cr)
        except ApiError as e:
            if e.status != 409:
                raise
            raise Requeue() from e   # the informer has not seen it yet
        # older revisions beyond revisionHistoryLimit with no Pods go
        limit = ds["spec"].get("revisionHistoryLimit", 10)
        live = {(p["metadata"].get("labels") or {}).get(HASH_LABEL) for p in self.pods.by_index("controller", ds["metadata"]["uid"])}
        old = sorted([c for c in mine if (c["metadata"].get("labels") or {}).get(HASH_LABEL) not in live | {h}],
                     key=lambda c: c.get("revision", 0))
        for c in old[:max(0, len(old) - limit)]:
            try:
                await self.client.delete(path_for("apps", "v1", "controllerrevisions", ns, c["metadata"]["name"]))
            except ApiError:
                pass
        return h, rev

    # ---- reconcile
    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        ds = self.sets.get(ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        ds = copy.deepcopy(ds)
        spec = ds["spec"]["template"].get("spec") or {}
        rcn = spec.get("runtimeClassName")
        rc = self.classes.get(None, rcn) if rcn else None
        h, _ = await self._current_revision(ds)
        now = datetime.datetime.now(datetime.timezone.utc)
        pods = [p for p in self.pods.by_index("controller", ds["metadata"]["uid"]) if not p["metadata"].get("deletionTimestamp")]
        by_node: dict[str, list[dict]] = {}
        for p in pods:
            by_node.setdefault((p.get("spec") or {}).get("nodeName") or _pinned_node(p) or "", []).append(p)
        create, delete, eligible = [], [], []
        for node in self.nodes.list():
            nn = node["metadata"]["name"]
            ok, why = should_run(spec, node, rc)
            mine = by_node.get(nn, [])
            if ok:
                eligible.append(nn)
                failed = [p for p in mine if (p.get("status") or {}).get("phase") == "Failed"]
                delete += failed
                alive = [p for p in mine if p not in failed]
                if not alive:
                    create.append(nn)
                else:
                    # two daemon Pods of one template on a node: the newer goes (an old and a new one may
                    # share a node while a surge update replaces it)
                    by_hash: dict[str, list[dict]] = {}
                    for p in sorted(alive, key=lambda p: p["metadata"].get("creationTimestamp", "")):
                        by_hash.setdefault((p["metadata"].get("labels") or {}).get(HASH_LABEL, ""), []).append(p)
                    for same in by_hash.values():
                        delete += same[1:]
            else:
                delete += mine
                if rcn and why.startswith("node(s) didn't have the runtime handler") and (key, nn, why) not in self._reported:
                    self._reported.add((key, nn, why))
                    await self.client.event(ds, "FailedPlacement", f'failed to place pod on "{nn}": {why}', "Warning", COMPONENT)
        if self.expectations.satisfied(key):
            surge, victims = self._rolling_plan(ds, h, eligible, by_node, now)
            create += surge
            delete += [v for v in victims if v not in delete]
            self.expectations.expect(key, adds=len(create), deleting=[key_of(p) for p in delete])
            results = await asyncio.gather(*(self.pod_control.create(ds, self._pod(ds, h, nn)) for nn in create),
                                           *(self.pod_control.delete(ds, p) for p in delete), return_exceptions=True)
            for r in results[:len(create)]:
                if isinstance(r, BaseException):
                    self.expectations.lower(key, adds=1)
            for p, r in zip(delete, results[len(create):]):
                if isinstance(r, BaseException):
                    self.expectations.deletion_observed(key, key_of(p))
        await self._update_status(ds, h, eligible, by_node, now)

    def _rolling_plan(self, ds: dict, h: str, eligible: list[str], by_node: dict, now: datetime.datetime) -> tuple[list[str], list[dict]]:
        """RollingUpdate: (nodes that get their new Pod beside the old one, old Pods to delete).
        Without maxSurge: old Pods that are not available go at once, available ones only while fewer than
        maxUnavailable nodes lack an available daemon Pod. With maxSurge: up to maxSurge nodes at a time get
        the new Pod first, and the old one goes once the new one is available."""
        st = ds["spec"].get("updateStrategy") or {}
        if st.get("type", "RollingUpdate") != "RollingUpdate":
            return [], []
        mrs = ds["spec"].get("minReadySeconds") or 0
        ru = st.get("rollingUpdate") or {}
        max_surge = workloads.scaled_value(ru.get("maxSurge", 0), len(eligible), True)
        max_unavailable = workloads.scaled_value(ru.get("maxUnavailable", 1), len(eligible), True)
        victims: list[dict] = []
        if max_surge == 0:
            unavailable, old_available = 0, []
            for nn in eligible:
                mine = by_node.get(nn, [])
                if not any(podstate.is_available(p, mrs, now) for p in mine):
                    unavailable += 1
                for p in mine:
                    if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == h:
                        continue
                    (old_available if podstate.is_available(p, mrs, now) else victims).append(p)
            return [], victims + old_available[:max(0, max_unavailable - unavailable)]
        surging, candidates = 0, []
        for nn in eligible:
            mine = by_node.get(nn, [])
            new = [p for p in mine if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == h]
            old = [p for p in mine if p not in new]
            if not old:
                continue
            if new:
                if any(podstate.is_available(p, mrs, now) for p in new):
                    victims += old
                else:
                    surging += 1
            elif not any(podstate.is_available(p, mrs, now) for p in old):
                victims += old   # nothing available to protect here: replaced at once
            else:
                candidates.append(nn)
        return candidates[:max(0, max_surge - surging)], victims

    def _pod(self, ds: dict, h: str, node: str) -> dict:
        tmpl = copy.deepcopy(ds["spec"]["template"])
        md = tmpl.get("metadata") or {}
        spec = tmpl.get("spec") or {}
        pin_to_node(spec, node)
        spec["tolerations"] = daemon_tolerations(spec)
        labels = {**(md.get("labels") or {}), HASH_LABEL: h, GENERATION_LABEL: str(ds["metadata"].get("generation", 1))}
        p = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"generateName": f"{ds['metadata']['name']}-", "namespace": ds["metadata"]["namespace"], "labels": labels,
                          "ownerReferences": [podstate.new_controller_ref(ds, "apps/v1", "DaemonSet")]},
             "spec": spec}
        if md.get("annotations"):
            p["metadata"]["annotations"] = dict(md["annotations"])
        return p

    async def _update_status(self, ds: dict, h: str, eligible: list[str], by_node: dict, now: datetime.datetime) -> None:
        mrs = ds["spec"].get("minReadySeconds") or 0
        current = sum(1 for nn in eligible if by_node.get(nn))
        mis = sum(1 for nn, ps in by_node.items() if nn not in eligible and ps)
        ready = sum(1 for nn in eligible for p in by_node.get(nn, [])[:1] if podstate.is_ready(p))
        available = sum(1 for nn in eligible for p in by_node.get(nn, [])[:1] if podstate.is_available(p, mrs, now))
        updated = sum(1 for nn in eligible if any((p["metadata"].get("labels") or {}).get(HASH_LABEL) == h for p in by_node.get(nn, [])))
        st = {"currentNumberScheduled": current, "numberMisscheduled": mis, "desiredNumberScheduled": len(eligible),
              "numberReady": ready, "observedGeneration": ds["metadata"].get("generation", 1),
              "updatedNumberScheduled": updated, "numberAvailable": available,
              "numberUnavailable": len(eligible) - available}
        st = {k: v for k, v in st.items() if v or k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady")}
        old = ds.get("status") or {}
        if old.get("collisionCount") is not None:
            st["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            st["conditions"] = old["conditions"]
        if st != old:
            md = ds["metadata"]
            try:
                await self.client.update(path_for("apps", "v1", "daemonsets", md["namespace"], md["name"], "status"), {**ds, "status": st})
            except ApiError as e:
                if e.status == 409:
                    raise Requeue() from e
                if e.status != 404:
                    raise
        if mrs and ready != available:
            self.queue.add_after(key_of(ds), mrs)


def _pinned_node(p: dict) -> str | None:
    req = ((((p.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for t in req.get("nodeSelectorTerms") or []:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None
