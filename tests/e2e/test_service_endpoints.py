"""EndpointSlices and Endpoints of a Service from the real node's Pods (issue 18 part 2): a Deployment of busybox httpd
on runc and gVisor exposed with `kubectl expose`; the slices list the ready Pods' IPs with upstream's conditions and
the named targetPort resolved per Pod; scaling changes them within a second or so; a Pod that fails its readiness
probe is listed not ready; terminating Pods are listed as terminating; deleting the Service removes both."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")


def deployment(name: str, replicas: int, rc: str | None) -> str:
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"terminationGracePeriodSeconds": 1,
                                  "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                  "command": ["sh", "-c", "mkdir -p /www; echo hi > /www/ready; exec httpd -f -p 8080 -h /www"],
                                                  "ports": [{"name": "http", "containerPort": 8080}],
                                                  "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}}]}}}
    if rc:
        spec["template"]["spec"]["runtimeClassName"] = rc
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec})


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    yield node_cluster
    node_cluster.kubectl("delete", "deployment,service", "--all")


def slices(nc, svc: str) -> list[dict]:
    out = json.loads(nc.ok("get", "endpointslices", "-l", f"kubernetes.io/service-name={svc}", "-o", "json"))
    return out["items"]


def ready_ips(nc, svc: str) -> set[str]:
    return {e["addresses"][0] for s in slices(nc, svc) for e in s.get("endpoints") or [] if e["conditions"]["ready"]}


def pod_ips(nc, app: str) -> set[str]:
    pods = json.loads(nc.ok("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
    return {p["status"].get("podIP") for p in pods if not p["metadata"].get("deletionTimestamp")}


@pytest.mark.parametrize("rc", [None, "gvisor"])
def test_expose_lists_the_ready_pods(nc, rc):
    name = f"web-{rc or 'runc'}"
    nc.ok("apply", "-f", "-", input=deployment(name, 2, rc))
    assert nc.ok("expose", "deploy", name, "--port", "80", "--target-port", "http").strip() == f"service/{name} exposed"
    nc.ok("rollout", "status", f"deploy/{name}", "--timeout=120s")
    wait_for(lambda: ready_ips(nc, name) == pod_ips(nc, name) and len(pod_ips(nc, name)) == 2, 30, what="two ready endpoints")
    (s,) = slices(nc, name)
    assert s["addressType"] == "IPv4" and s["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]   # 'http' resolved
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    owner = s["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", name, True)
    e = s["endpoints"][0]
    assert e["conditions"] == {"ready": True, "serving": True, "terminating": False} and e["targetRef"]["kind"] == "Pod"
    row = nc.ok("get", "endpoints", name).splitlines()[1].split()
    assert sorted(row[1].split(",")) == sorted(f"{ip}:8080" for ip in pod_ips(nc, name))
    # scaling up shows up promptly
    t0 = time.monotonic()
    nc.ok("scale", f"deploy/{name}", "--replicas=3")
    wait_for(lambda: len(ready_ips(nc, name)) == 3, 60, step=0.05, what="a third ready endpoint")
    print(f"{name}: scale 2->3 reflected in the EndpointSlice after {time.monotonic() - t0:.2f} s")
    # a Pod that stops being ready stays listed, not ready
    victim = sorted(pod_ips(nc, name))[0]
    pod = next(p for p in json.loads(nc.ok("get", "pods", "-l", f"app={name}", "-o", "json"))["items"] if p["status"]["podIP"] == victim)
    nc.ok("exec", pod["metadata"]["name"], "--", "rm", "/www/ready")
    wait_for(lambda: victim not in ready_ips(nc, name) and victim in {e["addresses"][0] for s in slices(nc, name) for e in s["endpoints"]},
             30, what="the unready Pod listed not ready")
    ep = json.loads(nc.ok("get", "endpoints", name, "-o", "json"))
    assert victim in {a["ip"] for ss in ep["subsets"] for a in ss.get("notReadyAddresses") or []}
    nc.ok("delete", "service", name)
    wait_for(lambda: not slices(nc, name) and nc.kubectl("get", "endpoints", name).returncode != 0, 30, what="slices and endpoints gone")
    nc.ok("delete", "deployment", name)


def test_a_service_without_pods_keeps_one_empty_slice(nc):
    nc.ok("create", "service", "clusterip", "lonely", "--tcp=80:8080")
    wait_for(lambda: len(slices(nc, "lonely")) == 1, 30, what="the placeholder slice")
    row = nc.ok("get", "endpointslices", "-l", "kubernetes.io/service-name=lonely").splitlines()[1].split()
    assert row[1:4] == ["IPv4", "<unset>", "<unset>"]
    nc.ok("delete", "service", "lonely")


def host_address() -> str | None:
    """A global address of this machine outside the test bridges (where a NodePort answers)."""
    import subprocess
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        dev, addr = line.split()[1], line.split()[3].split("/")[0]
        if not dev.startswith(("kctest", "kcdev", "kubeclass", "kcbench")) and not addr.startswith("10.96."):
            return addr
    return None


def clients(nc) -> None:
    for name, rc in (("client-runc", None), ("client-gvisor", "gvisor")):
        spec = {"terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}
        if rc:
            spec["runtimeClassName"] = rc
        nc.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
    for name in ("client-runc", "client-gvisor"):
        nc.wait_phase(name, ("Running",))


def test_cluster_ips_and_node_ports_carry_traffic(nc):
    """The node's service proxy (nftables): a ClusterIP reaches the Service's ready Pods from runc and gVisor Pods and
    from the node, spread over them; a NodePort answers on the node's address; a Service without endpoints is
    refused at once; ClientIP affinity keeps a client on one Pod; deleting the Service removes its rules."""
    import subprocess
    import urllib.request
    clients(nc)
    nc.ok("apply", "-f", "-", input=deployment("proxied", 2, None).replace("echo hi > /www/ready", "echo hi > /www/ready; hostname > /www/index.html"))
    nc.ok("expose", "deploy", "proxied", "--port", "80", "--target-port", "http", "--type", "NodePort")
    nc.ok("rollout", "status", "deploy/proxied", "--timeout=120s")
    wait_for(lambda: len(ready_ips(nc, "proxied")) == 2, 30, what="two ready endpoints")
    svc = json.loads(nc.ok("get", "svc", "proxied", "-o", "json"))
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    names = {p["metadata"]["name"] for p in json.loads(nc.ok("get", "pods", "-l", "app=proxied", "-o", "json"))["items"]}

    def fetch(client: str) -> str:
        return nc.ok("exec", client, "--", "wget", "-qO-", f"http://{ip}/").strip()
    wait_for(lambda: fetch("client-runc") in names, 20, what="the ClusterIP answering")   # the rules follow the slices
    seen = {fetch("client-runc") for _ in range(12)}
    assert seen == names, seen                                    # random over both (2^-11 to fail by chance)
    assert fetch("client-gvisor") in names                        # gVisor's netstack goes through the node too
    assert urllib.request.urlopen(f"http://{ip}/", timeout=5).read().decode().strip() in names   # from the node
    host = host_address()
    if host is not None:
        assert urllib.request.urlopen(f"http://{host}:{node_port}/", timeout=5).read().decode().strip() in names
    nc.ok("create", "service", "clusterip", "nobody-home", "--tcp=80:8080")
    empty_ip = json.loads(nc.ok("get", "svc", "nobody-home", "-o", "json"))["spec"]["clusterIP"]
    t0 = time.monotonic()
    out = nc.kubectl("exec", "client-runc", "--", "wget", "-qO-", f"http://{empty_ip}/")
    assert out.returncode == 1 and time.monotonic() - t0 < 5      # refused, not timed out
    nc.ok("patch", "svc", "proxied", "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    wait_for(lambda: len({fetch("client-runc") for _ in range(6)}) == 1, 20, what="one Pod per client with ClientIP affinity")
    table = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    ours = [ln.split()[-1] for ln in table.splitlines() if ln.startswith("table ip kubeclass-")]
    nc.ok("delete", "svc", "proxied", "nobody-home")

    def chains_left() -> int:
        return sum(subprocess.run(["nft", "list", "table", "ip", t], capture_output=True, text=True).stdout.count("chain svc-")
                   for t in ours)
    wait_for(lambda: chains_left() == 0, 20, what="the Service's chains removed")
    nc.ok("delete", "deployment", "proxied")
    nc.kubectl("delete", "pod", "client-runc", "client-gvisor", "--grace-period=1")


def test_load_balancer_gets_the_node_address_and_answers_there(nc):
    """Without a cloud, as k3s's ServiceLB: a LoadBalancer Service gets the node's address (127.0.0.1 for
    `kubeclass up`) in status.loadBalancer.ingress with ipMode VIP, upstream's service controller events, and its
    port answers there (relayed by the agent: DNAT cannot leave loopback); externalIPs on the node's global address
    answer through the nft rules; turning the Service into a ClusterIP takes the ingress and the port away."""
    import socket
    import urllib.request
    from conftest import free_port
    nc.ok("apply", "-f", "-", input=deployment("balanced", 2, None).replace("echo hi > /www/ready", "echo hi > /www/ready; hostname > /www/index.html"))
    port = free_port()
    nc.ok("expose", "deploy", "balanced", "--port", str(port), "--target-port", "http", "--type", "LoadBalancer")
    nc.ok("rollout", "status", "deploy/balanced", "--timeout=120s")
    wait_for(lambda: len(ready_ips(nc, "balanced")) == 2, 30, what="two ready endpoints")
    names = {p["metadata"]["name"] for p in json.loads(nc.ok("get", "pods", "-l", "app=balanced", "-o", "json"))["items"]}
    svc = wait_for(lambda: (s := json.loads(nc.ok("get", "svc", "balanced", "-o", "json")))["status"]["loadBalancer"].get("ingress") and s,
                   30, what="the load balancer's ingress")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1", "ipMode": "VIP"}]
    row = nc.ok("get", "svc", "balanced").splitlines()[1].split()
    assert row[1] == "LoadBalancer" and row[3] == "127.0.0.1" and row[4] == f"{port}:{svc['spec']['ports'][0]['nodePort']}/TCP"
    assert "LoadBalancer Ingress:     127.0.0.1 (VIP)" in nc.ok("describe", "svc", "balanced")
    reasons = [e["reason"] for e in json.loads(nc.ok("get", "events", "--field-selector", "involvedObject.name=balanced", "-o", "json"))["items"]]
    assert "EnsuringLoadBalancer" in reasons and "EnsuredLoadBalancer" in reasons

    def get(url: str) -> str:
        return urllib.request.urlopen(url, timeout=5).read().decode().strip()
    seen = wait_for(lambda: {get(f"http://127.0.0.1:{port}/") for _ in range(12)} == names or None, 30,
                    what="the load balancer's port spreading over both Pods")
    assert seen
    node_port = svc["spec"]["ports"][0]["nodePort"]   # the node's address is 127.0.0.1: its NodePort answers there too
    assert wait_for(lambda: get(f"http://127.0.0.1:{node_port}/") in names, 20, what="the NodePort on 127.0.0.1")
    host = host_address()
    if host is not None:   # the same rules serve spec.externalIPs (and a non-loopback ingress address)
        nc.ok("patch", "svc", "balanced", "-p", json.dumps({"spec": {"externalIPs": [host]}}))
        assert wait_for(lambda: get(f"http://{host}:{port}/") in names, 20, what="the externalIP answering")
    # a status written by hand is validated as upstream's
    bad = nc.kubectl("patch", "svc", "balanced", "--subresource=status", "--type=merge", "-p",
                     '{"status":{"loadBalancer":{"ingress":[{"ip":"not-an-ip"},{"hostname":"1.2.3.4","ipMode":"VIP"}]}}}')
    assert bad.returncode == 1
    assert 'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip": must be a valid IP address' in bad.stderr
    assert 'status.loadBalancer.ingress[1].hostname: Invalid value: "1.2.3.4": must be a DNS name, not an IP address' in bad.stderr
    assert "status.loadBalancer.ingress[1].ipMode: Forbidden: may not be specified when `ip` is not set" in bad.stderr
    nc.ok("patch", "svc", "balanced", "-p", '{"spec":{"type":"ClusterIP","externalIPs":null}}')
    wait_for(lambda: not json.loads(nc.ok("get", "svc", "balanced", "-o", "json"))["status"]["loadBalancer"].get("ingress"), 20,
             what="the ingress removed")

    def closed() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return True
        return False
    wait_for(closed, 20, what="the load balancer's port closed")
    nc.ok("delete", "svc", "balanced")
    nc.ok("delete", "deployment", "balanced")


def test_cluster_dns_from_pods(nc):
    """Cluster DNS served on the node at the kube-dns Service's address: a runc and a gVisor Pod reach a Service by
    its short and full names (resolv.conf as kubelet writes it for ClusterFirst), nslookup answers the ClusterIP, a
    headless Service answers its Pods' IPs, an unknown name is NXDOMAIN, an outside name is forwarded to the
    node's resolvers; dnsPolicy None takes dnsConfig alone."""
    from dnslib import DNSRecord
    clients(nc)
    nc.ok("apply", "-f", "-", input=deployment("named", 2, None).replace("echo hi > /www/ready", "echo hi > /www/ready; hostname > /www/index.html"))
    nc.ok("expose", "deploy", "named", "--port", "80", "--target-port", "http")
    nc.ok("create", "service", "clusterip", "named-headless", "--clusterip=None")
    nc.ok("patch", "svc", "named-headless", "-p", '{"spec":{"selector":{"app":"named"}}}')
    nc.ok("rollout", "status", "deploy/named", "--timeout=120s")
    dns_ip = json.loads(nc.ok("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json"))["spec"]["clusterIP"]
    cluster_ip = json.loads(nc.ok("get", "svc", "named", "-o", "json"))["spec"]["clusterIP"]
    resolv = nc.ok("exec", "client-runc", "--", "cat", "/etc/resolv.conf").splitlines()
    assert resolv[0].startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    assert resolv[1:] == [f"nameserver {dns_ip}", "options ndots:5"]
    names = {p["metadata"]["name"] for p in json.loads(nc.ok("get", "pods", "-l", "app=named", "-o", "json"))["items"]}
    wait_for(lambda: nc.ok("exec", "client-runc", "--", "wget", "-qO-", "http://named/").strip() in names, 30,
             what="http://named from a runc Pod")
    assert nc.ok("exec", "client-gvisor", "--", "wget", "-qO-", "http://named.default.svc.cluster.local/").strip() in names
    out = nc.ok("exec", "client-runc", "--", "nslookup", "named.default.svc.cluster.local")
    assert cluster_ip in out

    def ask(name: str, qtype: str = "A", server: str = dns_ip):
        return DNSRecord.parse(DNSRecord.question(name, qtype).send(server, 53, timeout=5))
    wait_for(lambda: sorted(str(r.rdata) for r in ask("named-headless.default.svc.cluster.local").rr) ==
             sorted(ready_ips(nc, "named")), 30, what="the headless Service's Pod IPs")
    assert ask("missing.default.svc.cluster.local").header.rcode == 3            # NXDOMAIN
    upstream = next(ln.split()[1] for ln in open("/etc/resolv.conf") if ln.startswith("nameserver"))
    outside = ask("kubeclass-dns-test.invalid")
    direct = ask("kubeclass-dns-test.invalid", server=upstream)
    assert outside.header.rcode == direct.header.rcode and [str(r.rdata) for r in outside.rr] == [str(r.rdata) for r in direct.rr]
    nc.ok("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "own-dns"},
        "spec": {"dnsPolicy": "None", "terminationGracePeriodSeconds": 1,
                 "dnsConfig": {"nameservers": ["192.0.2.53"], "searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
                 "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}))
    nc.wait_phase("own-dns", ("Running",))
    assert nc.ok("exec", "own-dns", "--", "cat", "/etc/resolv.conf") == "search corp.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"
    nc.kubectl("delete", "pod", "own-dns", "client-runc", "client-gvisor", "--grace-period=1")
    nc.ok("delete", "svc", "named", "named-headless")
    nc.ok("delete", "deployment", "named")
