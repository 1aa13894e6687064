"""The Deployment controller (kube-controller-manager's deployment controller): owns ReplicaSets named
`<deployment>-<pod-template-hash>`, rolls a new template out with RollingUpdate (maxSurge /
maxUnavailable) or Recreate, scales proportionally when replicas change mid-rollout, keeps
revisionHistoryLimit old ReplicaSets, and reports status with the Available / Progressing /
ReplicaFailure conditions. The decisions are in kubeclass/api/rollout.py; this file reads the informer
caches and writes through the API. `kubectl rollout undo` is client-side, as upstream (it copies an old
ReplicaSet's template back into the Deployment)."""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import podstate, rollout
from ..api.selectors import LabelSelector
from ..client import ApiError, Client, now_rfc3339, path_for
from .informers import Informers, by_controller_uid, key_of
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.deployment")

COMPONENT = "deployment-controller"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class DeploymentController:
    name = "deployment"

    def __init__(self, client: Client, informers: Informers, workers: int = 5):
        self.client = client
        self.deployments = informers.get("apps", "v1", "deployments")
        self.replicasets = informers.get("apps", "v1", "replicasets")
        self.pods = informers.get("", "v1", "pods")
        self.replicasets.add_index("controller", by_controller_uid)
        self.replicasets.add_index("orphans", lambda rs: [] if podstate.controller_ref(rs) else [rs["metadata"]["namespace"]])
        self.pods.add_index("controller", by_controller_uid)
        self.queue = WorkQueue(self.name)
        self.workers = workers
        self.deployments.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._enqueue)
        self.replicasets.add_handlers(self._rs_changed, lambda old, new: self._rs_updated(old, new), self._rs_changed)
        self.pods.add_handlers(on_delete=self._pod_deleted)

    # ---- event handlers
    def _enqueue(self, d: dict) -> None:
        self.queue.add(key_of(d))

    def _owner_of(self, rs: dict) -> dict | None:
        ref = podstate.controller_ref(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.get(rs["metadata"]["namespace"], ref.get("name", ""))
        return d if d is not None and d["metadata"]["uid"] == ref.get("uid") else None

    def _rs_changed(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self._enqueue(d)
        elif podstate.controller_ref(rs) is None:
            labels = rs["metadata"].get("labels") or {}
            for d in self.deployments.list(rs["metadata"]["namespace"]):
                if LabelSelector.from_object((d.get("spec") or {}).get("selector") or {}).matches(labels):
                    self._enqueue(d)

    def _rs_updated(self, old: dict, rs: dict) -> None:
        if old["metadata"].get("resourceVersion") == rs["metadata"].get("resourceVersion"):
            return
        prev = self._owner_of(old)
        if prev is not None and prev is not self._owner_of(rs):
            self._enqueue(prev)
        self._rs_changed(rs)

    def _pod_deleted(self, pod: dict) -> None:
        # Recreate waits for every old Pod to be gone
        ref = podstate.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.get(pod["metadata"]["namespace"], ref.get("name", ""))
        d = self._owner_of(rs) if rs is not None else None
        if d is not None and (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            self._enqueue(d)

    # ---- reconcile
    async def run(self) -> None:
        await asyncio.gather(self.deployments.synced.wait(), self.replicasets.synced.wait(), self.pods.synced.wait())
        await run_workers(self.queue, self.sync, self.workers)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        d = self.deployments.get(ns, name)
        if d is None:
            return
        d = copy.deepcopy(d)
        if not ((d.get("spec") or {}).get("selector") or {}):
            await self.client.event(d, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.",
                                    "Warning", COMPONENT)
            return
        rs_list = await self._claim(d)
        if d["metadata"].get("deletionTimestamp"):
            await self._sync_status_only(d, rs_list)
            return
        await self._check_paused(d)
        if d["spec"].get("paused"):
            await self._sync_scale(d, rs_list)
            return
        if rollout.is_scaling_event(d, rs_list):
            await self._sync_scale(d, rs_list)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._recreate(d, rs_list)
        else:
            await self._rolling(d, rs_list)

    async def _claim(self, d: dict) -> list[dict]:
        ns, uid = d["metadata"]["namespace"], d["metadata"]["uid"]
        sel = LabelSelector.from_object(d["spec"].get("selector") or {})
        out: dict[str, dict] = {}
        for rs in self.replicasets.by_index("controller", uid) + self.replicasets.by_index("orphans", ns):
            action = podstate.claim(d, rs, sel.matches(rs["metadata"].get("labels") or {}))
            path = path_for("apps", "v1", "replicasets", ns, rs["metadata"]["name"])
            if action == "own":
                out[rs["metadata"]["uid"]] = rs
            elif action == "adopt":
                try:
                    rs = await self.client.patch(path, podstate.adopt_patch(d, rs, "apps/v1", "Deployment"))
                    out[rs["metadata"]["uid"]] = rs
                except ApiError as e:
                    if e.status not in (404, 409, 422):
                        raise
            elif action == "release":
                try:
                    await self.client.patch(path, podstate.release_patch(d, rs))
                except ApiError as e:
                    if e.status not in (404, 409, 422):
                        raise
        return list(out.values())

    # ---- writes
    async def _update_rs(self, rs: dict) -> dict:
        md = rs["metadata"]
        try:
            return await self.client.update(path_for("apps", "v1", "replicasets", md["namespace"], md["name"]), rs)
        except ApiError as e:
            if e.status == 409:
                raise Requeue() from e   # the cache was behind: look again when it catches up
            raise

    async def _scale_rs(self, d: dict, rs: dict, size: int) -> tuple[bool, dict]:
        """scaleReplicaSetAndRecordEvent: new size and replicas annotations in one update, and the
        ScalingReplicaSet event."""
        old = rollout.replicas(rs)
        desired, max_repl = rollout.replicas(d), rollout.replicas(d) + rollout.max_surge(d)
        if old == size and not rollout.replicas_annotations_need_update(rs, desired, max_repl):
            return False, rs
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = size
        rollout.set_replicas_annotations(new, desired, max_repl)
        new = await self._update_rs(new)
        if old != size:
            op = "up" if old < size else "down"
            await self.client.event(d, "ScalingReplicaSet", f"Scaled {op} replica set {rs['metadata']['name']} from {old} to {size}",
                                    component=COMPONENT)
        return old != size, new

    async def _update_status(self, d: dict, status: dict) -> dict:
        """Write the status; `d` takes the stored status and resourceVersion (later writes of this sync build on it)."""
        md = d["metadata"]
        body = {**d, "status": status}
        try:
            res = await self.client.update(path_for("apps", "v1", "deployments", md["namespace"], md["name"], "status"), body)
        except ApiError as e:
            if e.status == 409:
                raise Requeue() from e
            raise
        d["status"] = res.get("status") or {}
        md["resourceVersion"] = res["metadata"]["resourceVersion"]
        return res

    async def _set_revision(self, d: dict, revision: str) -> None:
        """The Deployment carries its newest revision as an annotation (kubectl rollout history, describe)."""
        if (d["metadata"].get("annotations") or {}).get(rollout.REVISION) == revision:
            return
        md = d["metadata"]
        res = await self.client.patch(path_for("apps", "v1", "deployments", md["namespace"], md["name"]),
                                      {"metadata": {"annotations": {rollout.REVISION: revision}, "resourceVersion": md["resourceVersion"]}},
                                      kind="merge")
        md["annotations"] = res["metadata"].get("annotations")
        md["resourceVersion"] = res["metadata"]["resourceVersion"]

    # ---- the new ReplicaSet
    async def _new_and_old(self, d: dict, rs_list: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created when asked and missing, its
        revision raised when it is an old one coming back), and the old ones."""
        existing = rollout.find_new_rs(d, rs_list)
        old = rollout.find_old_rs(existing, rs_list)
        new_revision = rollout.max_revision(old) + 1
        now = now_rfc3339()
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = rollout.new_rs_annotations(d, rs, new_revision, True)
            mrs = d["spec"].get("minReadySeconds", 0)
            if changed or (rs["spec"].get("minReadySeconds") or 0) != mrs:
                rs["spec"]["minReadySeconds"] = mrs
                return await self._update_rs(rs), old
            await self._set_revision(d, rs["metadata"]["annotations"].get(rollout.REVISION, ""))
            st = copy.deepcopy(d.get("status") or {})
            if rollout.has_progress_deadline(d) and rollout.condition(st, "Progressing") is None:
                rollout.set_condition(st, "Progressing", "True", rollout.FOUND_NEW_RS, f'Found new replica set "{rs["metadata"]["name"]}"', now)
                await self._update_status(d, st)
            return existing, old
        if not create:
            return None, old
        size = rollout.new_rs_replicas(d, old, {"spec": {"replicas": 0}})
        rs = rollout.build_new_rs(d, new_revision, size)
        ns = d["metadata"]["namespace"]
        try:
            created = await self.client.create(path_for("apps", "v1", "replicasets", ns), rs)
        except ApiError as e:
            if e.status != 409:
                raise
            # a ReplicaSet of that name exists: ours with an equal template (the cache was behind), or a hash
            # collision: count it, so the next hash differs
            try:
                other = await self.client.get(path_for("apps", "v1", "replicasets", ns, rs["metadata"]["name"]))
            except ApiError:
                raise Requeue() from e
            ref = podstate.controller_ref(other)
            if ref and ref.get("uid") == d["metadata"]["uid"] and rollout.equal_ignore_hash(other["spec"]["template"], d["spec"]["template"]):
                return other, old
            st = copy.deepcopy(d.get("status") or {})
            st["collisionCount"] = (st.get("collisionCount") or 0) + 1
            await self._update_status(d, st)
            raise Requeue() from e
        if size > 0:
            await self.client.event(d, "ScalingReplicaSet", f"Scaled up replica set {created['metadata']['name']} from 0 to {size}",
                                    component=COMPONENT)
        await self._set_revision(d, str(new_revision))
        if rollout.has_progress_deadline(d):
            st = copy.deepcopy(d.get("status") or {})
            rollout.set_condition(st, "Progressing", "True", rollout.NEW_RS_CREATED, f'Created new replica set "{created["metadata"]["name"]}"', now)
            await self._update_status(d, st)
        return created, old

    # ---- strategies
    async def _rolling(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._new_and_old(d, rs_list, True)
        all_rs = old + ([new_rs] if new_rs else [])
        # reconcileNewReplicaSet
        if new_rs is not None:
            want = rollout.replicas(d) if rollout.replicas(new_rs) > rollout.replicas(d) else rollout.new_rs_replicas(d, all_rs, new_rs)
            scaled, new_rs = await self._scale_rs(d, new_rs, want)
            all_rs = old + [new_rs]
            if scaled:
                await self._sync_rollout_status(d, all_rs, new_rs)
                return
        # reconcileOldReplicaSets
        if sum(rollout.replicas(rs) for rs in old) > 0:
            budget = rollout.old_scale_down_budget(d, all_rs, new_rs)
            if budget > 0:
                sizes = rollout.cleanup_unhealthy(old, budget)
                old = await self._apply_sizes(d, old, sizes)
                all_rs = old + ([new_rs] if new_rs else [])
                more = rollout.scale_down_old_for_rolling(d, all_rs, old)
                old = await self._apply_sizes(d, old, more)
                all_rs = old + ([new_rs] if new_rs else [])
                if sizes or more:
                    await self._sync_rollout_status(d, all_rs, new_rs)
                    return
        if rollout.complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, all_rs, new_rs)

    async def _recreate(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._new_and_old(d, rs_list, False)
        scaled = False
        new_old = []
        for rs in old:
            if rollout.replicas(rs) != 0:
                s, rs = await self._scale_rs(d, rs, 0)
                scaled = scaled or s
            new_old.append(rs)
        old = new_old
        all_rs = old + ([new_rs] if new_rs else [])
        if scaled:
            await self._sync_rollout_status(d, all_rs, new_rs)
            return
        # wait until no old Pod runs (oldPodsRunning)
        for rs in old:
            if rollout.status_of(rs, "replicas") > 0:
                await self._sync_rollout_status(d, all_rs, new_rs)
                return
            for p in self.pods.by_index("controller", rs["metadata"]["uid"]):
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    await self._sync_rollout_status(d, all_rs, new_rs)
                    return
        if new_rs is None:
            new_rs, old = await self._new_and_old(d, rs_list, True)
        _, new_rs = await self._scale_rs(d, new_rs, rollout.replicas(d))
        all_rs = old + [new_rs]
        if rollout.complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, all_rs, new_rs)

    async def _apply_sizes(self, d: dict, rs_list: list[dict], sizes: dict[str, int]) -> list[dict]:
        out = []
        for rs in rs_list:
            size = sizes.get(rs["metadata"]["name"])
            if size is not None and size != rollout.replicas(rs):
                _, rs = await self._scale_rs(d, rs, size)
            out.append(rs)
        return out

    async def _sync_scale(self, d: dict, rs_list: list[dict]) -> None:
        """sync: a scaling event or a paused Deployment: resize without rolling, then status."""
        new_rs, old = await self._new_and_old(d, rs_list, False)
        target = rollout.find_active_or_latest(new_rs, old)
        if target is not None:
            if rollout.replicas(target) != rollout.replicas(d) or rollout.replicas_annotations_need_update(
                    target, rollout.replicas(d), rollout.replicas(d) + rollout.max_surge(d)):
                _, updated = await self._scale_rs(d, target, rollout.replicas(d))
                new_rs, old = _replace(new_rs, old, updated)
        elif rollout.is_saturated(d, new_rs):
            old = await self._apply_sizes(d, old, {rs["metadata"]["name"]: 0 for rs in rollout.active(old)})
        elif rollout.is_rolling(d):
            sizes = rollout.proportional_sizes(d, new_rs, old) or {}
            everything = await self._apply_sizes(d, old + ([new_rs] if new_rs else []), sizes)
            new_rs = everything[-1] if new_rs else None
            old = everything[:-1] if new_rs else everything
        if d["spec"].get("paused"):
            await self._cleanup(d, old)
        all_rs = old + ([new_rs] if new_rs else [])
        st = rollout.calculate_status(d, all_rs, new_rs, now_rfc3339())
        if st != (d.get("status") or {}):
            await self._update_status(d, st)

    async def _sync_status_only(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._new_and_old(d, rs_list, False)
        all_rs = old + ([new_rs] if new_rs else [])
        st = rollout.calculate_status(d, all_rs, new_rs, now_rfc3339())
        if st != (d.get("status") or {}):
            await self._update_status(d, st)

    async def _check_paused(self, d: dict) -> None:
        """checkPausedConditions: Progressing Unknown DeploymentPaused / DeploymentResumed."""
        if not rollout.has_progress_deadline(d):
            return
        st = copy.deepcopy(d.get("status") or {})
        cond = rollout.condition(st, "Progressing")
        if cond is not None and cond.get("reason") == rollout.TIMED_OUT:
            return
        paused = d["spec"].get("paused")
        was = cond is not None and cond.get("reason") == rollout.PAUSED
        now = now_rfc3339()
        if paused and not was:
            rollout.set_condition(st, "Progressing", "Unknown", rollout.PAUSED, "Deployment is paused", now)
        elif not paused and was:
            rollout.set_condition(st, "Progressing", "Unknown", rollout.RESUMED, "Deployment is resumed", now)
        else:
            return
        await self._update_status(d, st)

    async def _cleanup(self, d: dict, old: list[dict]) -> None:
        for rs in rollout.cleanup_candidates(d, old):
            md = rs["metadata"]
            try:
                await self.client.delete(path_for("apps", "v1", "replicasets", md["namespace"], md["name"]),
                                         {"preconditions": {"uid": md["uid"]}, "propagationPolicy": "Background"})
            except ApiError as e:
                if e.status not in (404, 409):
                    raise

    async def _sync_rollout_status(self, d: dict, all_rs: list[dict], new_rs: dict | None) -> None:
        now = _now()
        st = rollout.rollout_status(d, all_rs, new_rs, now, now_rfc3339())
        if st == (d.get("status") or {}):
            after = rollout.requeue_after(d, st, now)
            if after is not None:
                self.queue.add_after(key_of(d), after)
            return
        await self._update_status(d, st)


def _replace(new_rs: dict | None, old: list[dict], updated: dict) -> tuple[dict | None, list[dict]]:
    uid = updated["metadata"]["uid"]
    if new_rs is not None and new_rs["metadata"]["uid"] == uid:
        return updated, old
    return new_rs, [updated if rs["metadata"]["uid"] == uid else rs for rs in old]
