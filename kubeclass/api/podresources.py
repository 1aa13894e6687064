"""Effective Pod requests and limits (component-helpers resource.PodRequests / PodLimits): the larger of
the containers' sum and the largest init container, plus `spec.overhead` (requests always; limits only
for resources that already have a limit)."""
from __future__ import annotations

from . import quantity
from .quantity import Quantity


def _aggregate(spec: dict, key: str) -> dict[str, Quantity]:
    out: dict[str, Quantity] = {}
    for c in spec.get("containers") or []:
        for r, v in ((c.get("resources") or {}).get(key) or {}).items():
            q = quantity.parse(v)
            out[r] = out[r] + q if r in out else q
    for c in spec.get("initContainers") or []:
        for r, v in ((c.get("resources") or {}).get(key) or {}).items():
            q = quantity.parse(v)
            if r not in out or out[r] < q:
                out[r] = q
    return out


def pod_requests(pod: dict, overhead: bool = True) -> dict[str, Quantity]:
    spec = pod.get("spec") or {}
    out = _aggregate(spec, "requests")
    if overhead:
        for r, v in (spec.get("overhead") or {}).items():
            q = quantity.parse(v)
            out[r] = out[r] + q if r in out else q
    return out


def pod_limits(pod: dict, overhead: bool = True) -> dict[str, Quantity]:
    spec = pod.get("spec") or {}
    out = _aggregate(spec, "limits")
    if overhead:
        for r, v in (spec.get("overhead") or {}).items():
            if r in out and out[r].value != 0:
                out[r] = out[r] + quantity.parse(v)
    return out
