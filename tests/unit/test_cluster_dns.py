"""Cluster DNS answers and resolv.conf (kubeclass/api/clusterdns.py)."""
from __future__ import annotations

from kubeclass.api import clusterdns

SERVICES = {
    "default/web": {"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    "default/db": {"metadata": {"name": "db", "namespace": "default"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
    "default/ext": {"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.com"}},
}
SLICES = {"default/db": [{"ports": [{"name": "pg", "port": 5432}],
                          "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}, "hostname": "db-0"},
                                        {"addresses": ["10.244.0.8"], "conditions": {"ready": False}}]}]}


def ask(name, qtype="A"):
    return clusterdns.answer(name, qtype, SERVICES, lambda k: SLICES.get(k, []))


def test_service_pod_and_srv_records():
    assert ask("web.default.svc.cluster.local.").records == [("web.default.svc.cluster.local.", "A", "10.96.5.5")]
    assert ask("db.default.svc.cluster.local").records == [("db.default.svc.cluster.local", "A", "10.244.0.9")]  # ready only
    assert ask("ext.default.svc.cluster.local").records == [("ext.default.svc.cluster.local", "CNAME", "example.com.")]
    assert ask("_http._tcp.web.default.svc.cluster.local", "SRV").records == \
        [("_http._tcp.web.default.svc.cluster.local", "SRV", (0, 100, 80, "web.default.svc.cluster.local."))]
    assert ask("_pg._tcp.db.default.svc.cluster.local", "SRV").records[0][2] == (0, 100, 5432, "db-0.db.default.svc.cluster.local.")
    assert ask("db-0.db.default.svc.cluster.local").records == [("db-0.db.default.svc.cluster.local", "A", "10.244.0.9")]
    assert ask("10-1-2-3.default.pod.cluster.local").records == [("10-1-2-3.default.pod.cluster.local", "A", "10.1.2.3")]


def test_nxdomain_nodata_and_forwarding():
    assert ask("nope.default.svc.cluster.local").rcode == "NXDOMAIN"
    assert ask("web.other.svc.cluster.local").rcode == "NXDOMAIN"
    nodata = ask("web.default.svc.cluster.local", "AAAA")
    assert nodata.rcode == "NOERROR" and nodata.records == []
    assert ask("default.svc.cluster.local").rcode == "NOERROR"
    assert ask("example.org").rcode == "FORWARD"
    assert ask("_nope._tcp.web.default.svc.cluster.local", "SRV").rcode == "NXDOMAIN"


def test_resolv_conf_per_dns_policy():
    host = "nameserver 10.0.0.2\nsearch corp.example\noptions rotate\n"
    pod = {"metadata": {"namespace": "team"}, "spec": {}}
    assert clusterdns.resolv_conf(pod, host, "10.96.0.10") == (
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n")
    assert clusterdns.resolv_conf({**pod, "spec": {"dnsPolicy": "Default"}}, host, "10.96.0.10") == \
        "search corp.example\nnameserver 10.0.0.2\noptions rotate\n"
    host_net = {**pod, "spec": {"hostNetwork": True}}
    assert "nameserver 10.0.0.2" in clusterdns.resolv_conf(host_net, host, "10.96.0.10")
    assert "nameserver 10.96.0.10" in clusterdns.resolv_conf({**pod, "spec": {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}},
                                                              host, "10.96.0.10")
    merged = {**pod, "spec": {"dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "1"}]}}}
    assert clusterdns.resolv_conf(merged, host, "10.96.0.10").splitlines()[1:] == ["nameserver 10.96.0.10", "nameserver 1.1.1.1",
                                                                                  "options ndots:1"]
    assert clusterdns.dns_service_ip("10.96.0.0/12") == "10.96.0.10"


def test_hosts_file_as_kubelet_writes_it():
    from kubeclass.api.clusterdns import hosts_file
    pod = {"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {"hostAliases": [{"ip": "10.1.2.3", "hostnames": ["a", "b"]}]}}
    assert hosts_file(pod, ["10.244.0.7"]) == (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        "10.244.0.7\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\ta\tb\n")
    pod["spec"] = {"hostname": "db", "subdomain": "backend"}
    assert hosts_file(pod, ["10.244.0.7"]).endswith("10.244.0.7\tdb.backend.shop.svc.cluster.local\tdb\n")
    pod["spec"] = {"hostNetwork": True}
    assert hosts_file(pod, [], "127.0.0.1 localhost\n") == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
