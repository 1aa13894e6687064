"""The TTL-after-finished controller (kube-controller-manager's ttlafterfinished): a Job with
`ttlSecondsAfterFinished` is deleted (its Pods with it, in the foreground) that many seconds after it
completed or failed."""
from __future__ import annotations

import asyncio
import datetime

from ..api import jobs
from ..api.meta import parse_time
from ..client import ApiError, Client, path_for
from .informers import Informers, key_of
from .workqueue import WorkQueue, run_workers


def finish_time(job: dict) -> datetime.datetime | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime") or "")
    return None


class TTLAfterFinished:
    name = "ttlafterfinished"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.jobs = informers.get("batch", "v1", "jobs")
        self.queue = WorkQueue(self.name)
        self.jobs.add_handlers(self._consider, lambda old, new: self._consider(new))

    def _consider(self, job: dict) -> None:
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and jobs.finished(job) \
                and not job["metadata"].get("deletionTimestamp"):
            self.queue.add(key_of(job))

    async def run(self) -> None:
        await self.jobs.synced.wait()
        await run_workers(self.queue, self.sync, 2)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        job = self.jobs.get(ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done = finish_time(job)
        if ttl is None or done is None:
            return
        left = (done + datetime.timedelta(seconds=ttl) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            await self.client.delete(path_for("batch", "v1", "jobs", ns, name),
                                     {"propagationPolicy": "Foreground", "preconditions": {"uid": job["metadata"]["uid"]}})
        except ApiError as e:
            if e.status not in (404, 409):
                raise
        await asyncio.sleep(0)
