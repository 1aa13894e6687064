"""Discovery (aggregated v2 and legacy) and OpenAPI v2/v3 documents, computed once per process."""
from __future__ import annotations

import functools
import hashlib

import orjson

from ..api import registry, schema

AGG_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4+kubeclass", "gitCommit": "0000000000000000000000000000000000000000",
           "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.23.8", "compiler": "gc",
           "platform": "linux/amd64"}


def _verbs(r: registry.Resource) -> list[str]:
    return sorted(r.verbs)


def _sub_verbs(sub: str) -> list[str]:
    return {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"], "binding": ["create"],
            "log": ["get"], "token": ["create"], "finalize": ["update"], "exec": ["create", "get"],
            "attach": ["create", "get"], "portforward": ["create", "get"],
            "ephemeralcontainers": ["get", "patch", "update"],
            "proxy": ["create", "delete", "get", "patch", "update"]}.get(sub, ["get"])


def _sub_kind(r: registry.Resource, sub: str) -> tuple[str, str, str]:
    if sub == "scale":
        return ("autoscaling", "v1", "Scale")
    if sub == "binding":
        return ("", "v1", "Binding")
    if sub == "token":
        return ("authentication.k8s.io", "v1", "TokenRequest")
    if sub in ("exec", "attach", "portforward"):
        return ("", "v1", {"exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}[sub])
    if sub == "proxy":
        return ("", "v1", "NodeProxyOptions")
    return (r.group, r.version, r.kind.kind)


def resource_list(group: str, version: str) -> dict:
    items = []
    for r in registry.resources_in(group, version):
        e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind.kind, "verbs": _verbs(r)}
        if r.short_names:
            e["shortNames"] = r.short_names
        if r.categories:
            e["categories"] = r.categories
        e["storageVersionHash"] = hashlib.sha256(f"{r.group}/{r.plural}".encode()).hexdigest()[:11]
        items.append(e)
        for sub in r.subresources:
            g, v, k = _sub_kind(r, sub)
            s = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": k, "verbs": _sub_verbs(sub)}
            if sub in ("scale", "token"):
                s["group"], s["version"] = g, v
            items.append(s)
    for (g, v, plural), kind in registry.VIRTUAL.items():
        if g == group and v == version:
            items.append({"name": plural, "singularName": plural[:-1].lower(), "namespaced": False, "kind": kind, "verbs": ["create"]})
    for (g, v, plural), (kind, namespaced) in registry.COMPUTED.items():
        if g == group and v == version:
            items.append({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def _group_entry(group: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def legacy_api(server_addr: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]}


def legacy_apis() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, vs) for g, vs in registry.group_versions().items() if g]}


def legacy_group(group: str) -> dict | None:
    vs = registry.group_versions().get(group)
    if not vs:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, vs)}


def _agg_version(group: str, version: str) -> dict:
    res = []
    for r in registry.resources_in(group, version):
        e = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind.kind},
             "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular, "verbs": _verbs(r)}
        if r.short_names:
            e["shortNames"] = r.short_names
        if r.categories:
            e["categories"] = r.categories
        subs = []
        for sub in r.subresources:
            g, v, k = _sub_kind(r, sub)
            subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": _sub_verbs(sub)})
        if subs:
            e["subresources"] = subs
        res.append(e)
    for (g, v, plural), kind in registry.VIRTUAL.items():
        if g == group and v == version:
            res.append({"resource": plural, "responseKind": {"group": g, "version": v, "kind": kind}, "scope": "Cluster",
                        "singularResource": plural[:-1].lower(), "verbs": ["create"]})
    for (g, v, plural), (kind, namespaced) in registry.COMPUTED.items():
        if g == group and v == version:
            res.append({"resource": plural, "responseKind": {"group": g, "version": v, "kind": kind},
                        "scope": "Namespaced" if namespaced else "Cluster", "singularResource": "", "verbs": ["get", "list"]})
    return {"version": version, "resources": res, "freshness": "Current"}


@functools.lru_cache(maxsize=4)
def aggregated(core: bool, api_version: str) -> bytes:
    items = []
    for g, vs in registry.group_versions().items():
        if (g == "") != core:
            continue
        md = {"creationTimestamp": None} if core else {"name": g, "creationTimestamp": None}
        items.append({"metadata": md, "versions": [_agg_version(g, v) for v in vs]})
    return orjson.dumps({"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{api_version}",
                         "metadata": {}, "items": items})


# ---------------------------------------------------------------------------------------------- OpenAPI

def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _params() -> list[dict]:
    q = lambda n, t="string": {"name": n, "in": "query", "schema": {"type": t, "uniqueItems": True}}
    return [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("pretty")]


@functools.lru_cache(maxsize=32)
def openapi_v3_gv(group: str, version: str) -> bytes:
    paths: dict = {}
    roots = []
    for r in registry.resources_in(group, version):
        gvk = {"group": r.group, "version": r.version, "kind": r.kind.kind}
        ref = {"$ref": "#/components/schemas/" + r.definition}
        roots.append(r.definition)
        body = {"content": {"application/json": {"schema": ref}}, "required": True}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        base = "/" + _gv_path(group, version) + ("/namespaces/{namespace}" if r.namespaced else "") + "/" + r.plural
        pp = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if r.namespaced:
            pp.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        op = lambda action, extra: {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                                    "parameters": _params(), "responses": ok, "operationId": f"{action}{r.kind.kind}", **extra}
        paths[base] = {"post": op("post", {"requestBody": body}), "get": op("list", {})}
        patch_body = {"content": {t: {"schema": {"type": "object"}} for t in (
            "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
            "application/strategic-merge-patch+json")}, "required": True}
        paths[base + "/{name}"] = {"get": op("get", {}), "put": op("put", {"requestBody": body}),
                                   "patch": op("patch", {"requestBody": patch_body}), "delete": op("delete", {}),
                                   "parameters": pp}
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]}, "paths": paths,
           "components": {"schemas": schema.openapi_v3_schemas(roots)}}
    return orjson.dumps(doc)


def gv_hash(group: str, version: str) -> str:
    return hashlib.sha512(openapi_v3_gv(group, version)).hexdigest()[:32].upper()


@functools.lru_cache(maxsize=1)
def openapi_v3_root() -> bytes:
    paths = {}
    for g, vs in registry.group_versions().items():
        for v in vs:
            if registry.resources_in(g, v):
                p = _gv_path(g, v)
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={gv_hash(g, v)}"}
    return orjson.dumps({"paths": paths})


@functools.lru_cache(maxsize=1)
def openapi_v2() -> bytes:
    defs = {}
    roots = [r.definition for r in registry.RESOURCES]
    for n, s in schema.openapi_v3_schemas(roots, v3_details=False).items():
        defs[n] = orjson.loads(orjson.dumps(s).replace(b"#/components/schemas/", b"#/definitions/"))
    return orjson.dumps({"swagger": "2.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
                         "paths": {}, "definitions": defs})


def _forget() -> None:
    for cached in (aggregated, openapi_v3_gv, openapi_v3_root, openapi_v2):
        cached.cache_clear()


registry.on_change(_forget)
