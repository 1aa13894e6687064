"""Validation, defaults and table rows of the other kinds the seeds use (required fields, names,
quantities), as upstream words them. Controllers and enforcement live elsewhere."""
from __future__ import annotations

from . import core_validation, meta, names
from .errors import FieldError, invalid, not_supported, required

# ---- Namespace

def namespace_prepare_create(ns: dict) -> None:
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns["status"] = {"phase": "Active"}
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"].get("name", "")


def namespace_validate(ns: dict) -> list[FieldError]:
    return meta.validate_object_meta(ns.get("metadata", {}), False, names.dns1123_label)


def namespace_row(ns: dict) -> list:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", ""), meta.age(ns["metadata"].get("creationTimestamp"))]


# ---- Node

def node_validate(node: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(node.get("metadata", {}), False, names.dns1123_subdomain)
    for i, t in enumerate((node.get("spec") or {}).get("taints") or []):
        p = f"spec.taints[{i}]"
        if not t.get("key"):
            errs.append(required(f"{p}.key"))
        else:
            errs += [invalid(f"{p}.key", t["key"], m) for m in names.qualified_name(t["key"])]
        if t.get("value"):
            errs += [invalid(f"{p}.value", t["value"], m) for m in names.label_value(t["value"])]
        eff = t.get("effect", "")
        if not eff:
            errs.append(required(f"{p}.effect"))
        elif eff not in core_validation.TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", eff, core_validation.TAINT_EFFECTS))
    st = node.get("status") or {}
    for f in ("capacity", "allocatable"):
        errs += core_validation.validate_resource_list(st.get(f) or {}, f"status.{f}", container=False)
    return errs


def node_row(node: dict) -> list:
    md, spec, st = node["metadata"], node.get("spec", {}), node.get("status", {})
    ready = "Unknown"
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else ("NotReady" if c.get("status") == "False" else "Unknown")
    status = ready + (",SchedulingDisabled" if spec.get("unschedulable") else "")
    roles = sorted({k.split("/", 1)[1] for k in (md.get("labels") or {}) if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
                   | ({(md.get("labels") or {})["kubernetes.io/role"]} if "kubernetes.io/role" in (md.get("labels") or {}) else set()))
    info = st.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [md["name"], status, ",".join(roles) or "<none>", meta.age(md.get("creationTimestamp")),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


# ---- Event

def event_validate(ev: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(ev.get("metadata", {}), True, names.dns1123_subdomain)
    io = ev.get("involvedObject") or {}
    ns = ev.get("metadata", {}).get("namespace", "")
    if io.get("namespace") and io.get("namespace") != ns:
        errs.append(invalid("involvedObject.namespace", io.get("namespace"), "does not match event.namespace"))
    return errs


def event_row(ev: dict) -> list:
    io = ev.get("involvedObject") or {}
    src = ev.get("source") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or ev["metadata"].get("creationTimestamp")
    first = ev.get("firstTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    source = src.get("component", "") + (", " + src["host"] if src.get("host") else "")
    return [meta.age(last), ev.get("type", ""), ev.get("reason", ""), f"{io.get('kind', '').lower()}/{io.get('name', '')}",
            io.get("fieldPath", ""), source or ev.get("reportingComponent", ""), ev.get("message", ""),
            meta.age(first), str(ev.get("count", 1)), ev["metadata"]["name"]]


# ---- ServiceAccount, ResourceQuota, LimitRange

def generic_validate(namespaced: bool):
    def v(obj: dict) -> list[FieldError]:
        return meta.validate_object_meta(obj.get("metadata", {}), namespaced, names.dns1123_subdomain)
    return v


def serviceaccount_row(sa: dict) -> list:
    return [sa["metadata"]["name"], str(len(sa.get("secrets") or [])), meta.age(sa["metadata"].get("creationTimestamp"))]


def quota_validate(q: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(q.get("metadata", {}), True, names.dns1123_subdomain)
    for k, v in ((q.get("spec") or {}).get("hard") or {}).items():
        p = f"spec.hard[{k}]"
        errs += [invalid(p, k, m) for m in names.qualified_name(k)]
        errs += core_validation.validate_quantity_value(k, v, p)
    return errs


def quota_row(q: dict) -> list:
    hard = (q.get("status") or {}).get("hard") or (q.get("spec") or {}).get("hard") or {}
    used = (q.get("status") or {}).get("used") or {}
    req, lim = [], []
    for k in sorted(hard):
        s = f"{k}: {used.get(k, '0')}/{hard[k]}"
        (lim if k.startswith("limits.") else req).append(s)
    return [q["metadata"]["name"], meta.age(q["metadata"].get("creationTimestamp")), ", ".join(req), ", ".join(lim)]


LIMIT_TYPES = ["Pod", "Container", "PersistentVolumeClaim"]


def limitrange_defaults(lr: dict) -> None:
    """SetDefaults_LimitRangeItem: Container items get default from max, defaultRequest from default, then min."""
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        d = dict(item.get("default") or {})
        dr = dict(item.get("defaultRequest") or {})
        for k, v in (item.get("max") or {}).items():
            d.setdefault(k, v)
        for k, v in d.items():
            dr.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            dr.setdefault(k, v)
        if d:
            item["default"] = d
        if dr:
            item["defaultRequest"] = dr


def limitrange_validate(lr: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(lr.get("metadata", {}), True, names.dns1123_subdomain)
    for i, item in enumerate((lr.get("spec") or {}).get("limits") or []):
        p = f"spec.limits[{i}]"
        t = item.get("type", "")
        if not t:
            errs.append(required(f"{p}.type"))
        for f in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for k, v in (item.get(f) or {}).items():
                errs += core_validation.validate_quantity_value(k, v, f"{p}.{f}[{k}]")
        if t == "Pod" and (item.get("default") or item.get("defaultRequest")):
            errs.append(invalid(f"{p}.default" if item.get("default") else f"{p}.defaultRequest",
                                item.get("default") or item.get("defaultRequest"), "may not be specified when `type` is 'Pod'"))
    return errs


# ---- RBAC

def rbac_validate(namespaced: bool):
    def v(obj: dict) -> list[FieldError]:
        errs = meta.validate_object_meta(obj.get("metadata", {}), namespaced, names.path_segment_name)
        for i, rule in enumerate(obj.get("rules") or []):
            if not rule.get("verbs"):
                errs.append(required(f"rules[{i}].verbs", "verbs must contain at least one value"))
            if rule.get("nonResourceURLs") and namespaced:
                errs.append(invalid(f"rules[{i}].nonResourceURLs", rule["nonResourceURLs"], "namespaced rules cannot apply to non-resource URLs"))
        if obj.get("kind", "").endswith("Binding"):
            ref = obj.get("roleRef") or {}
            if not ref.get("name"):
                errs.append(required("roleRef.name"))
            if ref.get("kind") not in ("Role", "ClusterRole"):
                errs.append(not_supported("roleRef.kind", ref.get("kind", ""), ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]))
            for j, s in enumerate(obj.get("subjects") or []):
                if s.get("kind") not in ("User", "Group", "ServiceAccount"):
                    errs.append(not_supported(f"subjects[{j}].kind", s.get("kind", ""), ["ServiceAccount", "User", "Group"]))
                if not s.get("name"):
                    errs.append(required(f"subjects[{j}].name"))
        return errs
    return v


def binding_validate_update(namespaced: bool):
    v = rbac_validate(namespaced)

    def vu(new: dict, old: dict) -> list[FieldError]:
        errs = v(new)
        if new.get("roleRef") != old.get("roleRef"):
            errs.append(invalid("roleRef", new.get("roleRef"), "cannot change roleRef"))
        return errs
    return vu


def binding_row(b: dict) -> list:
    ref = b.get("roleRef") or {}
    subj = b.get("subjects") or []

    def of(kind: str) -> str:
        return ", ".join((s.get("namespace", "") + "/" + s["name"]) if kind == "ServiceAccount" else s.get("name", "")
                         for s in subj if s.get("kind") == kind)
    return [b["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", meta.age(b["metadata"].get("creationTimestamp")),
            of("User"), of("Group"), of("ServiceAccount")]


def lease_row(lease: dict) -> list:
    return [lease["metadata"]["name"], (lease.get("spec") or {}).get("holderIdentity", "<unknown>") or "<unknown>",
            meta.age(lease["metadata"].get("creationTimestamp"))]


def default_row(obj: dict) -> list:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]
