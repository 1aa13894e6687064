"""The garbage collector (kube-controller-manager's garbagecollector): follows every resource the API
serves that can be listed, watched and deleted (events aside), keeps a graph of ownerReferences by uid,
and
- deletes an object whose owners are all gone (background cascading deletion: `kubectl delete deploy x`);
- for an owner deleted with `propagationPolicy: Foreground` (the `foregroundDeletion` finalizer), deletes
  its dependents and removes the finalizer once no dependent with `blockOwnerDeletion` is left;
- for an owner deleted with `propagationPolicy: Orphan` (the `orphan` finalizer), removes the owner from its
  dependents' ownerReferences, then the finalizer;
- drops dangling references from objects that still have a live owner.
An owner missing from the graph is looked up live before anything is deleted (its watch may lag), as
upstream's attemptToDelete does; an owner kind the API does not serve is retried, never assumed gone."""
from __future__ import annotations

import asyncio
import logging

from ..api import gc
from ..client import ApiError, Client, path_for
from .informers import Informers
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.gc")

IGNORED = {("", "events"), ("events.k8s.io", "events")}
DISCOVERY_PERIOD = 30.0


class Node:
    __slots__ = ("obj", "kind", "api_version", "group", "plural")

    def __init__(self, obj: dict, api_version: str, kind: str, group: str, plural: str):
        self.obj, self.api_version, self.kind, self.group, self.plural = obj, api_version, kind, group, plural


class GarbageCollector:
    name = "garbagecollector"

    def __init__(self, client: Client, informers: Informers, workers: int = 10):
        self.client = client
        self.informers = informers
        self.queue = WorkQueue(self.name)
        self.workers = workers
        self.nodes: dict[str, Node] = {}                # uid -> object
        self.dependents: dict[str, set[str]] = {}       # owner uid -> dependent uids
        self.kinds: dict[tuple[str, str], tuple[str, str, bool]] = {}   # (apiVersion, kind) -> (group/version, plural, namespaced)
        self.watched: set[tuple[str, str, str]] = set()
        self._absent: set[tuple] = set()                # owners confirmed gone by a live lookup (uid, apiVersion, kind, name, ns)

    # ---- discovery: what to follow
    async def discover(self) -> None:
        groups = [("", "v1")]
        try:
            apis = await self.client.get("/apis")
        except ApiError:
            apis = {"groups": []}
        for g in apis.get("groups") or []:
            for v in g.get("versions") or []:
                groups.append((g["name"], v["version"]))
        preferred = {g["name"]: g.get("preferredVersion", {}).get("version") for g in apis.get("groups") or []}
        preferred[""] = "v1"
        kinds: dict[tuple[str, str], tuple[str, str, bool]] = {}
        follow: set[tuple[str, str, str]] = set()
        for group, version in groups:
            try:
                lst = await self.client.get(f"/apis/{group}/{version}" if group else "/api/v1")
            except ApiError:
                continue
            av = f"{group}/{version}" if group else version
            for r in lst.get("resources") or []:
                if "/" in r["name"]:
                    continue
                kinds[(av, r["kind"])] = (av, r["name"], r.get("namespaced", False))
                verbs = set(r.get("verbs") or [])
                if {"list", "watch", "delete"} <= verbs and (group, r["name"]) not in IGNORED and preferred.get(group) == version:
                    follow.add((group, version, r["name"]))
        self.kinds = kinds
        for g, v, p in follow - self.watched:
            inf = self.informers.get(g, v, p)
            inf.add_handlers(self._added(g, v, p), self._updated(g, v, p), self._deleted)
        for g, v, p in self.watched - follow:
            self.informers.stop(g, v, p)
        self.watched = follow

    # ---- the graph
    def _added(self, group: str, version: str, plural: str):
        av = f"{group}/{version}" if group else version

        def on_add(obj: dict) -> None:
            self._put(obj, av, group, plural)
        return on_add

    def _updated(self, group: str, version: str, plural: str):
        av = f"{group}/{version}" if group else version

        def on_update(old: dict, obj: dict) -> None:
            self._put(obj, av, group, plural, old)
        return on_update

    def _put(self, obj: dict, av: str, group: str, plural: str, old: dict | None = None) -> None:
        md = obj["metadata"]
        uid = md.get("uid")
        if not uid:
            return
        kind = obj.get("kind") or ""
        prev = self.nodes.get(uid)
        self.nodes[uid] = Node(obj, obj.get("apiVersion") or av, kind, group, plural)
        old_owners = {r.get("uid") for r in ((prev.obj if prev else old or {}).get("metadata") or {}).get("ownerReferences") or []}
        new_owners = {r.get("uid") for r in md.get("ownerReferences") or []}
        for o in old_owners - new_owners:
            s = self.dependents.get(o)
            if s is not None:
                s.discard(uid)
                if not s:
                    del self.dependents[o]
                if o in self.nodes:
                    self.queue.add(o)   # an owner waiting on its dependents may be free now
        for o in new_owners:
            self.dependents.setdefault(o, set()).add(uid)
        if md.get("ownerReferences"):
            self.queue.add(uid)
        if md.get("deletionTimestamp") and set(md.get("finalizers") or []) & {gc.ORPHAN, gc.FOREGROUND}:
            self.queue.add(uid)
            for d in self.dependents.get(uid, ()):
                self.queue.add(d)

    def _deleted(self, obj: dict) -> None:
        md = obj["metadata"]
        uid = md.get("uid")
        if not uid or uid not in self.nodes:
            return
        del self.nodes[uid]
        for o in {r.get("uid") for r in md.get("ownerReferences") or []}:
            s = self.dependents.get(o)
            if s is not None:
                s.discard(uid)
                if not s:
                    del self.dependents[o]
            if o in self.nodes:
                self.queue.add(o)   # a foreground owner may be waiting for this one
        for d in self.dependents.get(uid, ()):
            self.queue.add(d)
        if len(self._absent) > 10000:
            self._absent.clear()

    # ---- reconcile
    async def run(self) -> None:
        await self.discover()
        self.informers.start()
        await self.informers.wait_synced(*[self.informers.get(*w) for w in self.watched])
        for uid in list(self.nodes):
            self.queue.add(uid)
        await asyncio.gather(run_workers(self.queue, self.sync, self.workers), self._rediscover())

    async def _rediscover(self) -> None:
        while True:
            await asyncio.sleep(DISCOVERY_PERIOD)
            try:
                await self.discover()
            except Exception:  # noqa: BLE001
                log.exception("garbage collector discovery")

    def _path(self, node: Node, obj: dict) -> str:
        md = obj["metadata"]
        group, _, version = node.api_version.rpartition("/")
        return path_for(group, version, node.plural, md.get("namespace"), md["name"])

    async def _owner_state(self, dependent: dict, ref: dict) -> str:
        uid = ref.get("uid", "")
        n = self.nodes.get(uid)
        if n is not None:
            return "foreground" if gc.deleting_with(n.obj["metadata"], gc.FOREGROUND) else "present"
        ident = (uid, ref.get("apiVersion", ""), ref.get("kind", ""), ref.get("name", ""), dependent["metadata"].get("namespace"))
        if ident in self._absent:
            return "absent"
        found = self.kinds.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        if found is None:
            await self.discover()
            found = self.kinds.get((ref.get("apiVersion", ""), ref.get("kind", "")))
            if found is None:
                raise Requeue()   # a kind not served (yet): never assume its objects are gone
        av, plural, namespaced = found
        group, _, version = av.rpartition("/")
        ns = dependent["metadata"].get("namespace") if namespaced else None
        try:
            live = await self.client.get(path_for(group, version, plural, ns, ref.get("name", "")))
        except ApiError as e:
            if e.status != 404:
                raise
            self._absent.add(ident)
            return "absent"
        if live["metadata"].get("uid") != uid:
            self._absent.add(ident)
            return "absent"
        return "foreground" if gc.deleting_with(live["metadata"], gc.FOREGROUND) else "present"

    async def sync(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None:
            return
        obj, md = node.obj, node.obj["metadata"]
        if gc.deleting_with(md, gc.ORPHAN):
            await self._orphan_dependents(node)
            return
        if gc.deleting_with(md, gc.FOREGROUND):
            await self._delete_dependents(node)
            return
        refs = md.get("ownerReferences") or []
        if not refs or md.get("deletionTimestamp"):
            return
        states = {}
        for r in refs:
            states[r.get("uid")] = await self._owner_state(obj, r)
        solid, dangling, waiting = gc.classify(refs, lambda r: states[r.get("uid")])
        if solid:
            if dangling:
                await self._patch_refs(node, [{"$patch": "delete", "uid": r["uid"]} for r in dangling])
            return
        policy = gc.delete_policy_for(md, bool(self.dependents.get(uid)), bool(waiting))
        log.info("deleting %s %s/%s (owners gone%s), propagation %s", node.kind, md.get("namespace", ""), md["name"],
                 ", one waiting in the foreground" if waiting else "", policy)
        try:
            await self.client.delete(self._path(node, obj), {"kind": "DeleteOptions", "apiVersion": "v1",
                                                             "preconditions": {"uid": uid}, "propagationPolicy": policy})
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def _patch_refs(self, node: Node, ops: list[dict]) -> None:
        md = node.obj["metadata"]
        try:
            await self.client.patch(self._path(node, node.obj), {"metadata": {"ownerReferences": ops, "uid": md["uid"]}})
        except ApiError as e:
            if e.status not in (404, 409, 422):
                raise

    async def _orphan_dependents(self, owner: Node) -> None:
        uid = owner.obj["metadata"]["uid"]
        for d in list(self.dependents.get(uid, ())):
            n = self.nodes.get(d)
            if n is not None:
                await self._patch_refs(n, [{"$patch": "delete", "uid": uid}])
        if any(self.nodes.get(d) is not None for d in self.dependents.get(uid, ())):
            raise Requeue()   # the patches' watch events have not come back yet
        await self._remove_finalizer(owner, gc.ORPHAN)

    async def _delete_dependents(self, owner: Node) -> None:
        uid = owner.obj["metadata"]["uid"]
        blocking = False
        for d in list(self.dependents.get(uid, ())):
            n = self.nodes.get(d)
            if n is None:
                continue
            dmd = n.obj["metadata"]
            ref = next((r for r in dmd.get("ownerReferences") or [] if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if dmd.get("deletionTimestamp"):
                continue
            others = [r for r in dmd.get("ownerReferences") or [] if r.get("uid") != uid]
            if others and any([await self._owner_state(n.obj, r) == "present" for r in others]):
                await self._patch_refs(n, [{"$patch": "delete", "uid": uid}])
                continue
            policy = "Foreground" if self.dependents.get(d) else "Background"
            try:
                await self.client.delete(self._path(n, n.obj), {"kind": "DeleteOptions", "apiVersion": "v1",
                                                                "preconditions": {"uid": d}, "propagationPolicy": policy})
            except ApiError as e:
                if e.status not in (404, 409):
                    raise
        if blocking:
            return   # the dependents' deletions come back as watch events and requeue the owner
        await self._remove_finalizer(owner, gc.FOREGROUND)

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        md = node.obj["metadata"]
        fins = [f for f in md.get("finalizers") or [] if f != finalizer]
        try:
            await self.client.patch(self._path(node, node.obj),
                                    {"metadata": {"finalizers": fins or None, "resourceVersion": md["resourceVersion"]}}, kind="merge")
        except ApiError as e:
            if e.status == 409:
                raise Requeue() from e
            if e.status != 404:
                raise
