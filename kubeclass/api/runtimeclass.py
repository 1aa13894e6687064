"""RuntimeClass (node.k8s.io): validation, version conversion and warnings, as upstream 1.32.

Storage and internal shape is v1. v1beta1 is identical but for apiVersion; v1alpha1 wraps the fields
in `spec` and calls the handler `runtimeHandler` (seed 002's pre-1.14 shape).
"""
from __future__ import annotations

from . import core_validation, meta, names
from .errors import FieldError, invalid

GROUP = "node.k8s.io"

DEPRECATED_NODE_LABELS = {
    "beta.kubernetes.io/arch": 'deprecated since v1.14; use "kubernetes.io/arch" instead',
    "beta.kubernetes.io/os": 'deprecated since v1.14; use "kubernetes.io/os" instead',
    "failure-domain.beta.kubernetes.io/region": 'deprecated since v1.17; use "topology.kubernetes.io/region" instead',
    "failure-domain.beta.kubernetes.io/zone": 'deprecated since v1.17; use "topology.kubernetes.io/zone" instead',
    "beta.kubernetes.io/instance-type": 'deprecated since v1.17; use "node.kubernetes.io/instance-type" instead',
}


def validate(rc: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(rc.get("metadata", {}), False, names.dns1123_subdomain)
    handler = rc.get("handler", "")
    errs += [invalid("handler", handler, m) for m in names.dns1123_label(handler)]
    overhead = rc.get("overhead")
    if overhead is not None:
        errs += core_validation.validate_resource_list(overhead.get("podFixed") or {}, "overhead.limits")
    sched = rc.get("scheduling")
    if sched is not None:
        if sched.get("nodeSelector") is not None:
            errs += core_validation.validate_node_selector_map(sched["nodeSelector"], "scheduling.nodeSelector")
        tols = sched.get("tolerations") or []
        # upstream's node validation hands core's ValidateTolerations a path that already ends in
        # "tolerations" and core adds its own: scheduling.tolerations.tolerations[0].effect (1.32, kept)
        errs += core_validation.validate_tolerations(tols, "scheduling.tolerations.tolerations")
        errs += core_validation.duplicate_tolerations(tols, "scheduling.tolerations")
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new)
    errs += meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    if new.get("handler") != old.get("handler"):
        errs.append(invalid("handler", new.get("handler", ""), meta.IMMUTABLE))
    return errs


def warnings(rc: dict) -> list[str]:
    sel = (rc.get("scheduling") or {}).get("nodeSelector") or {}
    return [f"scheduling.nodeSelector: {DEPRECATED_NODE_LABELS[k]}" for k in sel if k in DEPRECATED_NODE_LABELS]


def to_storage(obj: dict, version: str) -> dict:
    """Convert a RuntimeClass of `version` to the v1 storage shape (in place where possible)."""
    if version == "v1alpha1":
        spec = obj.pop("spec", None) or {}
        out = {k: v for k, v in obj.items()}
        out["handler"] = spec.get("runtimeHandler", "")
        for f in ("overhead", "scheduling"):
            if f in spec:
                out[f] = spec[f]
        obj = out
    obj["apiVersion"] = f"{GROUP}/v1"
    return obj


def from_storage(obj: dict, version: str) -> dict:
    if version == "v1":
        return obj
    out = {k: v for k, v in obj.items()}
    out["apiVersion"] = f"{GROUP}/{version}"
    if version == "v1alpha1":
        spec = {"runtimeHandler": out.pop("handler", "")}
        for f in ("overhead", "scheduling"):
            if f in out:
                spec[f] = out.pop(f)
        out["spec"] = spec
    return out


def table_row(rc: dict) -> list:
    return [rc["metadata"]["name"], rc.get("handler", ""), meta.age(rc["metadata"].get("creationTimestamp"))]
