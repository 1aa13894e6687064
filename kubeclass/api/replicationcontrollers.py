"""core/v1 ReplicationController, as upstream 1.32: defaults (the selector and labels default to the template's
labels), validation (ValidateReplicationController's texts: a non-empty map selector that the template's labels
match, replicas >= 0, restartPolicy Always) and `kubectl get rc`'s columns. Its controller is the ReplicaSet one
(kubeclass/controllers/replicationcontroller.py): a map selector is a ReplicaSet's matchLabels."""
from __future__ import annotations

from . import meta, names, workloads
from .errors import FieldError, invalid, required


def selector(rc: dict) -> dict:
    """The RC's selector as a LabelSelector object (for the shared controller and the scale subresource)."""
    return {"matchLabels": dict((rc.get("spec") or {}).get("selector") or {})}


def defaults(rc: dict) -> None:
    spec = rc.setdefault("spec", {})
    tmpl = spec.get("template")
    tlabels = ((tmpl or {}).get("metadata") or {}).get("labels") or {} if isinstance(tmpl, dict) else {}
    if not spec.get("selector") and tlabels:
        spec["selector"] = dict(tlabels)
    if not rc.setdefault("metadata", {}).get("labels") and tlabels:
        rc["metadata"]["labels"] = dict(tlabels)
    spec.setdefault("replicas", 1)
    if isinstance(tmpl, dict):
        workloads._template_defaults(spec)


def validate(rc: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(rc.get("metadata", {}), True, names.dns1123_subdomain)
    spec = rc.get("spec") or {}
    sel = spec.get("selector") or {}
    tmpl = spec.get("template")
    if spec.get("replicas") is not None and (not isinstance(spec["replicas"], int) or spec["replicas"] < 0):
        errs.append(invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
    mrs = spec.get("minReadySeconds")
    if isinstance(mrs, int) and mrs < 0:
        errs.append(invalid("spec.minReadySeconds", mrs, "must be greater than or equal to 0"))
    if not sel:
        errs.append(required("spec.selector"))
    else:
        errs += names.validate_labels(sel, "spec.selector")
    if tmpl is None:
        errs.append(required("spec.template"))
        return errs
    tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and not all(tlabels.get(k) == v for k, v in sel.items()):
        errs.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    errs += names.validate_labels(tlabels, "spec.template.metadata.labels")
    return errs + workloads.validate_replica_template_spec(tmpl.get("spec") or {}, "ReplicationController")


def validate_update(new: dict, old: dict) -> list[FieldError]:
    """A ReplicationController's selector may change (unlike a ReplicaSet's)."""
    return validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))


def table_row(rc: dict) -> list:
    spec, st = rc.get("spec") or {}, rc.get("status") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [rc["metadata"]["name"], str(spec.get("replicas", 1)), str(st.get("replicas", 0)), str(st.get("readyReplicas", 0)),
            meta.age(rc["metadata"].get("creationTimestamp")), ",".join(c.get("name", "") for c in cs),
            ",".join(c.get("image", "") for c in cs), sel]
