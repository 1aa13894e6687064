"""apps/v1 workloads (Deployment, ReplicaSet): defaults, validation and table rows as upstream 1.32's
apps strategy (pkg/apis/apps/v1/defaults.go, pkg/apis/apps/validation). The controllers that run them
live in kubeclass/controllers/; their decisions in rollout.py and podstate.py."""
from __future__ import annotations

import math
import re

from . import meta, names, pod
from .errors import FieldError, GoRepr, forbidden, invalid, not_supported, required
from .selectors import LabelSelector

STRATEGY_TYPES = ["Recreate", "RollingUpdate"]
_PERCENT = re.compile(r"^[0-9]+%$")
PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
               "regex used for validation is '[0-9]+%')")


# ---- IntOrString (maxSurge, maxUnavailable)

def scaled_value(v: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "25%" of total rounded up or down."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _PERCENT.match(v):
        x = int(v[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")


def go_int_or_string(v) -> GoRepr:
    """An intstr.IntOrString as Go's %#v prints it in field errors."""
    if isinstance(v, int):
        return GoRepr(f'intstr.IntOrString{{Type:0, IntVal:{v}, StrVal:""}}')
    return GoRepr(f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:"{v}"}}')


def _validate_int_or_percent(v, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        return [invalid(path, v, "must be an integer or percentage (e.g '5%')")]
    if isinstance(v, int):
        return [invalid(path, v, "must be greater than or equal to 0")] if v < 0 else []
    if not _PERCENT.match(v):
        return [invalid(path, go_int_or_string(v), PERCENT_MSG)]
    return []


def _more_than_100(v, path: str) -> list[FieldError]:
    if isinstance(v, str) and _PERCENT.match(v) and int(v[:-1]) > 100:
        return [invalid(path, v, "must not be greater than 100%")]
    return []


def _is_zero(v) -> bool:
    return v == 0 or v == "0%"


# ---- defaults (every request, before admission)

def deployment_defaults(d: dict) -> None:
    spec = d.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    st = spec.setdefault("strategy", {})
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = st.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = st["rollingUpdate"] = {}
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template_defaults(spec)


def replicaset_defaults(rs: dict) -> None:
    spec = rs.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template_defaults(spec)


def _template_defaults(spec: dict) -> None:
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        tmpl = spec["template"] = {}
    if not isinstance(tmpl.get("metadata"), dict):
        tmpl["metadata"] = {}
    if not isinstance(tmpl.get("spec"), dict):
        tmpl["spec"] = {}
    drop_empty_meta(tmpl["metadata"])
    pod.set_defaults({"spec": tmpl["spec"]})


def drop_empty_meta(md: dict) -> None:
    """A template's empty labels / annotations are not stored (omitempty), so a template with its last
    annotation removed is equal to the one that never had it (the same pod-template hash, as upstream)."""
    for f in ("labels", "annotations", "finalizers", "ownerReferences"):
        if f in md and not md[f]:
            del md[f]


def prepare_create(obj: dict) -> None:
    # ReplicaSetStatus.replicas is the one count without omitempty (the official clients require it)
    obj["status"] = {"replicas": 0} if obj.get("kind") in ("ReplicaSet", "ReplicationController") else {}


# ---- validation

def _validate_common(obj: dict, kind: str) -> list[FieldError]:
    errs = meta.validate_object_meta(obj.get("metadata", {}), True, names.dns1123_subdomain)
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    tmpl = spec.get("template") or {}
    tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not sel:
        errs.append(required("spec.selector"))
    elif not sel.get("matchLabels") and not sel.get("matchExpressions"):
        errs.append(invalid("spec.selector", GoRepr("null" if not sel else "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"),
                            f"empty selector is invalid for {kind}"))
    else:
        try:
            matched = LabelSelector.from_object(sel).matches(tlabels)
        except ValueError as e:
            errs.append(invalid("spec.selector", GoRepr(str(sel)), str(e)))
        else:
            if not matched:
                errs.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    for f in ("replicas", "minReadySeconds"):
        v = spec.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            errs.append(invalid(f"spec.{f}", v, "must be greater than or equal to 0"))
    return errs + validate_replica_template_spec(tmpl.get("spec") or {}, "ReplicaSet")


def validate_replica_template_spec(tspec: dict, kind: str) -> list[FieldError]:
    """A replicated Pod template's spec (ValidatePodTemplateSpecForReplicaSet / ...ForRC): a Pod spec that always
    restarts and has no deadline."""
    errs = pod.validate_spec(tspec, "spec.template.spec")
    rp = tspec.get("restartPolicy", "Always")
    if rp != "Always" and rp in pod.RESTART_POLICIES:
        errs.append(not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def deployment_validate(d: dict) -> list[FieldError]:
    errs = _validate_common(d, "deployment")
    spec = d.get("spec") or {}
    st = spec.get("strategy") or {}
    typ = st.get("type", "RollingUpdate")
    ru = st.get("rollingUpdate")
    if typ not in STRATEGY_TYPES:
        errs.append(not_supported("spec.strategy.type", typ, STRATEGY_TYPES))
    elif typ == "Recreate" and ru is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif typ == "RollingUpdate" and isinstance(ru, dict):
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        e1 = _validate_int_or_percent(mu, "spec.strategy.rollingUpdate.maxUnavailable") if mu is not None else []
        e2 = _validate_int_or_percent(ms, "spec.strategy.rollingUpdate.maxSurge") if ms is not None else []
        errs += e1 + e2
        if _is_zero(ms) and _is_zero(mu):
            errs.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", go_int_or_string(mu), "may not be 0 when `maxSurge` is 0"))
        errs += _more_than_100(mu, "spec.strategy.rollingUpdate.maxUnavailable")
    rhl = spec.get("revisionHistoryLimit")
    if isinstance(rhl, int) and rhl < 0:
        errs.append(invalid("spec.revisionHistoryLimit", rhl, "must be greater than or equal to 0"))
    pds = spec.get("progressDeadlineSeconds")
    if isinstance(pds, int):
        if pds < 0:
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than or equal to 0"))
        elif pds <= (spec.get("minReadySeconds") or 0):
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def replicaset_validate(rs: dict) -> list[FieldError]:
    return _validate_common(rs, "deployment")


def _selector_immutable(new: dict, old: dict) -> list[FieldError]:
    ns, os_ = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if ns != os_:
        return [invalid("spec.selector", GoRepr(_go_selector(ns)), "field is immutable")]
    return []


def _go_selector(sel: dict | None) -> str:
    """A LabelSelector as Go's %#v prints it in the immutability error."""
    if not sel:
        return "null"
    ml = sel.get("matchLabels")
    mls = "map[string]string(nil)" if ml is None else "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(ml.items())) + "}"
    me = sel.get("matchExpressions")
    mes = "[]v1.LabelSelectorRequirement(nil)" if me is None else "[]v1.LabelSelectorRequirement{" + ", ".join(
        f'v1.LabelSelectorRequirement{{Key:"{e.get("key", "")}", Operator:"{e.get("operator", "")}", Values:[]string{{'
        + ", ".join(f'"{v}"' for v in e.get("values") or []) + "}}" for e in me) + "}"
    return f"v1.LabelSelector{{MatchLabels:{mls}, MatchExpressions:{mes}}}"


def deployment_validate_update(new: dict, old: dict) -> list[FieldError]:
    return deployment_validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {})) + \
        _selector_immutable(new, old)


def replicaset_validate_update(new: dict, old: dict) -> list[FieldError]:
    return replicaset_validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {})) + \
        _selector_immutable(new, old)


# ---- table rows (kubectl get)

def _containers(obj: dict) -> tuple[str, str, str]:
    spec = obj.get("spec") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
            LabelSelector.from_object(spec.get("selector") or {}).to_string())


def deployment_row(d: dict) -> list:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    c, i, s = _containers(d)
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", str(st.get("updatedReplicas", 0)),
            str(st.get("availableReplicas", 0)), meta.age(d["metadata"].get("creationTimestamp")), c, i, s]


def replicaset_row(r: dict) -> list:
    spec, st = r.get("spec") or {}, r.get("status") or {}
    c, i, s = _containers(r)
    return [r["metadata"]["name"], str(spec.get("replicas", 1)), str(st.get("replicas", 0)), str(st.get("readyReplicas", 0)),
            meta.age(r["metadata"].get("creationTimestamp")), c, i, s]


# ---- DaemonSet

DS_STRATEGY_TYPES = ["OnDelete", "RollingUpdate"]


def daemonset_defaults(ds: dict) -> None:
    spec = ds.setdefault("spec", {})
    st = spec.setdefault("updateStrategy", {})
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = st.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = st["rollingUpdate"] = {}
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template_defaults(spec)


def daemonset_prepare_create(ds: dict) -> None:
    ds["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}


def daemonset_validate(ds: dict) -> list[FieldError]:
    errs = _validate_common(ds, "daemonset")
    spec = ds.get("spec") or {}
    st = spec.get("updateStrategy") or {}
    typ = st.get("type", "RollingUpdate")
    if typ not in DS_STRATEGY_TYPES:
        errs.append(not_supported("spec.updateStrategy.type", typ, DS_STRATEGY_TYPES))
    elif typ == "RollingUpdate" and isinstance(st.get("rollingUpdate"), dict):
        mu, ms = st["rollingUpdate"].get("maxUnavailable", 1), st["rollingUpdate"].get("maxSurge", 0)
        errs += _validate_int_or_percent(mu, "spec.updateStrategy.rollingUpdate.maxUnavailable")
        errs += _validate_int_or_percent(ms, "spec.updateStrategy.rollingUpdate.maxSurge")
        if _is_zero(mu) and _is_zero(ms):
            errs.append(invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", go_int_or_string(mu),
                                "may not be 0 when `maxSurge` is 0"))
        errs += _more_than_100(mu, "spec.updateStrategy.rollingUpdate.maxUnavailable")
    return errs


def daemonset_validate_update(new: dict, old: dict) -> list[FieldError]:
    return daemonset_validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {})) + \
        _selector_immutable(new, old)


def daemonset_row(ds: dict) -> list:
    spec, st = ds.get("spec") or {}, ds.get("status") or {}
    c, i, s = _containers(ds)
    ns = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [ds["metadata"]["name"], str(st.get("desiredNumberScheduled", 0)), str(st.get("currentNumberScheduled", 0)),
            str(st.get("numberReady", 0)), str(st.get("updatedNumberScheduled", 0)), str(st.get("numberAvailable", 0)),
            ",".join(f"{k}={v}" for k, v in sorted(ns.items())) or "<none>",
            meta.age(ds["metadata"].get("creationTimestamp")), c, i, s]


# ---- ControllerRevision (a DaemonSet's template history)

def controllerrevision_validate(cr: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(cr.get("metadata", {}), True, names.dns1123_subdomain)
    rev = cr.get("revision")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        errs.append(invalid("revision", rev, "must be greater than or equal to 0"))
    return errs


def controllerrevision_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = controllerrevision_validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    if new.get("data") != old.get("data"):
        errs.append(invalid("data", GoRepr("runtime.RawExtension{...}"), "field is immutable"))
    return errs


def controllerrevision_row(cr: dict) -> list:
    refs = [r for r in cr["metadata"].get("ownerReferences") or [] if r.get("controller")]
    owner = f"{refs[0].get('kind', '').lower()}.{refs[0].get('apiVersion', '').split('/')[0]}/{refs[0].get('name', '')}" if refs else "<none>"
    return [cr["metadata"]["name"], owner, str(cr.get("revision", 0)), meta.age(cr["metadata"].get("creationTimestamp"))]
