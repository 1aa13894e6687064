"""The Job controller (kube-controller-manager's job controller): runs a Job's Pods to `completions`
with at most `parallelism` at once, NonIndexed or Indexed (`batch.kubernetes.io/job-completion-index`,
JOB_COMPLETION_INDEX, hostname `<job>-<index>`); counts finished Pods through the
`batch.kubernetes.io/job-tracking` finalizer and `status.uncountedTerminatedPods`, as upstream, so a Pod
removed early is still counted; replaces failed Pods after upstream's back-off (10 s doubling, at most 6
minutes); fails the Job past `backoffLimit` or `activeDeadlineSeconds` (FailureTarget, then Failed once its
Pods are gone), completes it (SuccessCriteriaMet, then Complete), suspends it. Decisions in api/jobs.py."""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import jobs, podstate
from ..api.meta import parse_time
from ..client import ApiError, Client, now_rfc3339, path_for
from .expectations import Expectations
from .informers import Informers, by_controller_uid, key_of
from .replicaset import PodControl
from .workqueue import WorkQueue, run_workers

log = logging.getLogger("kubeclass.job")
COMPONENT = "job-controller"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _terminal(p: dict) -> str | None:
    ph = (p.get("status") or {}).get("phase")
    return ph if ph in ("Succeeded", "Failed") else None


class JobController:
    name = "job"

    def __init__(self, client: Client, informers: Informers, workers: int = 5):
        self.client = client
        self.jobs = informers.get("batch", "v1", "jobs")
        self.pods = informers.get("", "v1", "pods")
        self.pods.add_index("controller", by_controller_uid)
        self.queue = WorkQueue(self.name)
        self.expectations = Expectations()
        self.pod_control = PodControl(client, COMPONENT)
        self.workers = workers
        self.jobs.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._job_deleted)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    def _enqueue(self, job: dict) -> None:
        self.queue.add(key_of(job))

    def _job_deleted(self, job: dict) -> None:
        self.expectations.forget(key_of(job))
        self.queue.add(key_of(job))
        # its Pods keep the tracking finalizer: the orphan pass removes it
        for p in self.pods.by_index("controller", job["metadata"]["uid"]):
            self.queue.add("pod:" + key_of(p))

    def _owner(self, p: dict) -> dict | None:
        ref = podstate.controller_ref(p)
        if ref is None or ref.get("kind") != "Job":
            return None
        j = self.jobs.get(p["metadata"]["namespace"], ref.get("name", ""))
        return j if j is not None and j["metadata"]["uid"] == ref.get("uid") else None

    def _pod_added(self, p: dict) -> None:
        j = self._owner(p)
        if j is not None:
            self.expectations.creation_observed(key_of(j))
            self._enqueue(j)
        elif jobs.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or []) and podstate.controller_ref(p):
            self.queue.add("pod:" + key_of(p))

    def _pod_updated(self, old: dict, p: dict) -> None:
        if old["metadata"].get("resourceVersion") == p["metadata"].get("resourceVersion"):
            return
        j = self._owner(p)
        if j is not None:
            if p["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
                self.expectations.deletion_observed(key_of(j), key_of(p))
            self._enqueue(j)
        elif jobs.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or []) and podstate.controller_ref(p):
            self.queue.add("pod:" + key_of(p))

    def _pod_deleted(self, p: dict) -> None:
        j = self._owner(p)
        if j is not None:
            self.expectations.deletion_observed(key_of(j), key_of(p))
            self._enqueue(j)

    async def run(self) -> None:
        await asyncio.gather(self.jobs.synced.wait(), self.pods.synced.wait())
        await run_workers(self.queue, self.sync, self.workers)

    # ---- reconcile
    async def sync(self, key: str) -> None:
        if key.startswith("pod:"):
            await self._orphan_pod(key[4:])
            return
        ns, _, name = key.partition("/")
        job = self.jobs.get(ns, name)
        if job is None:
            self.expectations.forget(key)
            return
        job = copy.deepcopy(job)
        pods = self.pods.by_index("controller", job["metadata"]["uid"])
        status = copy.deepcopy(job.get("status") or {})
        now, now_s = _now(), now_rfc3339()
        spec = job["spec"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or [])
        # finished Pods still holding our finalizer: counted through uncountedTerminatedPods
        holding = [p for p in pods if jobs.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or [])]
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        # a Pod being deleted counts as failed (upstream's isPodFailed with podReplacementPolicy
        # TerminatingOrFailed), unless the Job met its success criteria and removes its leftovers itself
        cleaning_up = jobs.condition(status, "SuccessCriteriaMet") is not None
        policy_failure: tuple[str, str] | None = None
        ignored: list[dict] = []
        for p in holding:
            uid, t = p["metadata"]["uid"], _terminal(p)
            if uid in unc_s or uid in unc_f:
                continue
            if t == "Succeeded":
                unc_s.append(uid)
            elif t == "Failed" or (p["metadata"].get("deletionTimestamp") and spec.get("podReplacementPolicy") != "Failed"
                                   and not cleaning_up):
                action, why = jobs.pod_failure_action(spec.get("podFailurePolicy"), p) if t == "Failed" else ("Count", "")
                if action == "Ignore":
                    ignored.append(p)   # neither counted nor charged to backoffLimit
                    continue
                unc_f.append(uid)
                if action == "FailJob" and policy_failure is None:
                    policy_failure = ("PodFailurePolicy", why)

        # those whose finalizer is gone (or the Pod itself) move into the counts
        done_s = [u for u in unc_s if u not in by_uid or jobs.TRACKING_FINALIZER not in (by_uid[u]["metadata"].get("finalizers") or [])]
        done_f = [u for u in unc_f if u not in by_uid or jobs.TRACKING_FINALIZER not in (by_uid[u]["metadata"].get("finalizers") or [])]
        status["succeeded"] = (status.get("succeeded") or 0) + len(done_s)
        status["failed"] = (status.get("failed") or 0) + len(done_f)
        unc_s = [u for u in unc_s if u not in done_s]
        unc_f = [u for u in unc_f if u not in done_f]
        succeeded = status["succeeded"] + len(unc_s)
        failed = status["failed"] + len(unc_f)
        indexed = spec.get("completionMode") == "Indexed"
        completed_ix = jobs.parse_indexes(status.get("completedIndexes") or "")
        if indexed:
            for p in pods:
                i = jobs.pod_index(p)
                if i is not None and _terminal(p) == "Succeeded" and i < (spec.get("completions") or 0):
                    completed_ix.add(i)
        active = [p for p in pods if not _terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if not _terminal(p) and p["metadata"].get("deletionTimestamp")]
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended and not jobs.finished(job):
            status["startTime"] = now_s

        finished = jobs.finished(job)
        failure = success = None
        if not finished:
            if jobs.condition(status, "FailureTarget"):
                c = jobs.condition(status, "FailureTarget")
                failure = (c.get("reason", ""), c.get("message", ""))
            elif jobs.condition(status, "SuccessCriteriaMet"):
                success = True
            else:
                failure = policy_failure or self._failure(job, status, active, failed, now)
                if failure is None:
                    if indexed:
                        success = len(completed_ix) >= (spec.get("completions") or 0)
                    elif spec.get("completions") is not None:
                        success = succeeded >= spec["completions"]
                    else:
                        success = succeeded > 0 and not active
        if failure is not None:
            jobs.set_condition(status, "FailureTarget", "True", failure[0], failure[1], now_s)
            await self._delete_all(job, active)
            if not active and not terminating:
                jobs.set_condition(status, "Failed", "True", failure[0], failure[1], now_s)
                await self.client.event(job, failure[0], failure[1], "Warning", COMPONENT)
            active = []
        elif success:
            jobs.set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", now_s)
            await self._delete_all(job, active)
            if not active and not terminating:
                jobs.set_condition(status, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", now_s)
                status["completionTime"] = now_s
                await self.client.event(job, "Completed", "Job completed", component=COMPONENT)
            active = []
        elif not finished:
            if suspended:
                if active:
                    await self._delete_all(job, active)
                    active = []
                if not jobs.condition(status, "Suspended") or jobs.condition(status, "Suspended").get("status") != "True":
                    jobs.set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now_s)
                    await self.client.event(job, "Suspended", "Job suspended", component=COMPONENT)
                status.pop("startTime", None)
            else:
                c = jobs.condition(status, "Suspended")
                if c is not None and c.get("status") == "True":
                    jobs.set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now_s)
                    await self.client.event(job, "Resumed", "Job resumed", component=COMPONENT)
                if self.expectations.satisfied(key):
                    active = await self._manage(job, key, pods, active, succeeded, completed_ix, now)

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if podstate.is_ready(p))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", unc_s), ("failed", unc_f)) if v}
        if indexed:
            status["completedIndexes"] = jobs.format_indexes(completed_ix)
        for f in ("succeeded", "failed", "active"):
            if not status.get(f):
                status.pop(f, None)
        if status != (job.get("status") or {}):
            md = job["metadata"]
            res = await self.client.update(path_for("batch", "v1", "jobs", md["namespace"], md["name"], "status"), {**job, "status": status})
            job = res
        # after the uids are saved, the Pods may let go of their finalizer
        release = [by_uid[u] for u in unc_s + unc_f if u in by_uid] + ignored
        if cleaning_up or jobs.finished(job):
            release += [p for p in holding if p["metadata"].get("deletionTimestamp") and p not in release]
        await asyncio.gather(*(self._remove_finalizer(p) for p in release))
        self._requeue_deadline(job, now)

    def _failure(self, job: dict, status: dict, active: list[dict], failed: int, now: datetime.datetime) -> tuple[str, str] | None:
        spec = job["spec"]
        limit = spec.get("backoffLimit", 6)
        tspec = spec["template"]["spec"]
        if tspec.get("restartPolicy") == "OnFailure":
            restarts = sum(cs.get("restartCount", 0) for p in active
                           for cs in ((p.get("status") or {}).get("containerStatuses") or []) + ((p.get("status") or {}).get("initContainerStatuses") or []))
            if (limit == 0 and restarts > 0) or (limit > 0 and restarts >= limit) or failed > limit:
                return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        elif failed > limit:
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        ads = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime") or "") if status.get("startTime") else None
        if ads and start is not None and start + datetime.timedelta(seconds=ads) <= now:
            return "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    def _requeue_deadline(self, job: dict, now: datetime.datetime) -> None:
        ads = job["spec"].get("activeDeadlineSeconds")
        start = parse_time((job.get("status") or {}).get("startTime") or "")
        if ads and start is not None and not jobs.finished(job):
            self.queue.add_after(key_of(job), max(0.0, (start + datetime.timedelta(seconds=ads) - now).total_seconds()) + 0.05)

    async def _manage(self, job: dict, key: str, pods: list[dict], active: list[dict], succeeded: int,
                      completed_ix: set[int], now: datetime.datetime) -> list[dict]:
        spec = job["spec"]
        parallelism = spec.get("parallelism", 1)
        indexed = spec.get("completionMode") == "Indexed"
        if indexed:
            busy = {jobs.pod_index(p) for p in active}
            pending = [i for i in range(spec.get("completions") or 0) if i not in completed_ix and i not in busy]
            want = min(parallelism, len(active) + len(pending))
        elif spec.get("completions") is not None:
            want = max(0, min(parallelism, spec["completions"] - succeeded))
            pending = []
        else:
            want = len(active) if succeeded > 0 else parallelism
            pending = []
        diff = len(active) - want
        if diff > 0:
            victims = podstate.deletion_order(active, active, now)[:diff]
            self.expectations.expect(key, deleting=[key_of(p) for p in victims])
            await asyncio.gather(*(self.pod_control.delete(job, p) for p in victims), return_exceptions=True)
            return [p for p in active if p not in victims]
        if diff == 0:
            return active
        # replacements of failed Pods wait out the back-off
        failures = [p for p in pods if _terminal(p) == "Failed"]
        if failures:
            last = max((jobs.pod_finish_time(p) or now for p in failures))
            recent = sum(1 for p in failures if (jobs.pod_finish_time(p) or now) > last - datetime.timedelta(seconds=jobs.MAX_BACKOFF))
            wait = (last + datetime.timedelta(seconds=jobs.backoff(recent)) - now).total_seconds()
            if wait > 0:
                self.queue.add_after(key, wait)
                return active
        n = min(-diff, 500)
        indexes = pending[:n] if indexed else [None] * n
        total = len(indexes)
        self.expectations.expect(key, adds=total)
        created = 0
        for batch in podstate.slow_start_batches(total):
            chunk, indexes = indexes[:batch], indexes[batch:]
            results = await asyncio.gather(*(self.pod_control.create(job, self._pod(job, i)) for i in chunk), return_exceptions=True)
            errs = [r for r in results if isinstance(r, BaseException)]
            created += len(chunk) - len(errs)
            if errs:
                self.expectations.lower(key, adds=total - created)   # never to be observed
                raise errs[0]
        return active

    def _pod(self, job: dict, index: int | None) -> dict:
        tmpl = copy.deepcopy(job["spec"]["template"])
        md = tmpl.get("metadata") or {}
        name = job["metadata"]["name"]
        p = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"generateName": f"{name}-" if index is None else f"{name}-{index}-",
                          "namespace": job["metadata"]["namespace"],
                          "labels": dict(md.get("labels") or {}), "annotations": dict(md.get("annotations") or {}),
                          "finalizers": list(md.get("finalizers") or []) + [jobs.TRACKING_FINALIZER],
                          "ownerReferences": [podstate.new_controller_ref(job, "batch/v1", "Job")]},
             "spec": tmpl.get("spec") or {}}
        if index is not None:
            p["metadata"]["annotations"][jobs.COMPLETION_INDEX] = str(index)
            p["metadata"]["labels"][jobs.COMPLETION_INDEX] = str(index)
            p["spec"].setdefault("hostname", f"{name}-{index}")
            env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                   "fieldPath": f"metadata.annotations['{jobs.COMPLETION_INDEX}']"}}}
            for c in (p["spec"].get("initContainers") or []) + (p["spec"].get("containers") or []):
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                    c.setdefault("env", []).append(env)
        if not p["metadata"]["annotations"]:
            del p["metadata"]["annotations"]
        return p

    async def _delete_all(self, job: dict, active: list[dict]) -> None:
        if not active:
            return
        self.expectations.expect(key_of(job), deleting=[key_of(p) for p in active])
        await asyncio.gather(*(self.pod_control.delete(job, p) for p in active), return_exceptions=True)

    async def _remove_finalizer(self, p: dict) -> None:
        md = p["metadata"]
        fins = [f for f in md.get("finalizers") or [] if f != jobs.TRACKING_FINALIZER]
        try:
            await self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                    {"metadata": {"finalizers": fins or None, "resourceVersion": md["resourceVersion"]}}, kind="merge")
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def _orphan_pod(self, pkey: str) -> None:
        """A Pod with the tracking finalizer whose Job is gone: nothing will count it any more, let it go."""
        ns, _, name = pkey.partition("/")
        p = self.pods.get(ns, name)
        if p is None or jobs.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) or self._owner(p) is not None:
            return
        ref = podstate.controller_ref(p)
        if ref is not None and ref.get("kind") == "Job":
            try:
                live = await self.client.get(path_for("batch", "v1", "jobs", ns, ref.get("name", "")))
                if live["metadata"]["uid"] == ref.get("uid"):
                    return   # the cache is behind: the Job exists
            except ApiError as e:
                if e.status != 404:
                    raise
        await self._remove_finalizer(p)
