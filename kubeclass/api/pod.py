"""Pod defaults, validation and update rules (the subset of core/v1 this system uses), as upstream 1.32."""
from __future__ import annotations

import copy

from . import core_validation, godiff, meta, names, quantity
from .errors import NOT_FOUND, FieldError, duplicate, forbidden, go_quote, invalid, not_supported, required

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def _default_container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        c["imagePullPolicy"] = "Always" if ("@" not in tag and (":" not in tag or tag.endswith(":latest"))) else "IfNotPresent"
    res = c.setdefault("resources", {})
    limits = res.get("limits") or {}
    if limits:
        req = res.setdefault("requests", {})
        for k, v in limits.items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for f in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(f)
        if isinstance(pr, dict):   # SetDefaults_Probe, SetDefaults_HTTPGetAction
            for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
                pr.setdefault(k, v)
            if isinstance(pr.get("httpGet"), dict):
                pr["httpGet"].setdefault("path", "/")
                pr["httpGet"].setdefault("scheme", "HTTP")


def set_defaults(pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            _default_container(c)


def qos_class(pod: dict) -> str:
    spec = pod.get("spec", {})
    nonzero = False
    guaranteed = True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for rl in (req, lim):
            for k in ("cpu", "memory"):
                if k in rl and quantity.value(rl[k]) != 0:
                    nonzero = True
        if "cpu" not in lim or "memory" not in lim:
            guaranteed = False
        else:
            for r in ("cpu", "memory"):
                if r in req and quantity.value(req[r]) != quantity.value(lim[r]):
                    guaranteed = False
    if not nonzero:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def prepare_create(pod: dict) -> None:
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}


def _validate_container(c: dict, path: str, seen: set) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name", "")
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += [invalid(f"{path}.name", name, m) for m in names.dns1123_label(name)]
        if name in seen:
            errs.append(duplicate(f"{path}.name", name))
        seen.add(name)
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    pp = c.get("imagePullPolicy")
    if pp and pp not in PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", pp, PULL_POLICIES))
    for i, p in enumerate(c.get("ports") or []):
        port = p.get("containerPort")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(invalid(f"{path}.ports[{i}].containerPort", port, "must be between 1 and 65535, inclusive"))
    res = c.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    errs += core_validation.validate_resource_list(limits, f"{path}.resources.limits")
    errs += core_validation.validate_resource_list(requests, f"{path}.resources.requests")
    for r, v in requests.items():
        if r in limits:
            try:
                if quantity.parse(limits[r]) < quantity.parse(v):
                    errs.append(invalid(f"{path}.resources.requests[{r}]", v,
                                        f"must be less than or equal to {r} limit of {limits[r]}"))
            except quantity.QuantityError:
                pass
    return errs


def validate_spec(spec: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set = set()
    containers = spec.get("containers") or []
    if not containers:
        errs.append(required(f"{path}.containers"))
    for i, c in enumerate(spec.get("initContainers") or []):
        errs += _validate_container(c, f"{path}.initContainers[{i}]", seen)
    for i, c in enumerate(containers):
        errs += _validate_container(c, f"{path}.containers[{i}]", seen)
    rp = spec.get("restartPolicy", "Always")
    if rp not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy", "ClusterFirst")
    if dp not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    if spec.get("nodeSelector"):
        errs += core_validation.validate_node_selector_map(spec["nodeSelector"], f"{path}.nodeSelector")
    errs += core_validation.validate_tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    rcn = spec.get("runtimeClassName")
    if rcn is not None:
        errs += [invalid(f"{path}.runtimeClassName", rcn, m) for m in names.dns1123_subdomain(rcn)]
    if spec.get("overhead") is not None:
        errs += core_validation.validate_resource_list(spec["overhead"], f"{path}.overhead.limits")
    nn = spec.get("nodeName")
    if nn:
        errs += [invalid(f"{path}.nodeName", nn, m) for m in names.dns1123_subdomain(nn)]
    errs += _validate_ephemeral(spec, f"{path}.ephemeralContainers", seen)
    return errs


# EphemeralContainerCommon's fields in declaration order: True = may be set, False = "cannot be set"
EPHEMERAL_FIELDS = {"name": True, "image": True, "command": True, "args": True, "workingDir": True, "ports": False,
                    "envFrom": True, "env": True, "resources": False, "resizePolicy": False, "restartPolicy": False,
                    "volumeMounts": True, "volumeDevices": True, "livenessProbe": False, "readinessProbe": False,
                    "startupProbe": False, "lifecycle": False, "terminationMessagePath": True,
                    "terminationMessagePolicy": True, "imagePullPolicy": True, "securityContext": True, "stdin": True,
                    "stdinOnce": True, "tty": True}


def _validate_ephemeral(spec: dict, path: str, seen: set) -> list[FieldError]:
    """Ephemeral containers (kubectl debug) as upstream's validateEphemeralContainers: a container's rules, a name
    unique among all the Pod's containers, a target that is a regular or init container, and none of the fields
    that would make the workload rely on them (ports, resources, probes, lifecycle, subPath mounts)."""
    errs: list[FieldError] = []
    others = {c.get("name") for key in ("containers", "initContainers") for c in spec.get(key) or []}
    for i, ec in enumerate(spec.get("ephemeralContainers") or []):
        p = f"{path}[{i}]"
        errs += _validate_container(ec, p, seen)
        target = ec.get("targetContainerName")
        if target and target not in others:
            errs.append(FieldError(NOT_FOUND, f"{p}.targetContainerName", target))
        for f, allowed in EPHEMERAL_FIELDS.items():
            if not allowed and ec.get(f):
                errs.append(forbidden(f"{p}.{f}", "cannot be set for an Ephemeral Container"))
        for j, vm in enumerate(ec.get("volumeMounts") or []):
            for f in ("subPath", "subPathExpr"):
                if vm.get(f):
                    errs.append(forbidden(f"{p}.volumeMounts[{j}].{f}", "cannot be set for an Ephemeral Container"))
    return errs


def validate(pod: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(pod.get("metadata", {}), True, names.dns1123_subdomain)
    spec = pod.get("spec") or {}
    errs += validate_spec(spec, "spec")
    if spec.get("ephemeralContainers"):   # ValidatePodCreate: added later, through the subresource only
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    return errs


def prepare_ephemeral_update(new: dict, old: dict) -> dict:
    """The ephemeralcontainers subresource changes nothing but spec.ephemeralContainers (upstream's
    dropNonEphemeralContainerUpdates); they get a container's defaults."""
    out = copy.deepcopy(old)
    md, nmd = out.setdefault("metadata", {}), new.get("metadata") or {}
    md["resourceVersion"] = nmd.get("resourceVersion")
    eph = copy.deepcopy((new.get("spec") or {}).get("ephemeralContainers") or [])
    for c in eph:
        if isinstance(c, dict):
            _default_container(c)
    if eph:
        out.setdefault("spec", {})["ephemeralContainers"] = eph
    else:
        out.setdefault("spec", {}).pop("ephemeralContainers", None)
    return out


def validate_ephemeral_update(new: dict, old: dict) -> list[FieldError]:
    """ValidatePodEphemeralContainersUpdate: the new set is valid and keeps every existing one unchanged."""
    errs = meta.validate_object_meta(new.get("metadata", {}), True, names.dns1123_subdomain)
    errs += meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    errs += validate_spec(new.get("spec") or {}, "spec")
    if "kubernetes.io/config.mirror" in ((old.get("metadata") or {}).get("annotations") or {}):
        return [forbidden("", "static pods do not support ephemeral containers")]
    path = "spec.ephemeralContainers"
    now = {c.get("name"): c for c in (new.get("spec") or {}).get("ephemeralContainers") or []}
    for oc in (old.get("spec") or {}).get("ephemeralContainers") or []:
        nc = now.get(oc.get("name"))
        if nc is None:
            errs.append(forbidden(path, f"existing ephemeral containers {go_quote(str(oc.get('name')))} may not be removed\n"))
        elif nc != oc and godiff.ephemeral_container_diff(oc, nc):
            errs.append(forbidden(f"{path}[{oc.get('name')}]",
                                  f"existing ephemeral containers {go_quote(str(oc.get('name')))} may not be changed\n"
                                  + godiff.ephemeral_container_diff(oc, nc)))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(new.get("metadata", {}), True, names.dns1123_subdomain)
    errs += meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    nspec, ospec = new.get("spec") or {}, old.get("spec") or {}
    errs += validate_spec(nspec, "spec")
    for key in ("containers", "initContainers"):   # ValidateContainerUpdates: a count change stops here
        if len(nspec.get(key) or []) != len(ospec.get(key) or []):
            return errs + [forbidden(f"spec.{key}", "pod updates may not add or remove containers")]
    old_gates = [g.get("name") for g in ospec.get("schedulingGates") or []]
    for g in nspec.get("schedulingGates") or []:
        if g.get("name") not in old_gates:
            errs.append(forbidden("spec.schedulingGates",
                                  f"only deletion is allowed, but found new scheduling gate '{g.get('name')}'"))
    m = copy.deepcopy(nspec)
    for key in ("containers", "initContainers"):
        for c, oc in zip(m.get(key) or [], ospec.get(key) or []):
            c["image"] = oc.get("image")
    for key in ("activeDeadlineSeconds", "schedulingGates"):
        if key in ospec:
            m[key] = ospec[key]
        else:
            m.pop(key, None)
    ograce, ngrace = ospec.get("terminationGracePeriodSeconds"), m.get("terminationGracePeriodSeconds")
    if isinstance(ograce, int) and ograce < 0 and ngrace == 1:
        m["terminationGracePeriodSeconds"] = ograce
    # validateOnlyAddedTolerations: every existing toleration stays (its tolerationSeconds may change); the
    # tolerations are then left out of the spec comparison, as upstream munges them
    old_tols = ospec.get("tolerations") or []
    new_tols = [{k: v for k, v in t.items() if k != "tolerationSeconds"} for t in m.get("tolerations") or [] if isinstance(t, dict)]
    for t in old_tols:
        if not isinstance(t, dict) or {k: v for k, v in t.items() if k != "tolerationSeconds"} not in new_tols:
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
            break
    if old_tols:
        m["tolerations"] = old_tols
    else:
        m.pop("tolerations", None)
    if m != ospec:
        spec_diff = godiff.pod_spec_diff(ospec, m)
        if spec_diff:   # a difference the internal types cannot hold (e.g. [] against a missing list) is none
            errs.append(forbidden("spec", UPDATE_FORBIDDEN + "\n" + spec_diff))
    return errs


def prepare_update(new: dict, old: dict) -> None:
    new["status"] = old.get("status", {})
    # fields only the binding subresource may set
    if "nodeName" in (old.get("spec") or {}) and "nodeName" not in (new.get("spec") or {}):
        new.setdefault("spec", {})["nodeName"] = old["spec"]["nodeName"]


def table_row(pod: dict) -> list:
    md, spec, st = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    reason = st.get("reason") or st.get("phase", "")
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    has_running = False
    for cs in reversed(st.get("containerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        state = cs.get("state") or {}
        w, t = state.get("waiting"), state.get("terminated")
        if w and w.get("reason"):
            reason = w["reason"]
        elif t and t.get("reason"):
            reason = t["reason"]
        elif t:
            reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running"):
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        reason = "Running" if conds.get("Ready") == "True" else "NotReady"
    if md.get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        gates_s = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    else:
        gates_s = "<none>"
    return [md["name"], f"{ready}/{total}", reason, str(restarts), meta.age(md.get("creationTimestamp")),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", gates_s]
