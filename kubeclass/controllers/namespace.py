"""The namespace controller (kube-controller-manager's namespace controller): a namespace being deleted
is emptied through the API — every namespaced resource the API serves is deleted (Pods gracefully, the
garbage collector's finalizers honoured) — with upstream's five deletion conditions on the namespace
(NamespaceContentRemaining / NamespaceFinalizersRemaining say what still blocks it); once nothing is
left, the `kubernetes` finalizer is removed through `namespaces/NAME/finalize` and the API server deletes
the namespace."""
from __future__ import annotations

import copy
import logging

from ..client import ApiError, Client, now_rfc3339, path_for
from .informers import Informers
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.namespace")
FINALIZER = "kubernetes"
RECHECK = 1.0


def conditions(remaining: dict[str, int], finalizers: dict[str, int], failures: list[str]) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of upstream's namespace deletion conditions."""
    out = [("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered", "All resources successfully discovered"),
           ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions", "All legacy kube types successfully parsed")]
    if failures:
        out.append(("NamespaceDeletionContentFailure", "True", "ContentDeletionFailed",
                    "Failed to delete all resource types, " + ", ".join(sorted(failures))))
    else:
        out.append(("NamespaceDeletionContentFailure", "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"))
    if remaining:
        out.append(("NamespaceContentRemaining", "True", "SomeResourcesRemain", "Some resources are remaining: " +
                    ", ".join(sorted(f"{r} has {n} resource instances" for r, n in remaining.items()))))
    else:
        out.append(("NamespaceContentRemaining", "False", "ContentRemoved", "All content successfully removed"))
    if finalizers:
        out.append(("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: " +
                    ", ".join(sorted(f"{f} in {n} resource instances" for f, n in finalizers.items()))))
    else:
        out.append(("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers", "All content-preserving finalizers finished"))
    return out


class NamespaceController:
    name = "namespace"

    def __init__(self, client: Client, informers: Informers, workers: int = 5):
        self.client = client
        self.namespaces = informers.get("", "v1", "namespaces")
        self.queue = WorkQueue(self.name)
        self.workers = workers
        self.namespaces.add_handlers(self._ns, lambda old, new: self._ns(new))

    def _ns(self, ns: dict) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    async def run(self) -> None:
        await self.namespaces.synced.wait()
        await run_workers(self.queue, self.sync, self.workers)

    async def _resources(self) -> list[tuple[str, str, str, set[str]]]:
        """(group, version, plural, verbs) of every namespaced resource served, preferred versions."""
        out = [("", "v1", r["name"], set(r.get("verbs") or []))
               for r in (await self.client.get("/api/v1")).get("resources") or [] if r.get("namespaced") and "/" not in r["name"]]
        for g in (await self.client.get("/apis")).get("groups") or []:
            v = (g.get("preferredVersion") or {}).get("version")
            if not v:
                continue
            try:
                lst = await self.client.get(f"/apis/{g['name']}/{v}")
            except ApiError:
                continue
            out += [(g["name"], v, r["name"], set(r.get("verbs") or []))
                    for r in lst.get("resources") or [] if r.get("namespaced") and "/" not in r["name"]]
        return out

    async def sync(self, name: str) -> None:
        ns = self.namespaces.get(None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        failures: list[str] = []
        for group, version, plural, verbs in await self._resources():
            if "list" not in verbs or "delete" not in verbs or (group, plural) in (("", "events"), ("events.k8s.io", "events")):
                continue
            path = path_for(group, version, plural, name)
            try:
                if "deletecollection" in verbs:
                    await self.client.request("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
                items = (await self.client.list(path)).get("items") or []
                for obj in items:
                    if "deletecollection" not in verbs and not obj["metadata"].get("deletionTimestamp"):
                        await self.client.delete(path + "/" + obj["metadata"]["name"], {"propagationPolicy": "Background"})
            except ApiError as e:
                if e.status in (404, 405):
                    continue
                failures.append(f"{plural}.{group}: {e.body.get('message', e)}")
                continue
            if items:
                remaining[f"{plural}.{group}"] = len(items)
                for obj in items:
                    for f in obj["metadata"].get("finalizers") or []:
                        finalizers[f] = finalizers.get(f, 0) + 1
        await self._set_conditions(ns, conditions(remaining, finalizers, failures))
        if remaining or failures:
            self.queue.add_after(name, RECHECK)
            return
        # events go last, with the namespace
        try:
            await self.client.request("DELETE", path_for("", "v1", "events", name), {"kind": "DeleteOptions", "apiVersion": "v1"})
        except ApiError:
            pass
        fresh = await self.client.get(path_for("", "v1", "namespaces", None, name))
        fresh.setdefault("spec", {})["finalizers"] = [f for f in fresh["spec"].get("finalizers") or [] if f != FINALIZER]
        try:
            await self.client.update(path_for("", "v1", "namespaces", None, name) + "/finalize", fresh)
        except ApiError as e:
            if e.status == 409:
                raise Requeue() from e
            if e.status != 404:
                raise
        log.info("namespace %s emptied and finalized", name)

    async def _set_conditions(self, ns: dict, conds: list[tuple[str, str, str, str]]) -> None:
        st = copy.deepcopy(ns.get("status") or {})
        old = {c.get("type"): c for c in st.get("conditions") or []}
        now = now_rfc3339()
        new = []
        for typ, status, reason, message in conds:
            c = old.get(typ)
            if c is not None and (c.get("status"), c.get("reason"), c.get("message")) == (status, reason, message):
                new.append(c)
                continue
            new.append({"type": typ, "status": status, "lastTransitionTime": now if c is None or c.get("status") != status
                        else c.get("lastTransitionTime", now), "reason": reason, "message": message})
        if new == st.get("conditions"):
            return
        st["conditions"] = new
        try:
            await self.client.update(path_for("", "v1", "namespaces", None, ns["metadata"]["name"], "status"), {**ns, "status": st})
        except ApiError as e:
            if e.status not in (404, 409):
                raise
