"""Cluster DNS answers, as CoreDNS's kubernetes plugin gives them (the pure part of kubeclass/node/dnsserver.py):

- `<svc>.<ns>.svc.<domain>`: A = the ClusterIP; a headless Service's = its ready endpoints' addresses; an
  ExternalName Service's = a CNAME to its externalName;
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for named ports (priority 0, weight 100, the Service's name, or
  each endpoint's for a headless Service);
- `<a-b-c-d>.<ns>.pod.<domain>`: A = a.b.c.d (CoreDNS's `pods insecure`);
- `<hostname>.<svc>.<ns>.svc.<domain>` for a headless Service's endpoints with a hostname;
- a name under the domain that matches nothing: NXDOMAIN; a name that exists without records of the asked type:
  an empty answer (NODATA); anything else: forwarded to the node's resolvers.

Also the resolv.conf kubelet writes for each dnsPolicy."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_DOMAIN = "cluster.local"
TTL = 30   # kubeadm's CoreDNS Corefile: ttl 30
NDOTS = 5


@dataclass
class Answer:
    rcode: str = "NOERROR"                  # NOERROR | NXDOMAIN | FORWARD
    records: list[tuple[str, str, object]] = field(default_factory=list)   # (name, type A/CNAME/SRV, data)


def dns_service_ip(service_cidr: str) -> str:
    """The kube-dns Service's address: the 10th of the range (10.96.0.10 in the default one), as kubeadm sets it."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 10)


def _ready_addresses(slices: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for s in slices:
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready", True):
                for a in e.get("addresses") or []:
                    out.append((a, e))
    return sorted(out, key=lambda x: x[0])


def answer(qname: str, qtype: str, services: dict[str, dict], slices_of, domain: str = DEFAULT_DOMAIN) -> Answer:
    """The answer to one question. services: "ns/name" -> Service; slices_of("ns/name") -> its EndpointSlices."""
    name = qname.rstrip(".").lower()
    if name != domain and not name.endswith("." + domain):
        return Answer("FORWARD")
    labels = name[: -len(domain)].rstrip(".").split(".") if name != domain else []
    if len(labels) >= 2 and labels[-1] == "pod" and len(labels) == 3:
        dashed, _ns = labels[0], labels[1]
        try:
            ip = str(ipaddress.IPv4Address(dashed.replace("-", ".")))
        except ValueError:
            return Answer("NXDOMAIN")
        return Answer(records=[(qname, "A", ip)] if qtype in ("A", "ANY") else [])
    if not labels or labels[-1] != "svc":
        # the zone's apex and the svc / pod / namespace levels exist (CoreDNS answers NODATA there)
        if labels in ([], ["svc"], ["pod"]) or (len(labels) == 2 and labels[1] in ("svc", "pod")):
            return Answer()
        return Answer("NXDOMAIN")
    rest = labels[:-1]                                   # [..., svc, ns]
    if len(rest) == 1:                                   # <ns>.svc: exists if any Service lives there
        return Answer() if any(k.split("/")[0] == rest[0] for k in services) else Answer("NXDOMAIN")
    if len(rest) < 2:
        return Answer("NXDOMAIN")
    ns, svc_name = rest[-1], rest[-2]
    svc = services.get(f"{ns}/{svc_name}")
    if svc is None:
        return Answer("NXDOMAIN")
    spec = svc.get("spec") or {}
    fqdn = f"{svc_name}.{ns}.svc.{domain}."
    prefix = rest[:-2]
    headless = spec.get("clusterIP") == "None"
    if not prefix:
        if spec.get("type") == "ExternalName":
            target = (spec.get("externalName") or "").rstrip(".") + "."
            return Answer(records=[(qname, "CNAME", target)])
        if qtype not in ("A", "ANY"):
            return Answer()
        if headless:
            return Answer(records=[(qname, "A", a) for a, _ in _ready_addresses(slices_of(f"{ns}/{svc_name}"))])
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
        return Answer(records=[(qname, "A", ip) for ip in ips if ":" not in ip])
    if len(prefix) == 2 and prefix[0].startswith("_") and prefix[1].startswith("_"):   # _port._proto
        port_name, proto = prefix[0][1:], prefix[1][1:].upper()
        port = next((p for p in spec.get("ports") or [] if p.get("name") == port_name and p.get("protocol", "TCP") == proto), None)
        if port is None:
            return Answer("NXDOMAIN")
        if qtype not in ("SRV", "ANY"):
            return Answer()
        if headless:
            recs = []
            for a, e in _ready_addresses(slices_of(f"{ns}/{svc_name}")):
                host = e.get("hostname") or a.replace(".", "-")
                target_port = next((p.get("port") for s in slices_of(f"{ns}/{svc_name}") for p in s.get("ports") or []
                                    if p.get("name") == port_name), port.get("port"))
                recs.append((qname, "SRV", (0, 100, target_port, f"{host}.{fqdn}")))
            return Answer(records=recs)
        return Answer(records=[(qname, "SRV", (0, 100, port.get("port"), fqdn))])
    if len(prefix) == 1 and headless:                    # <hostname or dashed ip>.<svc>.<ns>.svc
        for a, e in _ready_addresses(slices_of(f"{ns}/{svc_name}")):
            if prefix[0] in (e.get("hostname"), a.replace(".", "-")):
                return Answer(records=[(qname, "A", a)] if qtype in ("A", "ANY") else [])
    return Answer("NXDOMAIN")


# ------------------------------------------------------------------------------------------------ resolv.conf

def hosts_file(pod: dict, pod_ips: list[str], node_hosts: str = "", domain: str = DEFAULT_DOMAIN) -> str:
    """A container's /etc/hosts as kubelet writes it: localhost and the IPv6 names, the Pod's IPs with its hostname
    (and its FQDN when it has a subdomain), then spec.hostAliases; a hostNetwork Pod gets the node's own file."""
    spec = pod.get("spec") or {}
    aliases = [a for a in spec.get("hostAliases") or [] if isinstance(a, dict)]
    extra = ""
    if aliases:
        extra = "\n# Entries added by HostAliases.\n" + "".join(
            f"{a.get('ip', '')}\t{chr(9).join(a.get('hostnames') or [])}\n" for a in aliases)
    if spec.get("hostNetwork"):
        return "# Kubernetes-managed hosts file (host network).\n" + node_hosts + extra
    name = (spec.get("hostname") or pod["metadata"]["name"])[:63]
    out = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
    sub = spec.get("subdomain")
    for ip in pod_ips:
        if sub:
            out += f"{ip}\t{name}.{sub}.{pod['metadata'].get('namespace', 'default')}.svc.{domain}\t{name}\n"
        else:
            out += f"{ip}\t{name}\n"
    return out + extra


def resolv_conf(pod: dict, host_resolv: str, dns_ip: str | None, domain: str = DEFAULT_DOMAIN) -> str:
    """kubelet's resolv.conf for a Pod: ClusterFirst (hostNetwork Pods only with ClusterFirstWithHostNet) points at
    the cluster DNS with the Pod's search path and ndots:5; Default copies the node's; None takes dnsConfig alone;
    dnsConfig's nameservers, searches and options are merged in as kubelet merges them."""
    spec = pod.get("spec") or {}
    ns = pod["metadata"].get("namespace", "default")
    policy = spec.get("dnsPolicy", "ClusterFirst")
    host_ns, host_search, host_opts = _parse(host_resolv)
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not dns_ip:
        policy = "Default"   # no cluster DNS on this node: the node's resolvers, as kubelet without --cluster-dns
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [dns_ip]
        search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain] + host_search
        opts = [f"ndots:{NDOTS}"]
    elif policy == "Default":
        servers, search, opts = host_ns, host_search, host_opts
    else:   # None
        servers, search, opts = [], [], []
    cfg = spec.get("dnsConfig") or {}
    servers = _unique(servers + list(cfg.get("nameservers") or []))[:3]
    search = _unique(search + list(cfg.get("searches") or []))[:32]
    merged: dict[str, str | None] = {}
    for o in opts:
        k, _, v = o.partition(":")
        merged[k] = v or None
    for o in cfg.get("options") or []:
        merged[o.get("name", "")] = o.get("value")
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if merged:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in merged.items()))
    return "\n".join(lines) + "\n"


def _parse(text: str) -> tuple[list[str], list[str], list[str]]:
    servers, search, opts = [], [], []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            opts += parts[1:]
    return servers, search, opts


def _unique(items: list[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i and i not in out:
            out.append(i)
    return out
