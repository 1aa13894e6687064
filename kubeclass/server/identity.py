"""API server identity, as kube-apiserver 1.26+ publishes it: each server holds a Lease in kube-system named
`apiserver-<id>` (labels `apiserver.kubernetes.io/identity: kube-apiserver` and `kubernetes.io/hostname`,
holderIdentity `<name>_<uuid>`, leaseDurationSeconds 3600, renewed every 10 s), so `kubectl get leases -n
kube-system -l apiserver.kubernetes.io/identity=kube-apiserver` shows which servers are alive; every server also
deletes the identity Leases that expired (upstream's apiserver identity lease garbage collector).

Upstream derives `<id>` from the host name alone; several kubeclass servers may share a host (the tests, or a
laptop), so the id hashes the host name and the serving address together."""
from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
import socket
import uuid

from ..api import registry
from ..store import KeyExists, KeyNotFound, RevisionConflict, StoreError

log = logging.getLogger("kubeclass.server")

LEASE_SECONDS = 3600
RENEW_SECONDS = 10.0
LABEL = "apiserver.kubernetes.io/identity"


def lease_name(host: str, address: str) -> str:
    digest = hashlib.sha256(f"{host}|{address}".encode()).digest()[:16]
    return "apiserver-" + base64.b32encode(digest).decode().rstrip("=").lower()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expired(lease: dict, now: datetime.datetime) -> bool:
    spec = lease.get("spec") or {}
    renew = spec.get("renewTime")
    if not renew:
        return True
    try:
        t = datetime.datetime.strptime(renew, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return True
    return (now - t).total_seconds() > int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)


class Identity:
    def __init__(self, store, address: str):
        self.store = store
        self.host = socket.gethostname()
        self.name = lease_name(self.host, address)
        self.holder = f"{self.name}_{uuid.uuid4()}"
        self.res = registry.BY_PATH[("coordination.k8s.io", "v1", "leases")]

    def _key(self, name: str) -> str:
        return self.res.key("kube-system", name)

    async def renew(self) -> None:
        now = _micro(_now())
        key = self._key(self.name)
        cur = self.store.get(key)
        if cur is None:
            obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": self.name, "namespace": "kube-system", "uid": str(uuid.uuid4()),
                                "creationTimestamp": now[:19] + "Z",
                                "labels": {LABEL: "kube-apiserver", "kubernetes.io/hostname": self.host}},
                   "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": LEASE_SECONDS,
                            "acquireTime": now, "renewTime": now}}
            try:
                await self.store.create(key, obj)
            except KeyExists:
                pass
            return
        obj = cur.copy()
        spec = obj.setdefault("spec", {})
        if spec.get("holderIdentity") != self.holder:
            spec["holderIdentity"], spec["acquireTime"] = self.holder, now
        spec["renewTime"] = now
        spec["leaseDurationSeconds"] = LEASE_SECONDS
        try:
            await self.store.update(key, obj, cur.rev)
        except (RevisionConflict, KeyNotFound):
            pass

    async def collect(self) -> None:
        now = _now()
        for key, ent in self.store.list(self.res.key_prefix("kube-system"))[0]:
            o = ent.obj
            if ((o.get("metadata") or {}).get("labels") or {}).get(LABEL) == "kube-apiserver" and expired(o, now):
                try:
                    await self.store.delete(key, ent.rev)
                    log.info("removed the expired API server identity lease %s", o["metadata"]["name"])
                except (RevisionConflict, KeyNotFound):
                    pass

    async def run(self) -> None:
        while True:
            try:
                await self.renew()
                await self.collect()
            except StoreError as e:
                log.warning("API server identity lease %s: %s", self.name, e)
            await asyncio.sleep(RENEW_SECONDS)
