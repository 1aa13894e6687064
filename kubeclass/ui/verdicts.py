"""A Pod's scheduling verdict on every node, computed now from the store with the scheduler's own framework (the
same run `kubeclass explain pod` makes through the API)."""
from __future__ import annotations

import copy

from ..api import registry
from ..scheduler.framework import FitError
from ..scheduler.nodeinfo import PodInfo, cluster_cache
from ..scheduler.scheduler import Options, build_framework


def _all(store, group: str, version: str, plural: str) -> list[dict]:
    return store.list_objects(registry.BY_PATH[(group, version, plural)].key_prefix(None))


def pod_verdicts(store, pod: dict) -> dict:
    handlers = {rc["metadata"]["name"]: rc.get("handler", "") for rc in _all(store, "node.k8s.io", "v1", "runtimeclasses")}
    cache = cluster_cache(_all(store, "", "v1", "nodes"), _all(store, "", "v1", "pods"), pod["metadata"].get("uid"))
    unbound = copy.deepcopy(pod)
    unbound["spec"].pop("nodeName", None)
    rc = (pod.get("spec") or {}).get("runtimeClassName")
    out = {"runtimeClass": rc or "", "handler": handlers.get(rc, "") if rc else ""}
    try:
        _, result = build_framework(handlers, Options()).schedule(cache, PodInfo.of(unbound), explain=True)
        return {**out, "verdicts": result.verdicts, "node": result.node, "message": ""}
    except FitError as e:
        return {**out, "verdicts": getattr(e, "verdicts", {}), "node": None, "message": e.message()}
