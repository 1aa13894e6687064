"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: acquire when the
lease is free or expired, renew every `renew` seconds, give up leadership (and stop the work) when
renewing fails for a whole lease duration. Several schedulers may run; one schedules."""
from __future__ import annotations

import asyncio
import datetime
import logging

from .client import ApiError, Client, now_micro, path_for
from .httpclient import TransportError

log = logging.getLogger("kubeclass.leaderelection")


def _parse(ts: str | None) -> datetime.datetime | None:
    if not ts:
        return None
    try:
        return datetime.datetime.strptime(ts.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        try:
            return datetime.datetime.strptime(ts.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return None


class LeaderElector:
    def __init__(self, client: Client, namespace: str, name: str, identity: str,
                 lease_duration: int = 15, renew: float = 2.0, retry: float = 2.0):
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.lease_duration, self.renew, self.retry = lease_duration, renew, retry
        self.is_leader = False

    def _path(self, name: str | None = None) -> str:
        return path_for("coordination.k8s.io", "v1", "leases", self.namespace, name)

    async def try_acquire_or_renew(self) -> bool:
        now = now_micro()
        try:
            lease = await self.client.get(self._path(self.name))
        except TransportError:
            return False
        except ApiError as e:
            if e.status != 404:
                return False
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_duration,
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            try:
                await self.client.create(self._path(), body)
                return True
            except (ApiError, TransportError):
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        expired = renewed is None or (datetime.datetime.now(datetime.timezone.utc) - renewed).total_seconds() > \
            (spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
        spec.update({"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_duration, "renewTime": now})
        lease["spec"] = spec
        try:
            await self.client.update(self._path(self.name), lease)   # carries resourceVersion: optimistic
            return True
        except (ApiError, TransportError):
            return False

    async def run(self, work) -> None:
        """Run `work()` (a coroutine function) while leader; re-elect after losing the lease."""
        while True:
            while not await self.try_acquire_or_renew():
                await asyncio.sleep(self.retry)
            self.is_leader = True
            log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
            task = asyncio.get_running_loop().create_task(work())
            last_ok = asyncio.get_running_loop().time()
            try:
                while not task.done():
                    await asyncio.sleep(self.renew)
                    if await self.try_acquire_or_renew():
                        last_ok = asyncio.get_running_loop().time()
                    elif asyncio.get_running_loop().time() - last_ok > self.lease_duration:
                        log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                        break
            finally:
                self.is_leader = False
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if task.done() and not task.cancelled() and task.exception() is None:
                return
