"""Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1): validation, `kubectl get` columns, and what a
Service's endpoints are — the pure part of upstream's endpoint and EndpointSlice controllers (which Pods a Service
selects, which of them are ready, serving or terminating, the port each named targetPort resolves to on each Pod).
The controllers (kubeclass/controllers/endpoints.py, endpointslice.py) compare this with what is stored."""
from __future__ import annotations

import ipaddress

from . import meta, names
from .errors import FieldError, invalid, not_supported, required, too_long

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
MAX_ENDPOINTS_PER_SLICE = 100      # kube-controller-manager's --max-endpoints-per-slice default
ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


# ------------------------------------------------------------------------------------------------ validation

def endpoint_ip_problems(ip: str) -> list[str]:
    """ValidateEndpointIP (ValidateNonSpecialIP): no unspecified, loopback or link-local addresses — an endpoint
    there would let a Service reach the node itself."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return ["must be a valid IP address"]
    out = []
    if a.is_unspecified:
        out.append(f"may not be unspecified ({ip})")
    if a.is_loopback:
        out.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if a.is_link_local:
        out.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    if a in ipaddress.ip_network("224.0.0.0/24") or (a.version == 6 and a in ipaddress.ip_network("ff02::/16")):
        out.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return out


def _validate_port(p: dict, path: str, name_required: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = p.get("name") or ""
    if name:
        errs += [invalid(f"{path}.name", name, m) for m in names.dns1123_label(name)]
    elif name_required:
        errs.append(required(f"{path}.name"))
    port = p.get("port")
    if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
        errs.append(invalid(f"{path}.port", port, "must be between 1 and 65535, inclusive"))
    proto = p.get("protocol") or "TCP"
    if proto not in ("SCTP", "TCP", "UDP"):
        errs.append(not_supported(f"{path}.protocol", proto, ["SCTP", "TCP", "UDP"]))
    return errs


def endpoints_validate(ep: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(ep.get("metadata", {}), True, names.dns1123_subdomain)
    for i, ss in enumerate(ep.get("subsets") or []):
        for kind in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(ss.get(kind) or []):
                errs += [invalid(f"subsets[{i}].{kind}[{j}].ip", a.get("ip", ""), m) for m in endpoint_ip_problems(a.get("ip", ""))]
        ports = ss.get("ports") or []
        for j, p in enumerate(ports):
            errs += _validate_port(p, f"subsets[{i}].ports[{j}]", len(ports) > 1)
            if p.get("port") is None:
                errs.append(invalid(f"subsets[{i}].ports[{j}].port", 0, "must be between 1 and 65535, inclusive"))
    return errs


def endpointslice_defaults(s: dict) -> None:
    for p in s.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            p.setdefault("name", "")


def endpointslice_validate(s: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(s.get("metadata", {}), True, names.dns1123_subdomain)
    at = s.get("addressType") or ""
    if not at:
        errs.append(required("addressType"))
    elif at not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", at, ADDRESS_TYPES))
    eps = s.get("endpoints") or []
    if len(eps) > 1000:
        errs.append(too_long("endpoints", 1000))
    for i, e in enumerate(eps):
        addrs = e.get("addresses") or []
        if not addrs:
            errs.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        for j, a in enumerate(addrs):
            p = f"endpoints[{i}].addresses[{j}]"
            if at in ("IPv4", "IPv6"):
                try:
                    ok = ipaddress.ip_address(a).version == (4 if at == "IPv4" else 6)
                except ValueError:
                    ok = False
                if not ok:
                    errs.append(invalid(p, a, f"must be a valid {at} address"))
                    continue
                errs += [invalid(p, a, m) for m in endpoint_ip_problems(a)]
            elif at == "FQDN":
                errs += [invalid(p, a, m) for m in names.dns1123_subdomain(a)]
    ports = s.get("ports") or []
    for i, p in enumerate(ports):
        errs += _validate_port(p, f"ports[{i}]", False)
    return errs


def endpointslice_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {})) + endpointslice_validate(new)
    if new.get("addressType") != old.get("addressType"):
        errs.append(invalid("addressType", new.get("addressType", ""), "field is immutable"))
    return errs


# ------------------------------------------------------------------------------------------------ kubectl get

def _first_three(items: list[str], empty: str = "<none>") -> str:
    if not items:
        return empty
    s = ",".join(items[:3])
    return s + (f" + {len(items) - 3} more..." if len(items) > 3 else "")


def endpoints_row(ep: dict) -> list:
    out = []
    for ss in ep.get("subsets") or []:
        ports = ss.get("ports") or []
        for a in ss.get("addresses") or []:
            if ports:
                out += [f"{a.get('ip')}:{p.get('port')}" for p in ports]
            else:
                out.append(a.get("ip", ""))
    return [ep["metadata"]["name"], _first_three(out), meta.age(ep["metadata"].get("creationTimestamp"))]


def endpointslice_row(s: dict) -> list:
    ports = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in s.get("ports") or []]
    addrs = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    return [s["metadata"]["name"], s.get("addressType", ""), ",".join(ports) or "<unset>", _first_three(addrs, "<unset>"),
            meta.age(s["metadata"].get("creationTimestamp"))]


# ------------------------------------------------------------------------------------------------ what a Service's endpoints are

def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def selects(svc: dict, pod: dict) -> bool:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel or pod["metadata"].get("namespace") != svc["metadata"].get("namespace"):
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """ShouldPodBeInEndpoints: an address, not finished for good, terminating ones only when asked."""
    st, spec = pod.get("status") or {}, pod.get("spec") or {}
    if not st.get("podIP"):
        return False
    if not include_terminating and pod["metadata"].get("deletionTimestamp"):
        return False
    phase, policy = st.get("phase"), spec.get("restartPolicy", "Always")
    if policy == "Never" and phase in ("Failed", "Succeeded"):
        return False
    if policy == "OnFailure" and phase == "Succeeded":
        return False
    return True


def resolve_port(svc_port: dict, pod: dict) -> int | None:
    """The port a Service port's targetPort names on this Pod (FindPort): a number as is, a name through the Pod's
    container ports of that name and protocol."""
    tp = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    proto = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == tp and p.get("protocol", "TCP") == proto:
                return p.get("containerPort")
    return None


def _target_ref(pod: dict) -> dict:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md.get("namespace", ""), "name": md["name"], "uid": md.get("uid", "")}


def _groups(svc: dict, pods: list[dict], include_terminating: bool) -> dict[tuple, list[dict]]:
    """The selected Pods grouped by the port numbers the Service's ports resolve to on each."""
    groups: dict[tuple, list[dict]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not selects(svc, pod) or not in_endpoints(pod, include_terminating):
            continue
        ports = []
        for sp in (svc.get("spec") or {}).get("ports") or []:
            n = resolve_port(sp, pod)
            if n is not None:
                ports.append((sp.get("name", ""), n, sp.get("protocol", "TCP")))
        groups.setdefault(tuple(ports), []).append(pod)
    return groups


def desired_slices(svc: dict, pods: list[dict]) -> list[dict]:
    """The EndpointSlices' contents for a Service (ports, endpoints; at most 100 endpoints each), as upstream's
    controller fills them: ready = ready and not terminating (always, with publishNotReadyAddresses), serving =
    ready, terminating = being deleted."""
    spec = svc.get("spec") or {}
    if not spec.get("selector") or spec.get("type") == "ExternalName":
        return []
    publish = bool(spec.get("publishNotReadyAddresses"))
    out = []
    for ports, members in _groups(svc, pods, True).items():
        eps = []
        for pod in members:
            ready = pod_ready(pod)
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            ep = {"addresses": [pod["status"]["podIP"]],
                  "conditions": {"ready": publish or (ready and not terminating), "serving": ready, "terminating": terminating},
                  "targetRef": _target_ref(pod)}
            if (pod.get("spec") or {}).get("nodeName"):
                ep["nodeName"] = pod["spec"]["nodeName"]
            eps.append(ep)
        pts = [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]
        for i in range(0, max(len(eps), 1), MAX_ENDPOINTS_PER_SLICE):
            out.append({"ports": pts, "endpoints": eps[i:i + MAX_ENDPOINTS_PER_SLICE]})
    return out or [{"ports": [], "endpoints": []}]   # a Service without endpoints keeps one empty slice, as upstream


def slice_labels(svc: dict) -> dict:
    labels = {k: v for k, v in (svc["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels[SERVICE_NAME_LABEL] = svc["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def desired_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """The legacy Endpoints object's subsets (the endpoints controller's): ready Pods as addresses, the others as
    notReadyAddresses, grouped by resolved ports; terminating Pods only with publishNotReadyAddresses."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    subsets = []
    for ports, members in _groups(svc, pods, publish).items():
        ready, not_ready = [], []
        for pod in members:
            a = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
            if (pod.get("spec") or {}).get("nodeName"):
                a["nodeName"] = pod["spec"]["nodeName"]
            (ready if publish or pod_ready(pod) else not_ready).append(a)
        ss: dict = {}
        if ready:
            ss["addresses"] = ready
        if not_ready:
            ss["notReadyAddresses"] = not_ready
        if ports:
            ss["ports"] = [{"name": n, "port": p, "protocol": pr} if n else {"port": p, "protocol": pr} for n, p, pr in ports]
        if ss.get("addresses") or ss.get("notReadyAddresses"):
            subsets.append(ss)
    return subsets


def endpoints_labels(svc: dict) -> dict:
    labels = dict(svc["metadata"].get("labels") or {})
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels
