"""core/v1 Services (issue 18 part 1): the kubernetes Service, kubectl expose / create service / apply, defaults,
upstream's validation and allocation texts, cluster IPs and node ports allocated once each — across type changes,
deletes, concurrent creates and a restart — and `kubectl get svc`'s columns."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import signal

import pytest

from conftest import wait_for

NS = "svc-tests"


@pytest.fixture(scope="module")
def ns(cluster):
    cluster.ok("create", "namespace", NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--timeout=30s")


def svc(cluster, name: str, ns: str = NS) -> dict:
    return json.loads(cluster.ok("get", "service", name, "-n", ns, "-o", "json"))


def test_the_kubernetes_service(cluster):
    s = svc(cluster, "kubernetes", "default")
    assert s["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert s["spec"]["clusterIP"] == "10.96.0.1" and s["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert s["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": cluster.port}]
    assert s["spec"]["type"] == "ClusterIP" and s["spec"]["sessionAffinity"] == "None"
    out = cluster.ok("get", "svc", "kubernetes", "-n", "default").splitlines()
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert out[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]


def test_expose_and_create_service_with_defaults(cluster, ns):
    cluster.ok("create", "deployment", "web", "-n", ns, "--image=busybox", "--port=8080")
    assert cluster.ok("expose", "deploy", "web", "-n", ns, "--port", "80", "--target-port", "8080").strip() == "service/web exposed"
    s = svc(cluster, "web")
    spec = s["spec"]
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12") and spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}] and spec["selector"] == {"app": "web"}
    assert (spec["type"], spec["sessionAffinity"], spec["internalTrafficPolicy"], spec["ipFamilyPolicy"], spec["ipFamilies"]) == \
        ("ClusterIP", "None", "Cluster", "SingleStack", ["IPv4"])
    assert s["status"] == {"loadBalancer": {}}
    # kubectl create service sends protobuf
    cluster.ok("create", "service", "nodeport", "np", "-n", ns, "--tcp=80:8080", "--node-port=30080")
    cluster.ok("create", "service", "loadbalancer", "lb", "-n", ns, "--tcp=443:8443")
    cluster.ok("create", "service", "externalname", "ext", "-n", ns, "--external-name=example.com")
    cluster.ok("create", "service", "clusterip", "headless", "-n", ns, "--clusterip=None")
    lb = svc(cluster, "lb")["spec"]
    assert 30000 <= lb["ports"][0]["nodePort"] <= 32767 and lb["externalTrafficPolicy"] == "Cluster"
    assert lb["allocateLoadBalancerNodePorts"] is True
    assert "clusterIP" not in svc(cluster, "ext")["spec"] and "ipFamilies" not in svc(cluster, "ext")["spec"]
    rows = {ln.split()[0]: ln.split() for ln in cluster.ok("get", "svc", "-n", ns, "-o", "wide").splitlines()[1:]}
    assert rows["np"][1:2] + rows["np"][3:5] == ["NodePort", "<none>", "80:30080/TCP"]
    assert rows["lb"][1] == "LoadBalancer" and rows["lb"][3] == "<pending>" and rows["lb"][4] == f"443:{lb['ports'][0]['nodePort']}/TCP"
    assert rows["ext"][1:5] == ["ExternalName", "<none>", "example.com", "<none>"]
    assert rows["headless"][2] == "None"
    assert rows["web"][6] == "app=web"


def test_allocation_refusals_as_upstream(cluster, ns):
    cluster.ok("create", "service", "clusterip", "fixed", "-n", ns, "--tcp=80:8080", "--clusterip=10.96.0.50")

    def create(*args):
        return cluster.kubectl("create", "service", *args, "-n", ns)
    cp = create("clusterip", "fixed2", "--tcp=80:8080", "--clusterip=10.96.0.50")
    assert cp.stderr.strip() == ('error: failed to create ClusterIP service: Service "fixed2" is invalid: spec.clusterIPs: Invalid value: '
                                 '[]string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated')
    cp = create("clusterip", "out", "--tcp=80:8080", "--clusterip=10.0.0.5")
    assert cp.stderr.strip().endswith('failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. '
                                      'The range of valid IPs is 10.96.0.0/12')
    cp = create("nodeport", "far", "--tcp=80:8080", "--node-port=40000")
    assert cp.stderr.strip().endswith('Service "far" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is '
                                      'not in the valid range. The range of valid ports is 30000-32767')
    cp = create("nodeport", "np-again", "--tcp=80:8080", "--node-port=30080")
    assert cp.stderr.strip().endswith('spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated')
    # a delete frees the address
    cluster.ok("delete", "service", "fixed", "-n", ns)
    cluster.ok("create", "service", "clusterip", "fixed2", "-n", ns, "--tcp=80:8080", "--clusterip=10.96.0.50")


def test_validation_texts(cluster, ns):
    def apply(spec: str):
        return cluster.kubectl("apply", "-n", ns, "-f", "-",
                               input=f"apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n{spec}")
    cp = apply("  ports:\n  - port: 80\n  - port: 81\n")
    assert cp.stderr.strip() == 'The Service "bad" is invalid: \n* spec.ports[0].name: Required value\n* spec.ports[1].name: Required value'
    cp = apply("  type: Fancy\n  ports:\n  - port: 80\n")
    assert 'spec.type: Unsupported value: "Fancy": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"' in cp.stderr
    cp = apply("  type: ExternalName\n")
    assert cp.stderr.strip() == 'The Service "bad" is invalid: spec.externalName: Required value'
    cp = apply("  selector: {app: x}\n")
    assert cp.stderr.strip() == 'The Service "bad" is invalid: spec.ports: Required value'
    cp = apply("  ports:\n  - port: 70000\n    protocol: ICMP\n")
    assert "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in cp.stderr
    assert 'spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"' in cp.stderr
    cp = apply("  ports:\n  - port: 80\n    nodePort: 30001\n")
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in cp.stderr
    cp = cluster.kubectl("create", "service", "clusterip", "9lives", "-n", ns, "--tcp=80")
    assert "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character" in cp.stderr


def test_apply_keeps_allocations_and_type_changes_release_them(cluster, ns):
    manifest = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: applied\nspec:\n  type: NodePort\n  selector: {app: web}\n"
                "  ports:\n  - name: http\n    port: 80\n    targetPort: http\n  - name: https\n    port: 443\n")
    cluster.ok("apply", "-n", ns, "-f", "-", input=manifest)
    first = svc(cluster, "applied")["spec"]
    assert cluster.ok("apply", "-n", ns, "-f", "-", input=manifest).strip() == "service/applied unchanged"
    cluster.ok("replace", "-n", ns, "-f", "-", input=manifest)
    again = svc(cluster, "applied")["spec"]
    assert again["clusterIP"] == first["clusterIP"] and again["ports"] == first["ports"]
    assert first["ports"][0]["targetPort"] == "http" and first["ports"][1]["targetPort"] == 443
    cp = cluster.kubectl("patch", "svc", "applied", "-n", ns, "-p", '{"spec":{"clusterIP":"10.96.0.99","clusterIPs":["10.96.0.99"]}}')
    assert 'spec.clusterIP: Invalid value: "10.96.0.99": field is immutable' in cp.stderr
    cluster.ok("patch", "svc", "applied", "-n", ns, "-p", '{"spec":{"type":"ClusterIP"}}')
    cip = svc(cluster, "applied")["spec"]
    assert all("nodePort" not in p for p in cip["ports"]) and "externalTrafficPolicy" not in cip
    freed = first["ports"][0]["nodePort"]
    cluster.ok("create", "service", "nodeport", "takes-freed", "-n", ns, "--tcp=80:8080", f"--node-port={freed}")


def test_allocations_unique_under_concurrency_and_across_a_restart(fresh_cluster):
    c = fresh_cluster

    def create(i: int) -> int:
        status, _, _ = c.request("POST", "/api/v1/namespaces/default/services",
                                 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
                                  "spec": {"type": "NodePort", "selector": {"app": f"a{i}"}, "ports": [{"port": 80}]}})
        return status

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(create, range(200))) == {201}
    c.stop(signal.SIGKILL)
    c.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(create, range(200, 400))) == {201}
    _, _, lst = c.request("GET", "/api/v1/namespaces/default/services")
    mine = [s for s in lst["items"] if s["metadata"]["name"] != "kubernetes"]
    ips = [s["spec"]["clusterIP"] for s in mine]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in mine]
    assert len(mine) == 400 and len(set(ips)) == 400 and len(set(ports)) == 400 and "10.96.0.1" not in ips


def test_endpoints_and_slices_refuse_addresses_of_the_node(cluster, ns):
    """User-written Endpoints and EndpointSlices (a Service without a selector) may not point at loopback,
    link-local or unspecified addresses (upstream's ValidateEndpointIP: a Service must not reach the node itself)."""
    cp = cluster.kubectl("apply", "-n", ns, "-f", "-", input=(
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: manual\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - port: 80\n"))
    assert cp.stderr.strip() == ('The Endpoints "manual" is invalid: subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": '
                                 'may not be in the loopback range (127.0.0.0/8, ::1/128)')
    cp = cluster.kubectl("apply", "-n", ns, "-f", "-", input=(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: manual-1\naddressType: IPv4\n"
        "endpoints:\n- addresses: [169.254.169.254]\n"))
    assert 'endpoints[0].addresses[0]: Invalid value: "169.254.169.254": may not be in the link-local range' in cp.stderr
    cluster.ok("apply", "-n", ns, "-f", "-", input=(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: manual-1\n  labels: {kubernetes.io/service-name: manual}\n"
        "addressType: IPv4\nendpoints:\n- addresses: [10.1.2.3]\nports:\n- port: 80\n"))
    row = cluster.ok("get", "endpointslices", "-n", ns, "manual-1").splitlines()
    assert row[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"] and row[1].split()[1:4] == ["IPv4", "80", "10.1.2.3"]
    cp = cluster.kubectl("patch", "endpointslice", "manual-1", "-n", ns, "-p", '{"addressType":"IPv6"}')
    assert 'addressType: Invalid value: "IPv6": field is immutable' in cp.stderr
    # the default roles: view reads Services, Endpoints and EndpointSlices; edit writes Services, not Endpoints
    cluster.ok("create", "rolebinding", "svc-viewer", "--clusterrole=view", "--user=viewer", "-n", ns)
    cluster.ok("create", "rolebinding", "svc-editor", "--clusterrole=edit", "--user=editor", "-n", ns)
    assert cluster.ok("auth", "can-i", "list", "endpointslices.discovery.k8s.io", "--as=viewer", "-n", ns).strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "create", "services", "--as=viewer", "-n", ns).stdout.strip() == "no"
    assert cluster.ok("auth", "can-i", "create", "services", "--as=editor", "-n", ns).strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "create", "endpoints", "--as=editor", "-n", ns).stdout.strip() == "no"


def test_apiservices(cluster, ns):
    """apiregistration.k8s.io/v1 APIServices (issue 18 part 6): a Local one per served group/version, kube-aggregator's
    validation texts, and an extension API's availability from its Service's endpoints (as metrics-server registers)."""
    rows = {ln.split()[0]: ln.split() for ln in cluster.ok("get", "apiservices").splitlines()[1:]}
    assert cluster.ok("get", "apiservices").splitlines()[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert rows["v1."][1:3] == ["Local", "True"] and rows["v1.apps"][1:3] == ["Local", "True"]
    assert rows["v1.node.k8s.io"][1:3] == ["Local", "True"] and "v1.discovery.k8s.io" in rows
    core = json.loads(cluster.ok("get", "apiservice", "v1.", "-o", "json"))["spec"]
    assert (core["groupPriorityMinimum"], core["versionPriority"]) == (18000, 1)

    def apply(name: str, spec: str):
        return cluster.kubectl("apply", "-f", "-", input=f"apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: {name}\nspec:\n{spec}")
    cp = apply("v1beta1.wrong.io", "  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n")
    assert 'metadata.name: Invalid value: "v1beta1.wrong.io": must be `spec.version+"."+spec.group`' in cp.stderr
    cp = apply("v1beta1.metrics.k8s.io", "  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 0\n  versionPriority: 5000\n"
               "  service: {namespace: kube-system, name: metrics-server}\n  insecureSkipTLSVerify: true\n  caBundle: Zm9v\n")
    assert "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000" in cp.stderr
    assert "spec.versionPriority: Invalid value: 5000: must be positive and less than 1000" in cp.stderr
    assert "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present" in cp.stderr
    spec = ("  group: metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n"
            "  insecureSkipTLSVerify: true\n  service: {namespace: " + ns + ", name: metrics-server}\n")
    cluster.ok("apply", "-f", "-", input="apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1beta1.metrics.k8s.io\nspec:\n" + spec)
    try:
        assert json.loads(cluster.ok("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json"))["spec"]["service"]["port"] == 443
        wait_for(lambda: "False (ServiceNotFound)" in cluster.ok("get", "apiservice", "v1beta1.metrics.k8s.io"), 20,
                 what="ServiceNotFound")
        cluster.ok("create", "service", "clusterip", "metrics-server", "-n", ns, "--tcp=443:10250")
        wait_for(lambda: "False (MissingEndpoints)" in cluster.ok("get", "apiservice", "v1beta1.metrics.k8s.io"), 20,
                 what="MissingEndpoints")
        cond = json.loads(cluster.ok("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json"))["status"]["conditions"][0]
        assert cond["message"] == f'endpoints for service/metrics-server in "{ns}" have no addresses with port name "443-10250"'
    finally:
        cluster.kubectl("delete", "apiservice", "v1beta1.metrics.k8s.io")
