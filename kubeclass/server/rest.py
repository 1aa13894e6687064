"""REST verbs on stored resources: create, get, list, watch, update, patch, delete, deletecollection,
and the status / binding / scale subresources. Pure API rules live in `kubeclass.api`; this module
wires them to the store and to the request's options (dryRun, fieldValidation, selectors, paging)."""
from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import datetime
import functools
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..admission import Attributes, Chain
from ..api import errors, gc, limits, meta, names, params, patch as patchlib, registry, schema
from ..api.errors import StatusError
from ..api.params import parse_bool
from ..api.registry import Resource
from ..api.selectors import FieldRequirement, FieldSelector, LabelSelector, SelectorError, check_field_labels
from ..store import Compacted, Entry, KeyExists, KeyNotFound, RevisionConflict
from . import tables

GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
TOO_LARGE_WAIT = 3.0   # seconds a list or watch waits for a resourceVersion the store has not reached
RETRY_FOR = 30.0   # seconds a write without a resourceVersion retries on conflicts before giving up with 409
PATCH_TYPES = {"application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"}


@dataclass
class Context:
    """One request as the REST layer sees it."""
    method: str
    query: dict[str, str]
    accept: str
    user: Any = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    warnings: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)   # keys the JSON body repeated (reported as upstream)

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    def flag(self, name: str) -> bool:
        return parse_bool(self.query.get(name, ""))


@dataclass
class Result:
    status: int
    body: bytes
    content_type: str = "application/json"
    warnings: list[str] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _now() -> str:
    return meta.now_rfc3339()


def _untyped(raw: bytes, prefix: bytes) -> bytes:
    """An item of a list without its kind and apiVersion: sliced off when stored first (store.encode), else decoded."""
    if raw.startswith(prefix):
        return b"{" + raw[len(prefix):]
    o = orjson.loads(raw)
    o.pop("kind", None)
    o.pop("apiVersion", None)
    return orjson.dumps(o)


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


class StoreLister:
    """Admission plugins read objects through this, as upstream plugins read informer caches."""

    def __init__(self, store):
        self.store = store

    def _res(self, group: str, resource: str) -> Resource | None:
        return registry.STORAGE.get((group, resource))

    def get(self, group: str, resource: str, namespace: str | None, name: str) -> dict | None:
        r = self._res(group, resource)
        e = self.store.get(r.key(namespace, name)) if r else None
        return e.obj if e else None

    def list(self, group: str, resource: str, namespace: str | None = None) -> list[dict]:
        r = registry.STORAGE.get((group, resource))
        return self.store.list_objects(r.key_prefix(namespace)) if r else []


class REST:
    def __init__(self, store, chain: Chain | None = None, locks: dict[str, asyncio.Lock] | None = None):
        self.store = store
        self.fresh = getattr(store, "fresh", None)   # etcd: consistent reads wait for the watch cache (store/etcd.py)
        self.chain = chain if chain is not None else Chain()
        self.lister = StoreLister(store)
        self.locks = locks if locks is not None else {}  # serialization keys -> locks (see Plugin.serialization_key)
        self.guard = None   # authz.EscalationGuard: RBAC objects may only grant what their requester holds
        # (group, plural) -> what a kind allocates outside its object (service_alloc.Allocator: cluster IPs,
        # node ports): before_create / undo_create / before_update / after_update / release
        self.hooks: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ decoding
    def decode_object(self, ctx: Context, res: Resource, obj: Any) -> dict:
        kind = res.kind.kind
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: expected an object")
        av, k = obj.get("apiVersion"), obj.get("kind")
        if av and av != res.api_version:
            raise errors.bad_request(f"the API version in the data ({av}) does not match the expected API version ({res.api_version})")
        if k and k != kind:
            raise errors.bad_request(f"the kind in the data ({k}) does not match the expected kind ({kind})")
        try:
            obj, unknown = schema.decode(obj, res.definition, kind)
        except schema.DecodeError as e:
            raise errors.bad_request(f'{kind} in version "{res.version}" cannot be handled as a {kind}: {e}')
        problems = [f'duplicate field "{d}"' for d in ctx.duplicates] + [f'unknown field "{u}"' for u in unknown]
        ctx.duplicates = []
        if problems:
            mode = ctx.query.get("fieldValidation", "Warn")
            if mode == "Strict":
                raise errors.bad_request(f'{kind} in version "{res.version}" cannot be handled as a {kind}: strict decoding error: '
                                         + ", ".join(problems))
            if mode == "Warn":
                ctx.warnings.extend(problems)
        obj["apiVersion"], obj["kind"] = res.api_version, kind
        obj = res.decode_in(obj)
        obj.setdefault("metadata", {})
        return obj

    def respond_entry(self, ctx: Context, res: Resource, status: int, ent: Entry) -> Result:
        """A stored object as the response: its stored bytes, unless a table or another version is wanted."""
        if not (res.from_storage and res.version != res.storage_version) and not tables.wants_table(ctx.accept):
            return Result(status, ent.raw, warnings=ctx.warnings)
        return self.respond(ctx, res, status, ent.obj)

    def respond(self, ctx: Context, res: Resource, status: int, obj: dict) -> Result:
        if tables.wants_table(ctx.accept):
            t = tables.table(res, [obj], obj.get("metadata", {}).get("resourceVersion", ""),
                             ctx.query.get("includeObject", "Metadata"))
            return Result(status, encode(t), tables.TABLE_CT, ctx.warnings)
        return Result(status, encode(res.encode_out(obj)), warnings=ctx.warnings)

    def _get_entry(self, res: Resource, ns: str | None, name: str) -> Entry:
        key = res.key(ns, name)
        e = self.store.get(key)
        if e is None:
            why = getattr(self.store, "corrupt", {}).get(key)
            if why:
                raise errors.internal(f"the stored object under {key} is corrupt ({why}); it can only be deleted")
            raise errors.not_found(res.plural, res.group, name)
        return e

    async def _check_namespace(self, res: Resource, ns: str | None, name: str) -> None:
        """NamespaceLifecycle: namespaced objects need an existing namespace that is not terminating."""
        if not res.namespaced or not ns:
            return
        e = self.store.get(f"/registry/namespaces/{ns}")
        if e is None:
            raise errors.not_found("namespaces", "", ns)
        if e.obj.get("metadata", {}).get("deletionTimestamp"):
            raise errors.forbidden_status(res.plural, res.group, name,
                                          f"unable to create new content in namespace {ns} because it is being terminated")

    def _attributes(self, ctx: Context, res: Resource, op: str, obj: dict, old: dict | None) -> Attributes:
        md = obj.get("metadata", {})
        return Attributes(op, res.group, res.plural, ctx.subresource, md.get("namespace") if res.namespaced else None,
                          md.get("name", ""), obj, old, ctx.user, ctx.dry_run, ctx.warnings)

    # ------------------------------------------------------------------ create
    async def create(self, ctx: Context, res: Resource, body: Any) -> Result:
        obj = self.decode_object(ctx, res, body)
        md = obj["metadata"]
        if res.namespaced:
            if md.get("namespace") and ctx.namespace and md["namespace"] != ctx.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ctx.namespace or md.get("namespace", "")
        else:
            md.pop("namespace", None)
        if md.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        await self._check_namespace(res, md.get("namespace"), md.get("name") or md.get("generateName", ""))
        return await self._create_obj(ctx, res, obj)

    async def _create_obj(self, ctx: Context, res: Resource, obj: dict) -> Result:
        md = obj["metadata"]
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = _now()
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            md.pop(f, None)
        if res.kind.generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        if res.kind.defaults:
            res.kind.defaults(obj)
        if self.guard is not None:
            self.guard.check(ctx.user, res, obj, None)
        attrs = self._attributes(ctx, res, "CREATE", obj, None)
        await self.chain.admit(attrs, self.lister)
        generated = not md.get("name") and bool(md.get("generateName"))
        if generated:
            # BeforeCreate: after mutating admission, as upstream (admission messages show the prefix)
            md["name"] = md["generateName"] + "".join(random.choice(GENERATE_CHARS) for _ in range(5))
            attrs.name = md["name"]
        if res.kind.prepare_create:
            res.kind.prepare_create(obj)
        elif res.kind.has_status and res.kind.kind not in ("Node",):
            obj.pop("status", None)
        errs = res.kind.validate(obj)
        if errs:
            raise errors.invalid_object(res.kind.kind, res.group, md.get("name", ""), errs)
        locks = [self.locks.setdefault(k, asyncio.Lock()) for k in self.chain.serialization_keys(attrs, self.lister)]
        for lock in locks:
            await lock.acquire()
        try:
            await self.chain.validate(attrs, self.lister)
            if res.kind.warnings:
                ctx.warnings.extend(res.kind.warnings(obj))
            hook = self.hooks.get((res.group, res.plural))
            if hook is not None:
                await hook.before_create(obj, ctx.dry_run)
            if ctx.dry_run:
                return self.respond(ctx, res, 201, obj)
            for attempt in range(8):
                try:
                    ent = await self.store.create(res.key(md.get("namespace"), md["name"]), obj)
                    break
                except KeyExists:
                    if not generated or attempt == 7:
                        if hook is not None:
                            await hook.undo_create(obj)
                        raise errors.already_exists(res.plural, res.group, md["name"])
                    # RetryGenerateName (GA in 1.32): a generated name that is taken is generated again
                    md["name"] = md["generateName"] + "".join(random.choice(GENERATE_CHARS) for _ in range(5))
            for fn in attrs.after_store:
                await fn()
        finally:
            for lock in reversed(locks):
                lock.release()
        await self._committed(res, obj, attrs)   # obj is what was stored (the store set its resourceVersion)
        return self.respond_entry(ctx, res, 201, ent)

    # ------------------------------------------------------------------ read
    async def consistent(self, rv: str | None) -> None:
        """A read without a resourceVersion is served at the store's latest revision; on etcd that means the
        watch cache first catches up with etcd (several API servers), on SQLite the cache is the store."""
        if not rv and self.fresh is not None:
            await self.fresh()

    async def get(self, ctx: Context, res: Resource) -> Result:
        await self.consistent(ctx.query.get("resourceVersion"))
        ent = self._get_entry(res, ctx.namespace, ctx.name or "")
        if tables.wants_table(ctx.accept):
            return self.respond(ctx, res, 200, ent.obj)
        if res.from_storage and res.version != res.storage_version:
            return Result(200, encode(res.encode_out(ent.obj)))
        return Result(200, ent.raw)

    def _selectors(self, ctx: Context, res: Resource) -> tuple[LabelSelector, FieldSelector]:
        try:
            ls, fs = LabelSelector.parse(ctx.query.get("labelSelector")), FieldSelector.parse(ctx.query.get("fieldSelector"))
            check_field_labels(fs, res.group, res.plural)
            return ls, fs
        except SelectorError as e:
            raise errors.bad_request(str(e))

    def _matching(self, ctx: Context, res: Resource, start: str | None = None, want: int = 0) -> tuple[list[tuple[str, Entry]], int]:
        """(key, entry) pairs matching the request's selectors, in key order, after store key `start`;
        stops after `want` matches when want > 0. Returns (pairs, revision)."""
        ls, fs = self._selectors(ctx, res)
        prefix = res.key_prefix(ctx.namespace)
        name = fs.exact("metadata.name")
        if name is not None and (ctx.namespace or not res.namespaced):
            e = self.store.get(prefix + name)
            items, rev = ([(prefix + name, e)] if e else []), self.store.revision
        else:
            items, rev = self.store.list(prefix)
        if start is not None:
            items = items[bisect.bisect_left(items, (start + "\x00",)):]  # 1-tuple probe: never compares entries
        plain = ls.empty() and fs.empty()
        out = []
        for k, e in items:
            if plain:
                out.append((k, e))
            else:
                o = e.obj
                if ls.matches(o.get("metadata", {}).get("labels")) and fs.matches(o):
                    out.append((k, e))
            if want and len(out) >= want:
                return out, rev
        return out, rev

    async def wait_for_revision(self, rv: str) -> None:
        """A list or watch from a resourceVersion the store has not reached waits for it (up to 3 s, as
        upstream's watch cache), then is refused as upstream refuses it: 504 `Too large resource version`."""
        if rv in ("", "0"):
            return
        want = _parse_rv(rv)
        deadline = time.monotonic() + TOO_LARGE_WAIT
        while self.store.revision < want:
            if time.monotonic() >= deadline:
                raise errors.StatusError(504, "Timeout", f"Too large resource version: {want}, current: {self.store.revision}",
                                         {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                          "retryAfterSeconds": 1})
            await asyncio.sleep(0.05)

    async def list(self, ctx: Context, res: Resource) -> Result:
        params.check_list_options(ctx.query, watch=False)
        await self.wait_for_revision(ctx.query.get("resourceVersion", ""))
        if not ctx.query.get("continue"):
            await self.consistent(ctx.query.get("resourceVersion"))
        limit = params.parse_int("limit", ctx.query.get("limit"))
        cont = ctx.query.get("continue")
        start = None
        if cont:
            try:
                token = orjson.loads(base64.urlsafe_b64decode(cont.encode()))
                start, list_rv = token["start"], token["rv"]
                if not isinstance(start, str) or not isinstance(list_rv, str):
                    raise ValueError("not a continue token of this server")
            except Exception:
                raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        pairs, rev = self._matching(ctx, res, start, limit + 1 if limit > 0 else 0)
        if not cont:
            list_rv = str(rev)
        next_token, remaining = None, None
        if limit > 0 and len(pairs) > limit:
            pairs = pairs[:limit]
            last = pairs[-1][0]
            next_token = base64.urlsafe_b64encode(orjson.dumps({"start": last, "rv": list_rv})).decode()
            if not ctx.query.get("labelSelector") and not ctx.query.get("fieldSelector"):
                # upstream sets remainingItemCount only for unfiltered lists
                all_items, _ = self.store.list(res.key_prefix(ctx.namespace))
                remaining = len(all_items) - bisect.bisect_left(all_items, (last + "\x00",))
        entries = [e for _, e in pairs]
        if tables.wants_table(ctx.accept):
            t = tables.table(res, [e.obj for e in entries], list_rv, ctx.query.get("includeObject", "Metadata"),
                             cont=next_token, remaining=remaining)
            return Result(200, encode(t), tables.TABLE_CT)
        md: dict = {"resourceVersion": list_rv}
        if next_token:
            md["continue"] = next_token
            md["remainingItemCount"] = remaining
        head = encode({"kind": res.kind.kind + "List", "apiVersion": res.api_version, "metadata": md})[:-1]
        if not res.builtin:       # custom kinds keep their type fields in lists, as upstream's CRDs
            untyped = bytes
        else:                     # upstream's typed lists: items without kind / apiVersion
            prefix = b'{"kind":' + encode(res.kind.kind) + b',"apiVersion":' + encode(res.api_version) + b","
            untyped = functools.partial(_untyped, prefix=prefix)
        if res.from_storage and res.version != res.storage_version:
            items = b",".join(untyped(encode(res.encode_out(e.obj))) for e in entries)
        else:
            items = b",".join(untyped(e.raw) for e in entries)
        return Result(200, head + b',"items":[' + items + b"]}")

    # ------------------------------------------------------------------ update
    async def update(self, ctx: Context, res: Resource, body: Any) -> Result:
        obj = self.decode_object(ctx, res, body)
        md = obj["metadata"]
        if md.get("name") and md["name"] != ctx.name:
            raise errors.bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({ctx.name})")
        md["name"] = ctx.name
        if res.namespaced:
            if md.get("namespace") and md["namespace"] != ctx.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ctx.namespace
        else:
            md.pop("namespace", None)
        cur = self.store.get(res.key(ctx.namespace, ctx.name or ""))
        if cur is None:
            if res.kind.create_on_update and ctx.subresource is None:
                md.pop("resourceVersion", None)
                await self._check_namespace(res, ctx.namespace, ctx.name or "")
                return await self._create_obj(ctx, res, obj)
            raise errors.not_found(res.plural, res.group, ctx.name or "")
        rv = md.get("resourceVersion")
        if not rv and not res.kind.unconditional_update:
            raise errors.invalid_object(res.kind.kind, res.group, ctx.name or "",
                                        [errors.invalid("metadata.resourceVersion", errors.GoRepr("0x0"), "must be specified for an update")])
        if rv:
            return await self._update_obj(ctx, res, obj, cur, _parse_rv(rv))

        async def unconditional() -> Result:   # kinds that allow an update without a resourceVersion
            latest = self._get_entry(res, ctx.namespace, ctx.name or "")
            return await self._update_obj(ctx, res, copy.deepcopy(obj), latest, latest.rev)
        return await self._until_applied(unconditional)

    async def _update_obj(self, ctx: Context, res: Resource, obj: dict, cur: Entry, expected: int) -> Result:
        old = cur.obj
        if expected != cur.rev:
            raise errors.conflict(res.plural, res.group, ctx.name or "", errors.MODIFIED)
        new = self._merge_system_fields(ctx, res, obj, old)
        if res.kind.defaults and ctx.subresource is None:
            res.kind.defaults(new)
        if self.guard is not None:
            self.guard.check(ctx.user, res, new, old)
        attrs = self._attributes(ctx, res, "UPDATE", new, old)
        await self.chain.admit(attrs, self.lister)
        errs = res.kind.check_update(new, old, ctx.subresource)
        if errs:
            raise errors.invalid_object(res.kind.kind, res.group, ctx.name or "", errs)
        await self.chain.validate(attrs, self.lister)
        if res.kind.warnings:
            ctx.warnings.extend(res.kind.warnings(new))
        hook = self.hooks.get((res.group, res.plural)) if ctx.subresource is None else None
        if hook is not None:
            await hook.before_update(new, old, ctx.dry_run)
        if ctx.dry_run:
            return self.respond(ctx, res, 200, new)
        key = res.key(ctx.namespace, ctx.name or "")
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and \
                not (res.kind.kind == "Pod" and old["metadata"].get("deletionTimestamp") and new["metadata"].get("deletionGracePeriodSeconds")) and \
                not (res.kind.kind == "Namespace" and (new.get("spec") or {}).get("finalizers")):
            try:
                ent = await self.store.delete(key, expected)
            except RevisionConflict:
                raise errors.conflict(res.plural, res.group, ctx.name or "", errors.MODIFIED)
            except KeyNotFound:
                raise errors.not_found(res.plural, res.group, ctx.name or "")
            await self.committed(res, ent.obj, True)
            return self.respond(ctx, res, 200, ent.obj)
        if new == old:
            return self.respond(ctx, res, 200, old)
        try:
            ent = await self.store.update(key, new, expected)
        except RevisionConflict:
            raise errors.conflict(res.plural, res.group, ctx.name or "", errors.MODIFIED)
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, ctx.name or "")
        if hook is not None:
            await hook.after_update(new, old)
        await self._committed(res, new, attrs)   # new is what was stored
        return self.respond_entry(ctx, res, 200, ent)

    def _merge_system_fields(self, ctx: Context, res: Resource, obj: dict, old: dict) -> dict:
        if ctx.subresource in res.kind.subresource_updates:
            new = res.kind.subresource_updates[ctx.subresource][0](obj, old)
        elif ctx.subresource == "status":
            new = orjson.loads(orjson.dumps(old))
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            if res.kind.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if res.kind.prepare_update:
                res.kind.prepare_update(new, old)
        md, omd = new.setdefault("metadata", {}), old.get("metadata", {})
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in omd:
                md[f] = omd[f]
            else:
                md.pop(f, None)
        md.pop("managedFields", None)
        for f in ("labels", "annotations", "ownerReferences", "finalizers"):   # omitempty: [] and {} are not stored
            if f in md and not md[f]:
                del md[f]
        md["resourceVersion"] = omd.get("resourceVersion")
        if omd.get("deletionTimestamp"):
            # finalizers may only be removed from an object being deleted
            added = [f for f in md.get("finalizers") or [] if f not in (omd.get("finalizers") or [])]
            if added:
                raise errors.invalid_object(res.kind.kind, res.group, ctx.name or "",
                                            [errors.forbidden("metadata.finalizers", f"no new finalizers can be added if the object is being deleted, found new finalizers {orjson.dumps(added).decode()}")])
        if res.kind.generation and ctx.subresource != "status":
            if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {k: v for k, v in old.items() if k not in ("metadata", "status")}:
                md["generation"] = omd.get("generation", 1) + 1
        return new

    @staticmethod
    async def _until_applied(attempt, pinned: bool = False) -> Result:
        """attempt() again while it meets a write conflict, as upstream's GuaranteedUpdate (concurrent
        `kubectl label` / `annotate` / `scale` must all succeed): for up to RETRY_FOR seconds, with a short
        growing jitter; a request that pins a resourceVersion gets its 409 at once."""
        deadline = time.monotonic() + RETRY_FOR
        for n in itertools.count(1):
            try:
                return await attempt()
            except StatusError as e:
                if pinned or e.code != 409 or e.reason != "Conflict" or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(random.uniform(0, min(0.01, 0.0005 * n)))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ patch
    async def patch(self, ctx: Context, res: Resource, ctype: str, body: bytes) -> Result:
        ctype = ctype.split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            raise errors.unsupported_media_type(ctype)
        try:
            p = _load_patch(ctype, body)
        except limits.LimitError as e:
            raise errors.StatusError(422, "Invalid", str(e))
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}")
        # without a resourceVersion a patch is retried until it applies; only a pinned one may get 409
        pinned = bool(isinstance(p, dict) and isinstance(p.get("metadata"), dict) and p["metadata"].get("resourceVersion"))
        warnings_before = len(ctx.warnings)

        async def attempt() -> Result:
            del ctx.warnings[warnings_before:]
            cur = self.store.get(res.key(ctx.namespace, ctx.name or ""))
            if cur is None:
                if ctype == "application/apply-patch+yaml":
                    # created under the URL's name only (a body naming another object must not create it)
                    md = p.get("metadata") if isinstance(p, dict) else None
                    if isinstance(md, dict) and md.get("name") and md["name"] != ctx.name:
                        raise errors.bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({ctx.name})")
                    if isinstance(p, dict):
                        p.setdefault("metadata", {})
                        if isinstance(p["metadata"], dict):
                            p["metadata"]["name"] = ctx.name
                    return await self.create(ctx, res, p)
                raise errors.not_found(res.plural, res.group, ctx.name or "")
            current = res.encode_out(cur.copy())
            try:
                if ctype == "application/json-patch+json":
                    patched = patchlib.json_patch(current, p)
                elif ctype == "application/merge-patch+json":
                    patched = patchlib.merge_patch(current, p)
                else:
                    if ctype == "application/apply-patch+yaml":
                        if isinstance(p, dict) and p.get("kind") and p.get("kind") != res.kind.kind:
                            raise errors.bad_request(f"the kind in the data ({p.get('kind')}) does not match the expected kind ({res.kind.kind})")
                    patched = patchlib.strategic_merge_patch(current, p, res.definition)
                limits.check(patched)
            except (patchlib.PatchError, limits.LimitError) as e:
                raise errors.StatusError(422, "Invalid", str(e))
            if not isinstance(patched, dict):
                raise errors.bad_request("patch did not produce an object")
            sub = {"resourceVersion": patched.get("metadata", {}).get("resourceVersion")}
            obj = self.decode_object(ctx, res, patched)
            if obj["metadata"].get("name") != ctx.name:
                raise errors.bad_request(f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL ({ctx.name})")
            expected = _parse_rv(sub["resourceVersion"]) if pinned else cur.rev
            return await self._update_obj(ctx, res, obj, cur, expected)
        return await self._until_applied(attempt, pinned)

    # ------------------------------------------------------------------ delete
    async def delete(self, ctx: Context, res: Resource, body: Any) -> Result:
        opts = params.delete_options(body)
        if ctx.query.get("gracePeriodSeconds"):
            opts["gracePeriodSeconds"] = params.parse_int("gracePeriodSeconds", ctx.query["gracePeriodSeconds"])
        if ctx.query.get("propagationPolicy"):
            opts["propagationPolicy"] = ctx.query["propagationPolicy"]
        if ctx.query.get("orphanDependents"):
            opts["orphanDependents"] = parse_bool(ctx.query["orphanDependents"])
        errs = gc.validate_delete_options(opts)
        if errs:
            raise errors.invalid_object("DeleteOptions", "meta.k8s.io", "", errs)
        key = res.key(ctx.namespace, ctx.name or "")
        if self.store.get(key) is None and key in getattr(self.store, "corrupt", {}):
            # a value that does not parse can only be removed (upstream 1.32:
            # ignoreStoreReadErrorWithClusterBreakingPotential; here a plain delete does it, nothing can read it anyway)
            if not ctx.dry_run:
                await self.store.delete(key)
            return Result(200, encode({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                       "details": {"name": ctx.name, "group": res.group, "kind": res.plural}}))
        if "dryRun" in opts and "All" in (opts.get("dryRun") or []):
            ctx.query["dryRun"] = "All"
        pre = opts.get("preconditions") or {}
        # as upstream's storage Delete: the object changing meanwhile (a controller's status write) is no reason to
        # refuse; read it again and go on while the caller's own preconditions hold, for up to RETRY_FOR seconds
        deadline = time.monotonic() + RETRY_FOR
        for n in itertools.count(1):
            cur = self._get_entry(res, ctx.namespace, ctx.name or "")
            if pre.get("uid") and pre["uid"] != cur.obj["metadata"].get("uid"):
                raise errors.conflict(res.plural, res.group, ctx.name or "",
                                      f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {cur.obj['metadata'].get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur.obj["metadata"].get("resourceVersion"):
                raise errors.conflict(res.plural, res.group, ctx.name or "",
                                      f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {cur.obj['metadata'].get('resourceVersion')}")
            try:
                return await self._delete_entry(ctx, res, cur, opts)
            except StatusError as e:
                if e.code != 409 or e.reason != "Conflict" or pre.get("resourceVersion") or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(random.uniform(0, min(0.01, 0.0005 * n)))
        raise AssertionError("unreachable")

    async def _delete_entry(self, ctx: Context, res: Resource, cur: Entry, opts: dict) -> Result:
        obj = cur.copy()
        md = obj["metadata"]
        key = res.key(md.get("namespace"), md["name"])
        grace = self._grace_period(res, obj, opts)
        gc_changed = res.kind.kind != "Namespace" and gc.apply_propagation(md, gc.propagation_policy(opts))
        if md.get("finalizers") or grace is not None:
            if gc_changed or not md.get("deletionTimestamp") or (grace is not None and grace < (md.get("deletionGracePeriodSeconds") or 0)):
                if not md.get("deletionTimestamp") or (grace is not None and grace < (md.get("deletionGracePeriodSeconds") or 0)):
                    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace or 0)
                    md["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                    md["deletionGracePeriodSeconds"] = grace or 0
                if res.kind.kind == "Namespace":
                    obj.setdefault("status", {})["phase"] = "Terminating"
                if ctx.dry_run:
                    return self.respond(ctx, res, 200, obj)
                try:
                    ent = await self.store.update(key, obj, cur.rev)
                except RevisionConflict:
                    raise errors.conflict(res.plural, res.group, md["name"], errors.MODIFIED)
                return self.respond(ctx, res, 200, ent.obj)
            return self.respond(ctx, res, 200, cur.obj)
        if ctx.dry_run:
            ent_obj = cur.obj
        else:
            try:
                ent_obj = (await self.store.delete(key, cur.rev)).obj
            except (RevisionConflict, KeyNotFound):
                raise errors.conflict(res.plural, res.group, md["name"], errors.MODIFIED)
            await self.committed(res, ent_obj, True)
        if res.kind.kind == "Pod":
            return self.respond(ctx, res, 200, ent_obj)
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
              "details": {"name": md["name"], **({"group": res.group} if res.group else {}), "kind": res.plural, "uid": md.get("uid")}}
        return Result(200, encode(st), warnings=ctx.warnings)

    def _grace_period(self, res: Resource, obj: dict, opts: dict) -> int | None:
        if res.kind.kind == "Namespace":
            # through termination while the `kubernetes` finalizer asks the namespace controller to empty it first
            return 0 if (obj.get("spec") or {}).get("finalizers") else None
        if res.kind.kind != "Pod":
            return None
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or st.get("phase") in ("Succeeded", "Failed"):
            return None
        g = opts.get("gracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return None if g == 0 else max(int(g), 1)

    async def finalize(self, ctx: Context, res: Resource, body: Any) -> Result:
        """PUT namespaces/NAME/finalize: only spec.finalizers changes; a namespace being deleted whose
        finalizers are all gone is removed (what the namespace controller does last)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a Namespace")
        fins = (body.get("spec") or {}).get("finalizers") or []
        if not isinstance(fins, list) or not all(isinstance(f, str) for f in fins):
            raise errors.bad_request("spec.finalizers must be a list of strings")
        errs = [errors.invalid(f"spec.finalizers[{i}]", f, m) for i, f in enumerate(fins)
                for m in names.qualified_name(f) if f != "kubernetes"]
        if errs:
            raise errors.invalid_object("Namespace", "", ctx.name or "", errs)
        cur = self._get_entry(res, None, ctx.name or "")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and _parse_rv(rv) != cur.rev:
            raise errors.conflict(res.plural, res.group, ctx.name or "", errors.MODIFIED)
        obj = cur.copy()
        obj.setdefault("spec", {})["finalizers"] = fins
        if not fins:
            obj["spec"].pop("finalizers")
        key = res.key(None, ctx.name or "")
        if ctx.dry_run:
            return self.respond(ctx, res, 200, obj)
        try:
            if obj["metadata"].get("deletionTimestamp") and not fins and not obj["metadata"].get("finalizers"):
                ent = await self.store.delete(key, cur.rev)
                await self.committed(res, ent.obj, True)
                return self.respond(ctx, res, 200, obj)
            ent = await self.store.update(key, obj, cur.rev)
        except (RevisionConflict, KeyNotFound):
            raise errors.conflict(res.plural, res.group, ctx.name or "", errors.MODIFIED)
        return self.respond_entry(ctx, res, 200, ent)

    async def committed(self, res: Resource, obj: dict, deleted: bool) -> None:
        """Hook: an object was stored or removed (set by the server: constraint kinds follow templates, Services
        free their addresses)."""

    async def _committed(self, res: Resource, obj: dict, attrs: Attributes) -> None:
        for ev in attrs.events:
            await self.record_event(obj, **ev)
        await self.committed(res, obj, False)

    async def record_event(self, obj: dict, reason: str, message: str, type: str = "Normal", component: str = "") -> None:
        """A core/v1 Event about `obj`, as the component that noticed it would post it."""
        md = obj.get("metadata", {})
        ns = md.get("namespace") or "default"
        now = _now()
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{md.get('name', '')}.{meta.new_uid()[-16:]}", "namespace": ns, "uid": meta.new_uid(),
                           "creationTimestamp": now},
              "involvedObject": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": md.get("name", ""),
                                 **({"namespace": md["namespace"]} if md.get("namespace") else {}),
                                 "uid": md.get("uid", ""), "resourceVersion": md.get("resourceVersion", "")},
              "reason": reason, "message": message, "type": type,
              "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
              "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.store.create(f"/registry/events/{ns}/{ev['metadata']['name']}", ev)
        except KeyExists:
            pass

    async def delete_collection(self, ctx: Context, res: Resource, body: Any) -> Result:
        opts = params.delete_options(body)
        pairs, rev = self._matching(ctx, res)
        entries = [e for _, e in pairs]
        deleted = []
        for e in entries:
            try:
                r = await self._delete_entry(ctx, res, e, opts)
            except StatusError as err:
                if err.code in (404, 409):
                    continue
                raise
            if r.status == 200:
                deleted.append(res.encode_out(e.obj))
        return Result(200, encode({"kind": res.kind.kind + "List", "apiVersion": res.api_version,
                                   "metadata": {"resourceVersion": str(self.store.revision)}, "items": deleted}))

    # ------------------------------------------------------------------ subresources
    async def binding(self, ctx: Context, res: Resource, body: Any) -> Result:
        if not isinstance(body, dict) or not (body.get("target") or {}).get("name"):
            raise errors.invalid_object("Binding", "", ctx.name or "", [errors.required("target.name")])
        node = body["target"]["name"]
        for _ in range(8):
            cur = self._get_entry(res, ctx.namespace, ctx.name or "")
            pod = cur.copy()
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", "", ctx.name or "", f"pod {ctx.name} is being deleted, cannot be assigned to a host")
            if pod.get("spec", {}).get("nodeName"):
                raise errors.conflict("pods/binding", "", ctx.name or "",
                                      f'pod {ctx.name} is already assigned to node "{pod["spec"]["nodeName"]}"')
            pod["spec"]["nodeName"] = node
            conds = [c for c in pod.setdefault("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": _now()})
            pod["status"]["conditions"] = conds
            if ctx.dry_run:
                break
            try:
                await self.store.update(res.key(ctx.namespace, ctx.name or ""), pod, cur.rev)
                break
            except RevisionConflict:
                continue
        else:
            raise errors.conflict("pods/binding", "", ctx.name or "", errors.MODIFIED)
        return Result(201, encode({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))

    def scale_of(self, obj: dict) -> dict:
        md = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
                "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                           "selector": LabelSelector.from_object(
                               {"matchLabels": obj.get("spec", {}).get("selector") or {}} if obj.get("kind") == "ReplicationController"
                               else obj.get("spec", {}).get("selector")).to_string()}}

    async def scale(self, ctx: Context, res: Resource, ctype: str | None, body: Any) -> Result:
        """GET / PUT / PATCH of the scale subresource; `kubectl scale` (no resourceVersion) retries on conflicts."""
        pinned = ctx.method == "PUT" and isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))
        return await self._until_applied(
            lambda: self._scale_once(ctx, res, ctype, copy.deepcopy(body) if isinstance(body, dict) else body), pinned)

    async def _scale_once(self, ctx: Context, res: Resource, ctype: str | None, body: Any) -> Result:
        cur = self._get_entry(res, ctx.namespace, ctx.name or "")
        if ctx.method == "GET":
            return Result(200, encode(self.scale_of(cur.obj)))
        current = self.scale_of(cur.obj)
        if ctx.method == "PATCH":
            try:
                p = _load_patch(ctype.split(";")[0] if ctype else "application/merge-patch+json", body)
                new = patchlib.json_patch(current, p) if ctype and "json-patch" in ctype else patchlib.merge_patch(current, p)
            except (limits.LimitError, patchlib.PatchError) as e:
                raise errors.StatusError(422, "Invalid", str(e))
            except ValueError as e:
                raise errors.bad_request(f"error decoding patch: {e}")
            if not isinstance(new, dict):
                raise errors.bad_request("patch did not produce an object")
        else:
            new = body if isinstance(body, dict) else {}
        replicas = (new.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid_object("Scale", "autoscaling", ctx.name or "",
                                        [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
        obj = cur.copy()
        obj["spec"]["replicas"] = replicas
        rv = (new.get("metadata") or {}).get("resourceVersion")
        ctx.subresource = "scale"
        r = await self._update_obj(ctx, res, obj, cur, _parse_rv(rv) if rv and ctx.method == "PUT" else cur.rev)
        return Result(200, encode(self.scale_of(orjson.loads(r.body) if r.content_type == "application/json" else obj)))

    # ------------------------------------------------------------------ watch
    def open_watch(self, ctx: Context, res: Resource):
        """Returns (initial events, store watcher, selectors) for a watch request."""
        ls, fs = self._selectors(ctx, res)
        rv = ctx.query.get("resourceVersion", "")
        prefix = res.key_prefix(ctx.namespace)
        if ctx.name:
            fs = FieldSelector(fs.reqs + [FieldRequirement("metadata.name", "=", ctx.name)])
        initial: list[tuple[str, Entry]] = []
        if rv in ("", "0"):
            items, rev = self.store.list(prefix)
            initial = [("ADDED", e) for _, e in items if ls.matches(e.obj.get("metadata", {}).get("labels")) and fs.matches(e.obj)]
            watcher = self.store.watch(prefix, rev)
        else:
            try:
                watcher = self.store.watch(prefix, _parse_rv(rv))
            except Compacted as e:
                return None, e, (ls, fs)
        return initial, watcher, (ls, fs)


def _parse_rv(rv: Any) -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except (TypeError, ValueError):
        raise errors.bad_request(f'resourceVersion: Invalid value: "{rv}": must be a valid resource version')


def _load_patch(ctype: str, body: bytes | Any) -> Any:
    """A patch body, within the limits (depth, YAML aliases, JSON patch operations): ValueError when it is
    not one, limits.LimitError / StatusError(413) when it is too much."""
    if not isinstance(body, (bytes, bytearray)):
        limits.check(body)
        return body
    if ctype == "application/apply-patch+yaml":
        import yaml
        try:
            return limits.load_yaml(body)
        except yaml.YAMLError as e:
            raise ValueError(str(e))
    p = limits.load_json(body)
    if ctype == "application/json-patch+json" and isinstance(p, list) and len(p) > limits.MAX_JSON_PATCH_OPS:
        raise errors.too_large_msg(f"The allowed maximum operations in a JSON patch is {limits.MAX_JSON_PATCH_OPS}, got {len(p)}")
    return p
