"""The ReplicaSet controller (kube-controller-manager's replicaset controller): keeps `spec.replicas` Pods
of a ReplicaSet's template alive. It adopts orphan Pods its selector matches and releases those it no
longer matches; creates Pods in slow-start batches (1, 2, 4, ...: a refused Pod stops the rest, and the
refusal becomes a FailedCreate event and the ReplicaFailure condition); deletes the surplus in upstream's
order; and waits on expectations so a stale cache never makes it create or delete twice."""
from __future__ import annotations

import asyncio
import datetime
import logging

from ..api import podstate
from ..api.selectors import LabelSelector
from ..client import ApiError, Client, now_rfc3339, path_for
from ..httpclient import TransportError
from .expectations import Expectations
from .informers import Informers, by_controller_uid, key_of
from .workqueue import WorkQueue, run_workers

log = logging.getLogger("kubeclass.replicaset")

BURST_REPLICAS = 500   # upstream's burstReplicas: creates or deletes per sync
COMPONENT = "replicaset-controller"


def orphan_namespace(pod: dict) -> list[str]:
    return [] if podstate.controller_ref(pod) else [pod["metadata"].get("namespace", "")]


def pod_from_template(owner: dict, api_version: str, kind: str) -> dict:
    """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and spec, named
    `<owner>-` + five random characters, controlled by the owner."""
    tmpl = (owner.get("spec") or {}).get("template") or {}
    tmd = tmpl.get("metadata") or {}
    md = {"generateName": f"{owner['metadata']['name']}-", "namespace": owner["metadata"]["namespace"],
          "ownerReferences": [podstate.new_controller_ref(owner, api_version, kind)]}
    for f in ("labels", "annotations", "finalizers"):
        if tmd.get(f):
            md[f] = dict(tmd[f]) if isinstance(tmd[f], dict) else list(tmd[f])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tmpl.get("spec") or {}}


class PodControl:
    """Creates and deletes a controller's Pods, with the events upstream's RealPodControl records."""

    def __init__(self, client: Client, component: str):
        self.client, self.component = client, component

    async def create(self, owner: dict, pod: dict) -> dict:
        ns = owner["metadata"]["namespace"]
        try:
            created = await self.client.create(path_for("", "v1", "pods", ns), pod)
        except ApiError as e:
            await self.client.event(owner, "FailedCreate", f"Error creating: {e.body.get('message', e)}", "Warning", self.component)
            raise
        await self.client.event(owner, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", component=self.component)
        return created

    async def delete(self, owner: dict, pod: dict) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                     {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": md["uid"]}})
        except ApiError as e:
            if e.status == 404:
                return
            await self.client.event(owner, "FailedDelete", f"Error deleting: {e.body.get('message', e)}", "Warning", self.component)
            raise
        await self.client.event(owner, "SuccessfulDelete", f"Deleted pod: {md['name']}", component=self.component)


class ReplicaSetController:
    name = "replicaset"
    group, version, plural, kind = "apps", "v1", "replicasets", "ReplicaSet"
    api_version = "apps/v1"

    def __init__(self, client: Client, informers: Informers, workers: int = 5):
        self.client = client
        self.owners = informers.get(self.group, self.version, self.plural)
        self.pods = informers.get("", "v1", "pods")
        self.pods.add_index("controller", by_controller_uid)
        self.pods.add_index("orphans", orphan_namespace)
        self.owners.add_index("uid", lambda o: [o["metadata"]["uid"]])
        self.queue = WorkQueue(self.name)
        self.expectations = Expectations()
        self.pod_control = PodControl(client, COMPONENT if self.kind == "ReplicaSet" else "replication-controller")
        self.workers = workers
        self.owners.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._owner_deleted)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- event handlers (informer callbacks: enqueue only)
    def _enqueue(self, owner: dict) -> None:
        self.queue.add(key_of(owner))

    def _owner_deleted(self, owner: dict) -> None:
        self.expectations.forget(key_of(owner))
        self.queue.add(key_of(owner))

    def _resolve(self, pod: dict, ref: dict | None) -> dict | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        owner = self.owners.get(pod["metadata"]["namespace"], ref.get("name", ""))
        return owner if owner is not None and owner["metadata"]["uid"] == ref.get("uid") else None

    @staticmethod
    def selector_of(owner: dict) -> LabelSelector:
        return LabelSelector.from_object((owner.get("spec") or {}).get("selector") or {})

    def _matching_owners(self, pod: dict) -> list[dict]:
        labels = pod["metadata"].get("labels") or {}
        return [o for o in self.owners.list(pod["metadata"]["namespace"]) if self.selector_of(o).matches(labels)]

    def _pod_added(self, pod: dict) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        owner = self._resolve(pod, podstate.controller_ref(pod))
        if owner is not None:
            self.expectations.creation_observed(key_of(owner))
            self._enqueue(owner)
        elif podstate.controller_ref(pod) is None:
            for o in self._matching_owners(pod):
                self._enqueue(o)

    def _pod_updated(self, old: dict, pod: dict) -> None:
        if old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return
        labels_changed = old["metadata"].get("labels") != pod["metadata"].get("labels")
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, ref = podstate.controller_ref(old), podstate.controller_ref(pod)
        if old_ref != ref and old_ref is not None:
            prev = self._resolve(old, old_ref)
            if prev is not None:
                self._enqueue(prev)
        owner = self._resolve(pod, ref)
        if owner is not None:
            self._enqueue(owner)
            mrs = (owner.get("spec") or {}).get("minReadySeconds") or 0
            if mrs > 0 and not podstate.is_ready(old) and podstate.is_ready(pod):
                self.queue.add_after(key_of(owner), mrs + 0.1)
            return
        if ref is None and (labels_changed or old_ref != ref):
            for o in self._matching_owners(pod):
                self._enqueue(o)

    def _pod_deleted(self, pod: dict) -> None:
        owner = self._resolve(pod, podstate.controller_ref(pod))
        if owner is not None:
            self.expectations.deletion_observed(key_of(owner), key_of(pod))
            self._enqueue(owner)

    # ---- reconcile
    async def run(self) -> None:
        await asyncio.gather(self.owners.synced.wait(), self.pods.synced.wait())
        await run_workers(self.queue, self.sync, self.workers)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        owner = self.owners.get(ns, name)
        if owner is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.selector_of(owner)
        pods = await self._claim(owner, selector)
        err: ApiError | None = None
        diff = len(pods) - _replicas(owner)
        if needs_sync and not owner["metadata"].get("deletionTimestamp"):
            try:
                await self._manage(owner, pods, key)
            except ApiError as e:
                err = e
        await self._update_status(owner, pods, err, diff)
        if err is not None:
            raise err

    async def _claim(self, owner: dict, selector: LabelSelector) -> list[dict]:
        """The owner's active Pods after adopting matching orphans and releasing non-matching ones."""
        ns, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        seen: dict[str, dict] = {}
        for p in self.pods.by_index("controller", uid) + [p for p in self.pods.by_index("orphans", ns)]:
            seen[p["metadata"]["uid"]] = p
        out = []
        for p in seen.values():
            if not podstate.is_active(p):
                continue
            action = podstate.claim(owner, p, selector.matches(p["metadata"].get("labels") or {}))
            path = path_for("", "v1", "pods", ns, p["metadata"]["name"])
            if action == "own":
                out.append(p)
            elif action == "adopt":
                try:
                    out.append(await self.client.patch(path, podstate.adopt_patch(owner, p, self.api_version, self.kind)))
                except ApiError as e:
                    if e.status not in (404, 409, 422):
                        raise
            elif action == "release":
                try:
                    await self.client.patch(path, podstate.release_patch(owner, p))
                except ApiError as e:
                    if e.status not in (404, 409, 422):
                        raise
        return out

    async def _manage(self, owner: dict, pods: list[dict], key: str) -> None:
        diff = len(pods) - _replicas(owner)
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.expectations.expect(key, adds=n)
            created = 0
            for batch in podstate.slow_start_batches(n):
                results = await asyncio.gather(*(self.pod_control.create(owner, pod_from_template(owner, self.api_version, self.kind))
                                                 for _ in range(batch)), return_exceptions=True)
                errs = [r for r in results if isinstance(r, BaseException)]
                created += batch - len(errs)
                if errs:
                    # the failed creates and the batches never tried will not be observed
                    self.expectations.lower(key, adds=n - created)
                    first = errs[0]
                    if isinstance(first, (ApiError, TransportError)):
                        raise first if isinstance(first, ApiError) else ApiError(503, str(first))
                    raise first
        elif diff > 0:
            n = min(diff, BURST_REPLICAS)
            related = self.pods.list(owner["metadata"]["namespace"])
            victims = podstate.deletion_order(pods, related, datetime.datetime.now(datetime.timezone.utc))[:n]
            self.expectations.expect(key, deleting=[key_of(p) for p in victims])
            results = await asyncio.gather(*(self.pod_control.delete(owner, p) for p in victims), return_exceptions=True)
            for p, r in zip(victims, results):
                if isinstance(r, BaseException):
                    self.expectations.deletion_observed(key, key_of(p))
            errs = [r for r in results if isinstance(r, ApiError)]
            if errs:
                raise errs[0]

    def _status(self, owner: dict, pods: list[dict], err: ApiError | None, diff: int) -> dict:
        now = datetime.datetime.now(datetime.timezone.utc)
        tlabels = ((owner.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        mrs = (owner.get("spec") or {}).get("minReadySeconds") or 0
        st = {"replicas": len(pods),
              "fullyLabeledReplicas": sum(1 for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())),
              "readyReplicas": sum(1 for p in pods if podstate.is_ready(p)),
              "availableReplicas": sum(1 for p in pods if podstate.is_available(p, mrs, now)),
              "observedGeneration": owner["metadata"].get("generation", 1)}
        st = {k: v for k, v in st.items() if v or k == "replicas"}   # omitempty, but for replicas
        conds = [c for c in (owner.get("status") or {}).get("conditions") or []]
        failure = next((c for c in conds if c.get("type") == "ReplicaFailure"), None)
        if err is not None and failure is None:
            conds.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(),
                          "reason": "FailedCreate" if diff < 0 else "FailedDelete", "message": err.body.get("message", str(err))})
        elif err is None and failure is not None:
            conds = [c for c in conds if c.get("type") != "ReplicaFailure"]
        if conds:
            st["conditions"] = conds
        return st

    async def _update_status(self, owner: dict, pods: list[dict], err: ApiError | None, diff: int) -> None:
        st = self._status(owner, pods, err, diff)
        cur = owner.get("status") or {}
        if cur != st:
            md = owner["metadata"]
            path = path_for(self.group, self.version, self.plural, md["namespace"], md["name"], "status")
            body = {**owner, "status": st}
            try:
                await self.client.update(path, body)
            except ApiError as e:
                if e.status == 404:
                    return
                if e.status != 409:
                    raise
                fresh = await self.client.get(path_for(self.group, self.version, self.plural, md["namespace"], md["name"]))
                await self.client.update(path, {**fresh, "status": self._status(fresh, pods, err, diff)})
        mrs = (owner.get("spec") or {}).get("minReadySeconds") or 0
        if err is None and mrs > 0 and st.get("readyReplicas", 0) == _replicas(owner) and st.get("availableReplicas", 0) != _replicas(owner):
            self.queue.add_after(key_of(owner), mrs)


def _replicas(owner: dict) -> int:
    r = (owner.get("spec") or {}).get("replicas")
    return 1 if r is None else r
