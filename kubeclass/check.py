"""`kubeclass check -f MANIFESTS... [--cluster | --nodes NODE_YAMLS [--runtime-config FILES]] [-o json]`: will these
Pods run, and where? Answered before anything is deployed, with the very code that would decide it.

A scratch API server (this package's own, on a throw-away SQLite file, in this process) is loaded with the cluster's
state: copied from the live cluster (--cluster: namespaces, nodes, RuntimeClasses, LimitRanges, ResourceQuotas,
ServiceAccounts, Kyverno and Gatekeeper policies, and the Pods that hold resources), or made of the given Node
descriptions (--nodes, their runtime handlers from --runtime-config: a containerd config.toml or CRI-O crio.conf).
The manifests are then applied to it in order, as `kubectl apply -f` would: their RuntimeClasses, namespaces and
policies first take effect; each Pod goes through the whole admission chain (RuntimeClass lookup and overhead,
LimitRange, quota, Pod Security, Kyverno, Gatekeeper) and so gets the API server's own answer, word for word; a
workload's Pod is made from its template as its controller would make it (a Deployment's through its ReplicaSet).
Each admitted Pod then goes through the scheduler's filters and scores against the nodes, and is assumed onto the
node chosen, so replicas and later Pods see the room it takes.

Printed per workload: admitted or refused (the message), the RuntimeClass, its handler and overhead with the
request arithmetic, each node's verdict (handler missing, selector, taint, resources with overhead) and where each
replica would go. Exit code 1 when any would be refused or left Pending, 2 on bad input."""
from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
import tempfile

import yaml

from .api import quantity, registry
from .api.errors import StatusError

WORKLOADS = {"Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController"}
# applied before the workloads, in this order, whatever their place in the files (as a user applies a directory)
CONTEXT_ORDER = ["Namespace", "PriorityClass", "RuntimeClass", "ServiceAccount", "ConfigMap", "Secret", "LimitRange",
                 "ResourceQuota", "ClusterPolicy", "Policy", "ConstraintTemplate", "Node"]
CLUSTER_STATE = [("", "v1", "namespaces"), ("", "v1", "nodes"), ("node.k8s.io", "v1", "runtimeclasses"),
                 ("scheduling.k8s.io", "v1", "priorityclasses"), ("", "v1", "serviceaccounts"), ("", "v1", "limitranges"),
                 ("", "v1", "resourcequotas"), ("kyverno.io", "v1", "clusterpolicies"), ("kyverno.io", "v1", "policies"),
                 ("templates.gatekeeper.sh", "v1", "constrainttemplates"), ("", "v1", "pods")]


class CheckError(Exception):
    """Bad input: unreadable manifests or node descriptions."""


def load_manifests(paths: list[str]) -> list[dict]:
    docs: list[dict] = []
    for p in paths:
        files = [p] if not os.path.isdir(p) else sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith((".yaml", ".yml", ".json")))
        for f in files:
            try:
                text = sys.stdin.read() if f == "-" else open(f).read()
                for d in yaml.safe_load_all(text):
                    if d is None:
                        continue
                    if not isinstance(d, dict) or "kind" not in d:
                        raise CheckError(f"{f}: a document without kind")
                    docs.extend(d.get("items") or [] if d["kind"].endswith("List") else [d])
            except (OSError, yaml.YAMLError) as e:
                raise CheckError(f"{f}: {e}") from None
    return docs


def _gvr(obj: dict):
    av = obj.get("apiVersion", "")
    g, _, v = av.rpartition("/")
    return registry.BY_GVK.get((g, v, obj.get("kind", "")))


def _path(res, ns: str | None, name: str | None = None) -> str:
    base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
    if res.namespaced:
        base += f"/namespaces/{ns or 'default'}"
    return f"{base}/{res.plural}" + (f"/{name}" if name else "")


def handler_entries(names) -> list[dict]:
    return [{"name": n, "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}} for n in sorted(names)] + \
        [{"name": "", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}]


class Scratch:
    """The API server and store the check runs against."""

    async def open(self) -> "Scratch":
        from .api import schema
        from .server.app import APIServer
        from .server.auth import TokenFile
        from .store.sqlite import SQLiteStore
        schema.definitions()
        self.dir = tempfile.mkdtemp(prefix="kubeclass-check-")
        self.store = SQLiteStore(os.path.join(self.dir, "check.db"))
        tokens = TokenFile(os.path.join(self.dir, "tokens.csv"))
        self.token = tokens.add("admin", ["system:masters"])
        self.api = APIServer(self.store, tokens)
        await self.api.start()
        return self

    async def close(self) -> None:
        import shutil
        await self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def call(self, method: str, path: str, obj: dict | None = None, query: dict | None = None) -> tuple[int, dict, list[str]]:
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json", "accept": "application/json"}
        body = json.dumps(obj).encode() if obj is not None else b""

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        try:
            r = await self.api.handle(method, path, query or {}, headers, body, receive, None)
        except StatusError as e:
            return e.code, e.status(), []
        return r.status, json.loads(r.body) if r.body else {}, list(r.warnings)

    async def put_raw(self, obj: dict) -> None:
        """An object of the cluster's current state, stored as it is (not admitted again)."""
        res = _gvr(obj)
        if res is None:
            return
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.pop("resourceVersion", None)
        key = res.key(md.get("namespace") if res.namespaced else None, md["name"])
        if self.store.get(key) is None:
            await self.store.create(key, obj)

    def objects(self, group: str, version: str, plural: str) -> list[dict]:
        res = registry.BY_PATH[(group, version, plural)]
        return self.store.list_objects(res.key_prefix(None))


async def copy_cluster(scratch: Scratch, client) -> None:
    for g, v, plural in CLUSTER_STATE:
        path = f"/api/{v}/{plural}" if not g else f"/apis/{g}/{v}/{plural}"
        try:
            items = (await client.list(path))["items"]
        except Exception:   # a group the cluster does not serve
            continue
        res = registry.BY_PATH.get((g, v, plural))
        for it in items:
            it.setdefault("apiVersion", f"{g}/{v}" if g else v)
            it.setdefault("kind", res.kind.kind if res else "")
            if plural == "pods" and (it.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            await scratch.put_raw(it)
        if plural == "constrainttemplates":
            await scratch.api.constraint_kinds.sync()
            for t in items:
                kind = ((((t.get("spec") or {}).get("crd") or {}).get("spec") or {}).get("names") or {}).get("kind", "")
                try:
                    cs = (await client.list(f"/apis/constraints.gatekeeper.sh/v1beta1/{kind.lower()}"))["items"]
                except Exception:
                    continue
                for c in cs:
                    c.setdefault("apiVersion", "constraints.gatekeeper.sh/v1beta1")
                    c.setdefault("kind", kind)
                    await scratch.put_raw(c)


def load_nodes(paths: list[str], runtime_configs: list[str]) -> list[dict]:
    names: set[str] = set()
    if runtime_configs:
        from .node import handlers
        for rc in runtime_configs:
            try:
                names |= set(handlers.load(rc, search_path="/nonexistent").handlers)
            except (handlers.ConfigError, OSError) as e:
                raise CheckError(f"{rc}: {e}") from None
    nodes = [d for d in load_manifests(paths) if d.get("kind") == "Node"]
    if not nodes:
        raise CheckError(f"no Node in {', '.join(paths)}")
    for n in nodes:
        n.setdefault("apiVersion", "v1")
        st = n.setdefault("status", {})
        if names and not st.get("runtimeHandlers"):
            st["runtimeHandlers"] = handler_entries(names)
        st.setdefault("allocatable", st.get("capacity") or {"cpu": "4", "memory": "16Gi", "pods": "110"})
        st.setdefault("capacity", st["allocatable"])
        st.setdefault("conditions", [{"type": "Ready", "status": "True"}])
    return nodes


# ------------------------------------------------------------------------------------------ the verdicts
def _requests(pod: dict) -> dict:
    """The containers' summed requests (exact fractions)."""
    tot: dict = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        for r, q in ((c.get("resources") or {}).get("requests") or {}).items():
            tot[r] = quantity.value(q) + tot.get(r, 0)
    return tot


def _fmt(r: str, v) -> str:
    v = quantity.value(v) if isinstance(v, str) else v
    if r == "cpu":
        return f"{int(v * 1000)}m"
    if r == "memory" and v % (1 << 20) == 0:
        return f"{int(v) >> 20}Mi"
    return str(int(v)) if v == int(v) else str(v)


def arithmetic(pod: dict) -> list[str]:
    """"cpu 100m + 50m overhead = 150m" per resource the Pod requests or its overhead names."""
    ctr = _requests(pod)
    oh = {r: quantity.value(v) for r, v in ((pod.get("spec") or {}).get("overhead") or {}).items()}
    out = []
    for r in sorted(set(ctr) | set(oh)):
        if r in oh:
            out.append(f"{r} {_fmt(r, ctr.get(r, 0))} + {_fmt(r, oh[r])} overhead = {_fmt(r, ctr.get(r, 0) + oh[r])}")
        else:
            out.append(f"{r} {_fmt(r, ctr[r])}")
    return out


def _template_pods(scratch_obj: dict, kind: str) -> tuple[dict, int]:
    """The Pod a workload's controller would create first, and how many it wants."""
    from .controllers.replicaset import pod_from_template
    spec = scratch_obj.get("spec") or {}
    if kind == "CronJob":
        job = {"metadata": {"name": scratch_obj["metadata"]["name"], "namespace": scratch_obj["metadata"]["namespace"],
                            "uid": scratch_obj["metadata"].get("uid", "")},
               "spec": ((spec.get("jobTemplate") or {}).get("spec") or {})}
        return pod_from_template(job, "batch/v1", "Job"), 1
    api_version = scratch_obj.get("apiVersion", "apps/v1")
    pod = pod_from_template(scratch_obj, api_version, kind)
    n = 1 if kind == "DaemonSet" else (spec.get("parallelism", 1) if kind == "Job" else spec.get("replicas", 1))
    return pod, int(n if n is not None else 1)


class Checker:
    def __init__(self, scratch: Scratch):
        self.s = scratch
        self.cache = None
        self.handlers: dict[str, str] = {}

    def _scheduler(self):
        from .scheduler.nodeinfo import cluster_cache
        from .scheduler.scheduler import Options, build_framework
        self.handlers = {rc["metadata"]["name"]: rc.get("handler", "") for rc in self.s.objects("node.k8s.io", "v1", "runtimeclasses")}
        if self.cache is None:
            self.cache = cluster_cache(self.s.objects("", "v1", "nodes"), self.s.objects("", "v1", "pods"))
        return build_framework(self.handlers, Options())

    async def apply_context(self, doc: dict) -> dict | None:
        """Create or replace a context object; a refusal is reported like a workload's."""
        res = _gvr(doc)
        if res is None:
            return {"kind": doc.get("kind"), "name": (doc.get("metadata") or {}).get("name", ""), "admitted": False,
                    "message": f'no matches for kind "{doc.get("kind")}" in version "{doc.get("apiVersion")}"'}
        md = doc.get("metadata") or {}
        ns = md.get("namespace") or ("default" if res.namespaced else None)
        if doc.get("kind") == "Node":
            if self.s.store.get(res.key(None, md.get("name", ""))) is None:
                await self.s.put_raw(doc)
            self.cache = None
            return None
        status, body, _ = await self.s.call("POST", _path(res, ns), doc)
        if status == 409:   # already in the cluster: replaced, as apply would
            cur = self.s.store.get(res.key(ns if res.namespaced else None, md.get("name", "")))
            new = copy.deepcopy(doc)
            new.setdefault("metadata", {})["resourceVersion"] = cur.obj["metadata"]["resourceVersion"] if cur else ""
            status, body, _ = await self.s.call("PUT", _path(res, ns, md.get("name")), new)
        if doc.get("kind") == "ConstraintTemplate":
            await self.s.api.constraint_kinds.sync()
        if status >= 300:
            return {"kind": doc.get("kind"), "namespace": ns or "", "name": md.get("name", ""), "admitted": False,
                    "message": body.get("message", "")}
        return None

    async def workload(self, doc: dict) -> dict:
        kind = doc.get("kind", "")
        md = doc.get("metadata") or {}
        ns = md.get("namespace") or "default"
        out: dict = {"kind": kind, "namespace": ns, "name": md.get("name") or md.get("generateName", ""), "warnings": []}
        res = _gvr(doc)
        if res is None:
            return {**out, "admitted": False, "message": f'no matches for kind "{kind}" in version "{doc.get("apiVersion")}"'}
        status, body, warnings = await self.s.call("POST", _path(res, ns), doc)
        out["warnings"] += warnings
        if status >= 300:
            return {**out, "admitted": False, "message": body.get("message", "")}
        replicas = 1
        if kind != "Pod":
            owner = body
            if kind == "Deployment":   # the Deployment controller's ReplicaSet, then its Pod
                from .api import rollout
                rs = rollout.build_new_rs(body, 1, int((body.get("spec") or {}).get("replicas", 1)))
                status, owner, w = await self.s.call("POST", _path(registry.BY_PATH[("apps", "v1", "replicasets")], ns), rs)
                out["warnings"] += w
                if status >= 300:
                    return {**out, "admitted": False, "message": owner.get("message", "")}
                kind_for_pod = "ReplicaSet"
            else:
                kind_for_pod = kind
            pod, replicas = _template_pods(owner, kind_for_pod)
            pods = []
            for i in range(max(1, min(replicas, 200))):   # each replica through admission: quota counts them all
                status, body, w = await self.s.call("POST", f"/api/v1/namespaces/{ns}/pods", pod)
                out["warnings"] += [x for x in w if x not in out["warnings"]]
                if status >= 300:   # the controller's FailedCreate event: "Error creating: <this>"
                    if not pods:
                        return {**out, "admitted": False, "replicas": replicas, "message": body.get("message", "")}
                    out["message_partial"] = f"replica {i + 1} of {replicas} refused: {body.get('message', '')}"
                    break
                pods.append(body)
        else:
            pods = [body]
        out.update(admitted=True, replicas=replicas, admittedReplicas=len(pods))
        return self._schedule(out, pods)

    def _schedule(self, out: dict, pods: list[dict]) -> dict:
        from .scheduler.framework import FitError
        from .scheduler.nodeinfo import PodInfo
        fw = self._scheduler()
        spec = pods[0].get("spec") or {}
        rc = spec.get("runtimeClassName")
        out.update(runtimeClass=rc or "", handler=self.handlers.get(rc, "") if rc else "", overhead=spec.get("overhead") or {},
                   requests=arithmetic(pods[0]), placement=[], schedulable=True, message="", nodes={})
        for i, p in enumerate(pods):
            if (p.get("spec") or {}).get("nodeName"):
                out["placement"].append(p["spec"]["nodeName"])
                continue
            try:
                _, result = fw.schedule(self.cache, PodInfo.of(p), explain=True)
            except FitError as e:
                if i == 0:
                    out["nodes"] = self._verdicts(getattr(e, "verdicts", {}), None)
                out.update(schedulable=False, message=e.message())
                break
            if i == 0:
                out["nodes"] = self._verdicts(result.verdicts, result.node)
            out["placement"].append(result.node)
            self.cache.add_pod(p, result.node, assumed=True)
        if "message_partial" in out:
            out["schedulable"] = False
            out["message"] = (out["message"] + "; " if out["message"] else "") + out.pop("message_partial")
        return out

    def _verdicts(self, verdicts: dict, chosen: str | None) -> dict:
        out = {}
        for node, v in sorted(verdicts.items()):
            failed = [(plugin, r) for plugin, r in v.items() if r != "passed"]
            if failed:
                out[node] = {"fits": False, "reason": f"{failed[0][0]}: {failed[0][1]}"}
            else:
                out[node] = {"fits": True, "chosen": node == chosen}
        return out


def render(results: list[dict], out) -> None:
    for r in results:
        where = f"{r['namespace']}/{r['name']}" if r.get("namespace") else r["name"]
        reps = f" ({r['replicas']} replicas)" if r.get("replicas", 1) > 1 else ""
        if not r.get("admitted"):
            out.write(f"{r['kind']} {where}{reps}: REFUSED\n  {r['message']}\n")
            for w in r.get("warnings") or []:
                out.write(f"  warning: {w}\n")
            continue
        rc = r.get("runtimeClass") or ""
        cls = f"RuntimeClass {rc} (handler {r['handler'] or 'default'})" if rc else "no RuntimeClass (the node's default handler)"
        verdict = "schedulable" if r.get("schedulable") else "PENDING"
        out.write(f"{r['kind']} {where}{reps}: admitted, {verdict}; {cls}\n")
        if r.get("requests"):
            out.write(f"  requests: {'; '.join(r['requests'])}\n")
        for w in r.get("warnings") or []:
            out.write(f"  warning: {w}\n")
        for node, v in (r.get("nodes") or {}).items():
            if v["fits"]:
                h = r["handler"] or "default"
                out.write(f"  {node}: fits, would run it with handler {h}{'  <- chosen' if v.get('chosen') else ''}\n")
            else:
                out.write(f"  {node}: does not fit: {v['reason']}\n")
        if r.get("schedulable"):
            out.write(f"  placement: {', '.join(r['placement'])}\n")
        else:
            out.write(f"  scheduler: {r['message']}\n")


async def check(docs: list[dict], client=None, nodes: list[dict] | None = None) -> list[dict]:
    scratch = await Scratch().open()
    try:
        if client is not None:
            await copy_cluster(scratch, client)
        for n in nodes or []:
            await scratch.put_raw(n)
        for sa_ns in {d.get("metadata", {}).get("namespace") or "default" for d in docs} | \
                {d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"}:
            await scratch.put_raw({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": sa_ns}})
        c = Checker(scratch)
        results: list[dict] = []
        rank = {k: i for i, k in enumerate(CONTEXT_ORDER)}
        is_constraint = lambda d: d.get("apiVersion", "").startswith("constraints.gatekeeper.sh/")   # noqa: E731
        context = sorted((d for d in docs if d.get("kind") not in WORKLOADS and not is_constraint(d)),
                         key=lambda d: rank.get(d.get("kind"), len(rank)))
        for d in context:
            r = await c.apply_context(d)
            if r is not None:
                results.append(r)
        for d in docs:   # Gatekeeper constraints: their kinds exist once the templates are in
            if d.get("kind") not in WORKLOADS and is_constraint(d):
                r = await c.apply_context(d)
                if r is not None:
                    results.append(r)
        for d in docs:
            if d.get("kind") in WORKLOADS:
                results.append(await c.workload(d))
        return results
    finally:
        await scratch.close()


async def main(args) -> int:
    try:
        docs = load_manifests(args.filename)
        nodes = load_nodes(args.nodes, args.runtime_config or []) if args.nodes else None
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not any(d.get("kind") in WORKLOADS for d in docs):
        print("error: no Pod or workload in the manifests", file=sys.stderr)
        return 2
    client = None
    if not nodes:
        from .client import Client, Config
        try:
            client = Client(Config.from_kubeconfig(args.kubeconfig), user_agent="kubeclass-check")
        except (OSError, KeyError, StopIteration, yaml.YAMLError) as e:
            print(f"error: cannot read the kubeconfig {args.kubeconfig}: {e} (or give --nodes)", file=sys.stderr)
            return 2
    import logging
    logging.getLogger("kubeclass").setLevel(logging.WARNING)
    try:
        results = await check(docs, client, nodes)
    except Exception as e:   # the live cluster could not be read
        from .client import ApiError, TransportError
        if isinstance(e, (ApiError, TransportError)):
            print(f"error: reading the cluster: {e}", file=sys.stderr)
            return 2
        raise
    finally:
        if client is not None:
            await client.close()
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        render(results, sys.stdout)
    bad = [r for r in results if not r.get("admitted") or r.get("schedulable") is False]
    return 1 if bad else 0


def run(args) -> int:
    return asyncio.run(main(args))
