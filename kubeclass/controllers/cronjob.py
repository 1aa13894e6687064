"""The CronJob controller (kube-controller-manager's cronjob-controller-v2): at each scheduled time (in
`spec.timeZone`, else UTC) it creates the Job `<cronjob>-<minutes since the epoch>` from `jobTemplate`,
honouring `concurrencyPolicy` (Allow, Forbid: skip while one runs, Replace: delete the running ones first),
`startingDeadlineSeconds` and `suspend`; it keeps `status.active`, `lastScheduleTime`, `lastSuccessfulTime`
and deletes finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`. Schedule
arithmetic in api/cronjobs.py."""
from __future__ import annotations

import asyncio
import copy
import datetime
import logging

from ..api import cronjobs, jobs, podstate
from ..api.meta import parse_time
from ..client import ApiError, Client, path_for
from .informers import Informers, by_controller_uid, key_of
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.cronjob")
COMPONENT = "cronjob-controller"


def _rfc(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CronJobController:
    name = "cronjob"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.cronjobs = informers.get("batch", "v1", "cronjobs")
        self.jobs = informers.get("batch", "v1", "jobs")
        self.jobs.add_index("controller", by_controller_uid)
        self.queue = WorkQueue(self.name)
        self._noticed: set[str] = set()
        self.cronjobs.add_handlers(self._enqueue, lambda old, new: self._enqueue(new))
        self.jobs.add_handlers(self._job, lambda old, new: self._job(new), self._job)

    def _enqueue(self, cj: dict) -> None:
        self.queue.add(key_of(cj))

    def _job(self, job: dict) -> None:
        ref = podstate.controller_ref(job)
        if ref and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata']['namespace']}/{ref.get('name', '')}")

    async def run(self) -> None:
        await asyncio.gather(self.cronjobs.synced.wait(), self.jobs.synced.wait())
        await run_workers(self.queue, self.sync, 3)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        cj = self.cronjobs.get(ns, name)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        cj = copy.deepcopy(cj)
        spec = cj["spec"]
        now = datetime.datetime.now(datetime.timezone.utc)
        status = copy.deepcopy(cj.get("status") or {})
        mine = self.jobs.by_index("controller", cj["metadata"]["uid"])
        # status.active: the Jobs this controller made that still run (upstream's; a Job made by hand with
        # this CronJob as owner is noticed, not adopted)
        running = {j["metadata"]["uid"]: j for j in mine if not jobs.finished(j) and not j["metadata"].get("deletionTimestamp")}
        by_uid = {j["metadata"]["uid"]: j for j in mine}
        known = {a.get("uid") for a in status.get("active") or []}
        for uid, j in running.items():
            if uid not in known and uid not in self._noticed:
                if len(self._noticed) > 10000:
                    self._noticed.clear()
                self._noticed.add(uid)
                await self.client.event(cj, "UnexpectedJob", f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}",
                                        "Warning", COMPONENT)
        for a in status.get("active") or []:
            j = by_uid.get(a.get("uid"))
            if j is not None and jobs.finished(j):
                await self.client.event(cj, "SawCompletedJob", f"Saw completed job: {j['metadata']['name']}, status: {jobs.finished(j)}",
                                        component=COMPONENT)
        for j in mine:
            if jobs.finished(j) == "Complete":
                done = parse_time(((j.get("status") or {}).get("completionTime")) or "")
                last = parse_time(status.get("lastSuccessfulTime") or "")
                if done and (last is None or done > last):
                    status["lastSuccessfulTime"] = _rfc(done)
        status["active"] = [a for a in status.get("active") or [] if a.get("uid") in running]
        if not status["active"]:
            del status["active"]
        running_jobs = [running[a["uid"]] for a in status.get("active") or []]
        await self._trim_history(cj, mine)
        if spec.get("suspend"):
            await self._write(cj, status)
            return
        tz = spec.get("timeZone")
        since = parse_time(status.get("lastScheduleTime") or "") or parse_time(cj["metadata"].get("creationTimestamp") or "") or now
        missed = cronjobs.times_between(spec["schedule"], tz, since, now)
        if len(missed) > cronjobs.MAX_MISSED:
            await self.client.event(cj, "TooManyMissedTimes", f"too many missed start times: {len(missed)}. Set or decrease "
                                    ".spec.startingDeadlineSeconds or check clock skew", "Warning", COMPONENT)
        if missed:
            scheduled = missed[-1]
            deadline = spec.get("startingDeadlineSeconds")
            if deadline is not None and (now - scheduled).total_seconds() > deadline:
                await self.client.event(cj, "MissSchedule", f"Missed scheduled time to start a job: {_rfc(scheduled)}", "Warning", COMPONENT)
            elif spec.get("concurrencyPolicy") == "Forbid" and running_jobs:
                log.info("cronjob %s: not starting the job of %s, one is still running (concurrencyPolicy Forbid)", key, _rfc(scheduled))
                await self.client.event(cj, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid",
                                        component=COMPONENT)
            else:
                if spec.get("concurrencyPolicy") == "Replace":
                    for j in running_jobs:
                        await self._delete(cj, j)
                    status.pop("active", None)
                created = await self._create(cj, scheduled)
                if created is not None:
                    status.setdefault("active", []).append(
                        {"kind": "Job", "namespace": ns, "name": created["metadata"]["name"], "uid": created["metadata"]["uid"],
                         "apiVersion": "batch/v1", "resourceVersion": created["metadata"].get("resourceVersion", "")})
                status["lastScheduleTime"] = _rfc(scheduled)
        await self._write(cj, status)
        nxt = cronjobs.next_time(spec["schedule"], tz, now)
        self.queue.add_after(key, (nxt - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 0.1)

    async def _create(self, cj: dict, scheduled: datetime.datetime) -> dict | None:
        jt = copy.deepcopy(cj["spec"].get("jobTemplate") or {})
        md = jt.get("metadata") or {}
        ns = cj["metadata"]["namespace"]
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": cronjobs.job_name(cj["metadata"]["name"], scheduled), "namespace": ns,
                            "labels": dict(md.get("labels") or {}),
                            "annotations": {**(md.get("annotations") or {}), cronjobs.SCHEDULED_AT: _rfc(scheduled)},
                            "ownerReferences": [podstate.new_controller_ref(cj, "batch/v1", "CronJob")]},
               "spec": jt.get("spec") or {}}
        if not job["metadata"]["labels"]:
            del job["metadata"]["labels"]
        try:
            created = await self.client.create(path_for("batch", "v1", "jobs", ns), job)
        except ApiError as e:
            if e.status == 409:
                return None   # made already for this time (a restart in between)
            await self.client.event(cj, "FailedCreate", f"Error creating job: {e.body.get('message', e)}", "Warning", COMPONENT)
            raise
        await self.client.event(cj, "SuccessfulCreate", f"Created job {created['metadata']['name']}", component=COMPONENT)
        return created

    async def _delete(self, cj: dict, job: dict) -> None:
        md = job["metadata"]
        try:
            await self.client.delete(path_for("batch", "v1", "jobs", md["namespace"], md["name"]),
                                     {"propagationPolicy": "Background", "preconditions": {"uid": md["uid"]}})
        except ApiError as e:
            if e.status not in (404, 409):
                raise
            return
        await self.client.event(cj, "SuccessfulDelete", f"Deleted job {md['name']}", component=COMPONENT)

    async def _trim_history(self, cj: dict, mine: list[dict]) -> None:
        for state, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = cj["spec"].get(field)
            if limit is None:
                continue
            done = sorted([j for j in mine if jobs.finished(j) == state and not j["metadata"].get("deletionTimestamp")],
                          key=lambda j: ((j.get("status") or {}).get("startTime") or "", j["metadata"]["name"]))
            for j in done[:max(0, len(done) - limit)]:
                await self._delete(cj, j)

    async def _write(self, cj: dict, status: dict) -> None:
        if status == (cj.get("status") or {}):
            return
        md = cj["metadata"]
        try:
            await self.client.update(path_for("batch", "v1", "cronjobs", md["namespace"], md["name"], "status"), {**cj, "status": status})
        except ApiError as e:
            if e.status == 409:
                raise Requeue() from e
            if e.status != 404:
                raise
