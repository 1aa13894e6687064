"""core/v1 Service: defaults, validation and update rules as upstream 1.32 (pkg/apis/core/validation ValidateService,
the service REST's IP-family and allocated-field handling), and `kubectl get svc`'s columns. Allocation of
cluster IPs and node ports is I/O and lives in kubeclass/server/service_alloc.py; this module only checks what a
Service asks for."""
from __future__ import annotations

import copy
import ipaddress
import re

from . import meta, names
from .errors import (FieldError, GoRepr, duplicate, forbidden, go_quote, invalid, not_supported,
                     required)

TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
AFFINITIES = ["ClientIP", "None"]
FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
KUBELET_PORT = 10250
DEFAULT_AFFINITY_TIMEOUT = 10800   # seconds, upstream's DefaultClientIPServiceAffinitySeconds
MAX_AFFINITY_TIMEOUT = 86400
_port_name_letter = re.compile(r"[a-z]")
_port_name_chars = re.compile(r"^[-a-z0-9]+$")


def headless(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def uses_cluster_ip(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def uses_node_ports(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


# ------------------------------------------------------------------------------------------------ defaults

def defaults(svc: dict) -> None:
    """SetDefaults_Service and the strategy's normalisation (clusterIPs from clusterIP)."""
    spec = svc.setdefault("spec", {})
    typ = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        cfg.setdefault("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        p.setdefault("protocol", "TCP")
        if p.get("targetPort") in (None, 0, ""):
            p["targetPort"] = p.get("port")
    if typ != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if typ in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if typ == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]


def init_ip_families(svc: dict) -> None:
    """The IP family fields a single-stack (IPv4) cluster sets at create (the service REST's initIPFamilyFields)."""
    spec = svc.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        spec.pop("ipFamilies", None)
        spec.pop("ipFamilyPolicy", None)
        return
    if headless(svc) and not spec.get("selector"):
        spec.setdefault("ipFamilyPolicy", "RequireDualStack")
    else:
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("ipFamilies", ["IPv4"])


def prepare_update(new: dict, old: dict) -> None:
    """Status is kept; what the system allocated is kept when an update leaves it out (kubectl apply and
    replace send manifests without clusterIP / nodePort), as upstream's service REST patches allocated values."""
    new["status"] = old.get("status", {})
    ns, os_ = new.setdefault("spec", {}), old.get("spec") or {}
    if ns.get("type", "ClusterIP") != "ExternalName" and os_.get("type", "ClusterIP") != "ExternalName":
        if not ns.get("clusterIP") and not ns.get("clusterIPs") and os_.get("clusterIP"):
            ns["clusterIP"], ns["clusterIPs"] = os_["clusterIP"], list(os_.get("clusterIPs") or [os_["clusterIP"]])
        for f in ("ipFamilies", "ipFamilyPolicy"):
            if f not in ns and f in os_:
                ns[f] = os_[f]
    if uses_node_ports(new) and uses_node_ports(old):
        old_ports = {(p.get("protocol", "TCP"), p.get("port")): p.get("nodePort") for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                was = old_ports.get((p.get("protocol", "TCP"), p.get("port")))
                if was:
                    p["nodePort"] = was
    _drop_type_dependent(new, old)
    if ns.get("type") == "ExternalName":
        for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            ns.pop(f, None)


def _drop_type_dependent(new: dict, old: dict) -> None:
    """A type change clears what only the old type needed, when the update left it as it was (upstream's
    dropTypeDependentFields): NodePort -> ClusterIP drops the node ports and externalTrafficPolicy."""
    ns, os_ = new.setdefault("spec", {}), old.get("spec") or {}
    if uses_node_ports(old) and not uses_node_ports(new):
        old_ports = {(p.get("protocol", "TCP"), p.get("port")): p.get("nodePort") for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            if isinstance(p, dict) and p.get("nodePort") and old_ports.get((p.get("protocol", "TCP"), p.get("port"))) == p["nodePort"]:
                del p["nodePort"]
    external = ("NodePort", "LoadBalancer")
    if ns.get("type") not in external and os_.get("type") in external:
        for f in ("externalTrafficPolicy", "healthCheckNodePort"):
            if f in ns and ns.get(f) == os_.get(f):
                del ns[f]
    if ns.get("type") != "LoadBalancer" and os_.get("type") == "LoadBalancer":
        for f in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if f in ns and ns.get(f) == os_.get(f):
                del ns[f]


def prepare_create(svc: dict) -> None:
    svc["status"] = {"loadBalancer": {}}


def lb_ingress_ips(svc: dict) -> list[str]:
    """The IPs in a Service's status.loadBalancer.ingress (hostname-only entries left out)."""
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if isinstance(i, dict) and i.get("ip")]


def prepare_status_update(new: dict, old: dict) -> dict:
    """services/status: only the status changes; an ingress IP without ipMode gets VIP (upstream's defaulting
    with LoadBalancerIPMode, on in 1.32) on a LoadBalancer Service."""
    out = {**copy.deepcopy(old), "status": new.get("status") or {}}   # as the generic status path: metadata from old
    if (old.get("spec") or {}).get("type") == "LoadBalancer":
        for ing in (out["status"].get("loadBalancer") or {}).get("ingress") or []:
            if isinstance(ing, dict) and ing.get("ip") and not ing.get("ipMode"):
                ing["ipMode"] = "VIP"
    return out


IP_MODES = ["Proxy", "VIP"]


def validate_status_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateServiceStatusUpdate: the object meta and status.loadBalancer.ingress (IP, hostname, ipMode)."""
    errs = meta.validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    path = "status.loadBalancer.ingress"
    for i, ing in enumerate(((new.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []):
        p = f"{path}[{i}]"
        if not isinstance(ing, dict):
            errs.append(invalid(p, ing, "must be an object"))
            continue
        ip, host, mode = ing.get("ip") or "", ing.get("hostname") or "", ing.get("ipMode")
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                errs.append(invalid(f"{p}.ip", ip, "must be a valid IP address"))
        if host:
            for msg in names.dns1123_subdomain(host):
                errs.append(invalid(f"{p}.hostname", host, msg))
            try:
                ipaddress.ip_address(host)
                errs.append(invalid(f"{p}.hostname", host, "must be a DNS name, not an IP address"))
            except ValueError:
                pass
        if mode is None:
            if ip:
                errs.append(required(f"{p}.ipMode", "must be specified when `ip` is set"))
        elif not ip:
            errs.append(forbidden(f"{p}.ipMode", "may not be specified when `ip` is not set"))
        elif mode not in IP_MODES:
            errs.append(not_supported(f"{p}.ipMode", mode, IP_MODES))
    return errs


# ------------------------------------------------------------------------------------------------ validation

def _port_name_problems(name: str) -> list[str]:
    """IsValidPortName (an IANA_SVC_NAME)."""
    out = []
    if len(name) > 15:
        out.append("must be no more than 15 characters")
    if not _port_name_chars.match(name):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _port_name_letter.search(name):
        out.append("must contain at least one letter (a-z)")
    if "--" in name:
        out.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def _valid_port(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535


def _go_service_port(p: dict) -> GoRepr:
    """%#v of the core.ServicePort key upstream reports duplicate (protocol, port) pairs with."""
    return GoRepr(f'core.ServicePort{{Name:"", Protocol:{go_quote(p.get("protocol", ""))}, AppProtocol:(*string)(nil), '
                  f'Port:{p.get("port")}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def _validate_ports(svc: dict) -> list[FieldError]:
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    errs: list[FieldError] = []
    seen_names: set = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{path}.name"))
        elif name:
            errs += [invalid(f"{path}.name", name, m) for m in names.dns1123_label(name)]
            if name in seen_names:
                errs.append(duplicate(f"{path}.name", name))
            seen_names.add(name)
        if not _valid_port(p.get("port")):
            errs.append(invalid(f"{path}.port", p.get("port") if p.get("port") is not None else 0,
                                "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol") or ""
        if not proto:
            errs.append(required(f"{path}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{path}.protocol", proto, PROTOCOLS))
        tp = p.get("targetPort")
        if isinstance(tp, str) and not tp.isdigit():
            errs += [invalid(f"{path}.targetPort", tp, m) for m in _port_name_problems(tp)]
        elif tp is not None:
            v = int(tp) if isinstance(tp, str) else tp
            if not _valid_port(v):
                errs.append(invalid(f"{path}.targetPort", v, "must be between 1 and 65535, inclusive"))
        np = p.get("nodePort")
        if np not in (None, 0) and not _valid_port(np):
            errs.append(invalid(f"{path}.nodePort", np, "must be between 1 and 65535, inclusive"))
    return errs


def _validate_cluster_ips(svc: dict) -> list[FieldError]:
    spec = svc.get("spec") or {}
    errs: list[FieldError] = []
    ips = spec.get("clusterIPs") or []
    if spec.get("type") == "ExternalName":
        return errs
    if spec.get("clusterIP") and ips and spec["clusterIP"] != ips[0]:
        errs.append(invalid("spec.clusterIPs", GoRepr("[]string{" + ", ".join(go_quote(i) for i in ips) + "}"),
                            "element [0] must match clusterIP"))
    for i, ip in enumerate(ips):
        if ip == "None":
            if i > 0 or len(ips) > 1:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(invalid(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", pol, FAMILY_POLICIES))
    for i, fam in enumerate(spec.get("ipFamilies") or []):
        if fam not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, ["IPv4", "IPv6"]))
    return errs


def validate(svc: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(svc.get("metadata", {}), True, names.dns1035_label)
    spec = svc.get("spec") or {}
    typ = spec.get("type", "")
    ports = spec.get("ports") or []
    if not ports and not headless(svc) and typ != "ExternalName":
        errs.append(required("spec.ports"))
    if typ == "LoadBalancer":
        for i, p in enumerate(ports):
            if p.get("port") == KUBELET_PORT:
                errs.append(invalid(f"spec.ports[{i}]", KUBELET_PORT, f"may not expose port {KUBELET_PORT} externally since it is used by kubelet"))
    if typ == "ExternalName":
        if spec.get("clusterIPs") or spec.get("clusterIP"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").rstrip(".")
        if cname:
            errs += [invalid("spec.externalName", cname, m) for m in names.dns1123_subdomain(cname)]
        else:
            errs.append(required("spec.externalName"))
    errs += _validate_ports(svc)
    if spec.get("selector"):
        errs += names.validate_labels(spec["selector"], "spec.selector")
    aff = spec.get("sessionAffinity") or ""
    if not aff:
        errs.append(required("spec.sessionAffinity"))
    elif aff not in AFFINITIES:
        errs.append(not_supported("spec.sessionAffinity", aff, AFFINITIES))
    elif aff == "ClientIP":
        t = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if not isinstance(t, int) or not 0 < t <= MAX_AFFINITY_TIMEOUT:
            errs.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t if t is not None else 0,
                                f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"))
    elif spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    errs += _validate_cluster_ips(svc)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(invalid(f"spec.externalIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
    if not typ:
        errs.append(required("spec.type"))
    elif typ not in TYPES:
        errs.append(not_supported("spec.type", typ, TYPES))
    if typ == "ClusterIP":
        for i, p in enumerate(ports):
            if p.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    seen_np: set = set()
    seen_pp: set = set()
    for i, p in enumerate(ports):
        if p.get("nodePort"):
            k = (p.get("protocol"), p["nodePort"])
            if k in seen_np:
                errs.append(duplicate(f"spec.ports[{i}].nodePort", p["nodePort"]))
            seen_np.add(k)
    for i, p in enumerate(ports):
        k = (p.get("protocol"), p.get("port"))
        if k in seen_pp:
            errs.append(duplicate(f"spec.ports[{i}]", _go_service_port(p)))
        seen_pp.add(k)
    for f in ("externalTrafficPolicy", "internalTrafficPolicy"):
        v = spec.get(f)
        if v is not None and v not in TRAFFIC_POLICIES:
            errs.append(not_supported(f"spec.{f}", v, TRAFFIC_POLICIES))
    if spec.get("externalTrafficPolicy") and typ not in ("NodePort", "LoadBalancer"):
        errs.append(invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                            "may only be set for externally-accessible services"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    errs += validate(new)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if ns.get("type") != "ExternalName" and os_.get("type") != "ExternalName" and os_.get("clusterIP") \
            and ns.get("clusterIP") != os_.get("clusterIP"):
        errs.append(invalid("spec.clusterIP", ns.get("clusterIP", ""), "field is immutable"))
    return errs


# ------------------------------------------------------------------------------------------------ kubectl get

def _ports(spec: dict) -> str:
    out = []
    for p in spec.get("ports") or []:
        s = str(p.get("port"))
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external_ip(svc: dict) -> str:
    spec, st = svc.get("spec") or {}, svc.get("status") or {}
    typ = spec.get("type", "ClusterIP")
    ext = list(spec.get("externalIPs") or [])
    if typ in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if typ == "ExternalName":
        return spec.get("externalName", "")
    ingress = [i.get("ip") or i.get("hostname") for i in (st.get("loadBalancer") or {}).get("ingress") or []]
    ips = [i for i in ingress if i] + ext
    return ",".join(ips) if ips else "<pending>"


def table_row(svc: dict) -> list:
    md, spec = svc["metadata"], svc.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    cluster_ip = "<none>" if typ == "ExternalName" else (",".join(spec.get("clusterIPs") or []) or spec.get("clusterIP") or "<none>")
    sel = spec.get("selector") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"
    return [md["name"], typ, cluster_ip, _external_ip(svc), _ports(spec), meta.age(md.get("creationTimestamp")), selector]
