"""Pod IPs through the real CNI plugins (issue 14): Debian's bridge, host-local and portmap run as containerd
runs them. runc and gVisor Pods on one node get distinct addresses from the node's Pod CIDR, reach each other
by IP across handlers (a gVisor Pod through its own netstack on the veth), hostPort maps through portmap, the
downward API sees status.podIP, and deleting a Pod releases its address and namespace."""
from __future__ import annotations

import ipaddress
import json
import os
import urllib.request

import pytest
import yaml

from nodecluster import IMAGE, NODE, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n---\n"
           "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: standard\nhandler: runc\n")
SERVE = "mkdir -p /www; echo hello from $POD_NAME at $POD_IP > /www/index.html; exec httpd -f -p 8080 -h /www"


def web_pod(name: str, rc: str, host_port: int | None = None) -> str:
    port = {"containerPort": 8080, **({"hostPort": host_port} if host_port else {})}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
                           "spec": {"runtimeClassName": rc, "terminationGracePeriodSeconds": 1,
                                    "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                    "command": ["sh", "-c", SERVE], "ports": [port],
                                                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}})


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    node_cluster.ok("apply", "-f", "-", input=web_pod("web-runc", "standard", host_port=18081))
    node_cluster.ok("apply", "-f", "-", input=web_pod("web-gvisor", "gvisor"))
    for n in ("web-runc", "web-gvisor"):
        node_cluster.wait_phase(n, ("Running",))
    yield node_cluster
    node_cluster.kubectl("delete", "pod", "web-runc", "web-gvisor", "--grace-period=1")


def ip_of(nc, name: str) -> str:
    return wait_for(lambda: nc.pod(name).get("status", {}).get("podIP"), 20, what=f"{name}'s podIP")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def test_pods_get_distinct_ips_from_the_nodes_cidr(nc):
    node = json.loads(nc.ok("get", "node", NODE, "-o", "json"))
    cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
    assert node["spec"]["podCIDRs"] == [str(cidr)]
    ips = {n: ip_of(nc, n) for n in ("web-runc", "web-gvisor")}
    assert len(set(ips.values())) == 2
    for n, ip in ips.items():
        assert ipaddress.ip_address(ip) in cidr
        assert nc.pod(n)["status"]["podIPs"] == [{"ip": ip}]
    wide = nc.ok("get", "pods", "web-runc", "web-gvisor", "-o", "wide")
    for ip in ips.values():
        assert ip in wide


@pytest.mark.parametrize("name", ["web-runc", "web-gvisor"])
def test_the_node_reaches_each_pod_by_ip_and_the_downward_api_knows_it(nc, name):
    ip = ip_of(nc, name)
    assert wait_for(lambda: get(f"http://{ip}:8080/"), 20) == f"hello from {name} at {ip}\n"


def test_pods_reach_each_other_across_handlers(nc):
    runc_ip, gvisor_ip = ip_of(nc, "web-runc"), ip_of(nc, "web-gvisor")
    assert nc.ok("exec", "web-runc", "--", "wget", "-qO-", f"http://{gvisor_ip}:8080/") == f"hello from web-gvisor at {gvisor_ip}\n"
    assert nc.ok("exec", "web-gvisor", "--", "wget", "-qO-", f"http://{runc_ip}:8080/") == f"hello from web-runc at {runc_ip}\n"
    # the gVisor Pod's interface is served by gVisor's netstack, its kernel gVisor's
    assert f"inet {gvisor_ip}/" in nc.ok("exec", "web-gvisor", "--", "ip", "addr")
    assert "Starting gVisor" in nc.ok("exec", "web-gvisor", "--", "dmesg")


def test_host_port_through_portmap(nc):
    runc_ip = ip_of(nc, "web-runc")
    node_ip = nc.pod("web-runc")["status"]["hostIP"]
    # from another Pod to the node's address (portmap's DNAT in PREROUTING)
    out = wait_for(lambda: nc.ok("exec", "web-gvisor", "--", "wget", "-qO-", f"http://{node_gateway(nc)}:18081/"), 20)
    assert out == f"hello from web-runc at {runc_ip}\n"
    assert node_ip


def node_gateway(nc) -> str:
    """The bridge's address: the first of the Pod CIDR (the node as the Pods see it)."""
    cidr = ipaddress.ip_network(json.loads(nc.ok("get", "node", NODE, "-o", "json"))["spec"]["podCIDR"])
    return str(next(cidr.hosts()))


def test_deleting_a_pod_releases_its_address_and_namespace(nc):
    nc.ok("apply", "-f", "-", input=web_pod("short-lived", "standard"))
    nc.wait_phase("short-lived", ("Running",))
    uid = nc.pod("short-lived")["metadata"]["uid"]
    ip = ip_of(nc, "short-lived")
    ipam = os.path.join(nc.data_dir, "node", "cni", "ipam", "kubeclass")
    assert os.path.exists(os.path.join(ipam, ip))
    assert os.path.exists(f"/run/netns/kc-{uid}")
    nc.ok("delete", "pod", "short-lived", "--grace-period=1")
    wait_for(lambda: not os.path.exists(os.path.join(ipam, ip)), 20, what="the address released")
    assert not os.path.exists(f"/run/netns/kc-{uid}")
