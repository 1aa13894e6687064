"""apiregistration.k8s.io/v1 APIService: validation and defaults as kube-aggregator's, the Local APIServices every
served group/version has (as kube-apiserver's autoregistration creates them), their Available condition, and
`kubectl get apiservices`' columns. Proxying a group to an extension API server's Service is not done here (the
availability controller reports whether its Service has endpoints)."""
from __future__ import annotations

from . import meta, names
from .errors import FieldError, invalid, required

# upstream's priorities for the built-in groups (kube-apiserver's apiVersionPriorities); others get 1000 / 15
PRIORITIES = {("", "v1"): (18000, 1), ("apps", "v1"): (17800, 15), ("events.k8s.io", "v1"): (17750, 15),
              ("authentication.k8s.io", "v1"): (17700, 15), ("authorization.k8s.io", "v1"): (17600, 15),
              ("autoscaling", "v1"): (17500, 15), ("batch", "v1"): (17400, 15), ("certificates.k8s.io", "v1"): (17300, 15),
              ("networking.k8s.io", "v1"): (17200, 15), ("policy", "v1"): (17100, 15),
              ("rbac.authorization.k8s.io", "v1"): (17000, 15), ("storage.k8s.io", "v1"): (16800, 15),
              ("admissionregistration.k8s.io", "v1"): (16700, 15), ("apiextensions.k8s.io", "v1"): (16700, 15),
              ("scheduling.k8s.io", "v1"): (16600, 15), ("coordination.k8s.io", "v1"): (16500, 15),
              ("node.k8s.io", "v1"): (16300, 15), ("node.k8s.io", "v1beta1"): (16300, 9), ("node.k8s.io", "v1alpha1"): (16300, 1),
              ("discovery.k8s.io", "v1"): (16200, 15), ("apiregistration.k8s.io", "v1"): (18000, 15),
              ("metrics.k8s.io", "v1beta1"): (100, 100)}   # as metrics-server's APIService


def name_of(group: str, version: str) -> str:
    return f"{version}.{group}"


def local(group: str, version: str) -> dict:
    gp, vp = PRIORITIES.get((group, version), (1000, 15))
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name_of(group, version), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
            "status": {"conditions": [available(True, "Local", "Local APIServices are always available")]}}


def available(ok: bool, reason: str, message: str, since: str | None = None) -> dict:
    return {"type": "Available", "status": "True" if ok else "False", "lastTransitionTime": since or meta.now_rfc3339(),
            "reason": reason, "message": message}


def defaults(a: dict) -> None:
    svc = (a.get("spec") or {}).get("service")
    if isinstance(svc, dict):
        svc.setdefault("port", 443)


def prepare_create(a: dict) -> None:
    if not (a.get("spec") or {}).get("service"):
        a["status"] = {"conditions": [available(True, "Local", "Local APIServices are always available")]}
    else:
        a["status"] = {}


def validate(a: dict) -> list[FieldError]:
    spec = a.get("spec") or {}
    group, version = spec.get("group") or "", spec.get("version") or ""
    md = a.get("metadata") or {}

    def name_rule(name: str) -> list[str]:
        bad = names.path_segment_name(name)
        if bad:
            return bad
        return [] if name == f"{version}.{group}" else ['must be `spec.version+"."+spec.group`']
    errs = meta.validate_object_meta(md, False, name_rule)
    if not group and version != "v1":
        errs.append(required("spec.group", "only v1 may have an empty group and it better be legacy kube"))
    if group:
        errs += [invalid("spec.group", group, m) for m in names.dns1123_subdomain(group)]
    errs += [invalid("spec.version", version, m) for m in names.dns1035_label(version)]
    gp, vp = spec.get("groupPriorityMinimum", 0), spec.get("versionPriority", 0)
    if not isinstance(gp, int) or not 0 < gp <= 20000:
        errs.append(invalid("spec.groupPriorityMinimum", gp, "must be positive and less than 20000"))
    if not isinstance(vp, int) or not 0 < vp <= 1000:
        errs.append(invalid("spec.versionPriority", vp, "must be positive and less than 1000"))
    svc = spec.get("service")
    if not svc:
        if spec.get("caBundle"):
            errs.append(invalid("spec.caBundle", spec["caBundle"], "local APIServices may not have a caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            errs.append(invalid("spec.insecureSkipTLSVerify", True, "local APIServices may not have insecureSkipTLSVerify"))
        return errs
    if not svc.get("namespace"):
        errs.append(required("spec.service.namespace"))
    if not svc.get("name"):
        errs.append(required("spec.service.name"))
    port = svc.get("port", 443)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        errs.append(invalid("spec.service.port", port, "port is not valid: must be between 1 and 65535, inclusive"))
    if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
        errs.append(invalid("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))


def condition(a: dict) -> dict | None:
    return next((c for c in (a.get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), None)


def table_row(a: dict) -> list:
    svc = (a.get("spec") or {}).get("service")
    c = condition(a)
    avail = "Unknown" if c is None else c.get("status", "Unknown")
    if c is not None and c.get("status") == "False" and c.get("reason"):
        avail = f"False ({c['reason']})"
    return [a["metadata"]["name"], f"{svc.get('namespace', '')}/{svc.get('name', '')}" if svc else "Local", avail,
            meta.age(a["metadata"].get("creationTimestamp"))]


def availability(a: dict, services: dict[str, dict], ready_by_service) -> tuple[bool, str, str]:
    """(available, reason, message) of a non-local APIService from its Service and that Service's ready endpoints."""
    svc_ref = (a.get("spec") or {}).get("service") or {}
    ns, name = svc_ref.get("namespace", ""), svc_ref.get("name", "")
    svc = services.get(f"{ns}/{name}")
    if svc is None:
        return False, "ServiceNotFound", f'service/{name} in "{ns}" is not present'
    if (svc.get("spec") or {}).get("type") == "ExternalName":
        return True, "Passed", "all checks passed"
    port = svc_ref.get("port", 443)
    sp = next((p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)
    if sp is None:
        return False, "ServicePortError", f'service/{name} in "{ns}" is not listening on port {port}'
    if not ready_by_service(f"{ns}/{name}", sp.get("name") or ""):
        return False, "MissingEndpoints", f'endpoints for service/{name} in "{ns}" have no addresses with port name "{sp.get("name") or ""}"'
    return True, "Passed", "all checks passed"
