"""Pure Service and endpoint logic (kubeclass/api/services.py, endpoints.py)."""
from __future__ import annotations

from kubeclass.api import endpoints as ep
from kubeclass.api import services


def pod(name, ip, ready=True, labels=None, deleting=False, phase="Running", ports=None, policy="Always"):
    p = {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "labels": labels or {"app": "web"}},
         "spec": {"restartPolicy": policy, "nodeName": "n1", "containers": [{"name": "c", "ports": ports or []}]},
         "status": {"phase": phase, "podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


SVC = {"metadata": {"name": "web", "namespace": "ns"},
       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def test_named_target_ports_resolve_per_pod_and_group_slices():
    a = pod("a", "10.0.0.1", ports=[{"name": "http", "containerPort": 8080}])
    b = pod("b", "10.0.0.2", ports=[{"name": "http", "containerPort": 9090}])
    c = pod("c", "10.0.0.3", ports=[{"name": "other", "containerPort": 1}])      # no such name: no port for it
    got = ep.desired_slices(SVC, [a, b, c])
    assert sorted(tuple(p["port"] for p in s["ports"]) for s in got) == [(), (8080,), (9090,)]


def test_conditions_and_who_is_listed():
    pods = [pod("ready", "10.0.0.1"), pod("unready", "10.0.0.2", ready=False), pod("leaving", "10.0.0.3", deleting=True),
            pod("noip", ""), pod("done", "10.0.0.5", phase="Succeeded", policy="Never"), pod("other", "10.0.0.6", labels={"app": "x"})]
    svc = {**SVC, "spec": {**SVC["spec"], "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    (s,) = ep.desired_slices(svc, pods)
    conds = {e["targetRef"]["name"]: e["conditions"] for e in s["endpoints"]}
    assert conds == {"ready": {"ready": True, "serving": True, "terminating": False},
                     "unready": {"ready": False, "serving": False, "terminating": False},
                     "leaving": {"ready": False, "serving": True, "terminating": True}}
    (ss,) = ep.desired_subsets(svc, pods)   # the legacy Endpoints leave terminating Pods out
    assert [a["ip"] for a in ss["addresses"]] == ["10.0.0.1"] and [a["ip"] for a in ss["notReadyAddresses"]] == ["10.0.0.2"]
    publish = {**svc, "spec": {**svc["spec"], "publishNotReadyAddresses": True}}
    assert all(e["conditions"]["ready"] for e in ep.desired_slices(publish, pods)[0]["endpoints"])


def test_slices_hold_at_most_100_and_an_empty_service_keeps_one():
    pods = [pod(f"p{i:03}", f"10.0.{i // 200}.{i % 200 + 1}") for i in range(250)]
    svc = {**SVC, "spec": {**SVC["spec"], "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    assert [len(s["endpoints"]) for s in ep.desired_slices(svc, pods)] == [100, 100, 50]
    assert ep.desired_slices(svc, []) == [{"ports": [], "endpoints": []}]
    assert ep.desired_slices({**svc, "spec": {"ports": svc["spec"]["ports"]}}, pods) == []   # no selector: not ours


def test_endpoint_addresses_that_would_reach_the_node_are_refused():
    assert ep.endpoint_ip_problems("127.0.0.1") == ["may not be in the loopback range (127.0.0.0/8, ::1/128)"]
    assert ep.endpoint_ip_problems("169.254.169.254") == ["may not be in the link-local range (169.254.0.0/16, fe80::/10)"]
    assert ep.endpoint_ip_problems("0.0.0.0") == ["may not be unspecified (0.0.0.0)"]
    assert ep.endpoint_ip_problems("10.1.2.3") == []


def test_service_rows_and_prepare_update():
    s = {"metadata": {"name": "np", "creationTimestamp": None},
         "spec": {"type": "NodePort", "clusterIP": "10.96.3.4", "clusterIPs": ["10.96.3.4"],
                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP", "nodePort": 30053}],
                  "selector": {"b": "2", "a": "1"}}}
    row = services.table_row(s)
    assert row[:5] == ["np", "NodePort", "10.96.3.4", "<none>", "80:30080/TCP,53:30053/UDP"] and row[6] == "a=1,b=2"
    new = {"metadata": {}, "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}}
    services.prepare_update(new, s)
    assert new["spec"]["clusterIP"] == "10.96.3.4" and new["spec"]["ports"][0]["nodePort"] == 30080


def test_service_lb_publishes_ready_real_nodes_external_ip_first():
    from kubeclass.controllers.servicelb import wanted_ingress
    ready = [{"type": "Ready", "status": "True"}]
    nodes = [{"metadata": {"name": "a"}, "status": {"conditions": ready, "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}},
             {"metadata": {"name": "b"}, "status": {"conditions": ready, "addresses": [
                 {"type": "InternalIP", "address": "10.0.0.3"}, {"type": "ExternalIP", "address": "203.0.113.9"}]}},
             {"metadata": {"name": "down"}, "status": {"conditions": [{"type": "Ready", "status": "False"}],
                                                       "addresses": [{"type": "InternalIP", "address": "10.0.0.4"}]}},
             {"metadata": {"name": "sim", "annotations": {"kwok.x-k8s.io/node": "fake"}},
              "status": {"conditions": ready, "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}}]
    lb = {"spec": {"type": "LoadBalancer"}}
    assert wanted_ingress(lb, nodes) == [{"ip": "10.0.0.2", "ipMode": "VIP"}, {"ip": "203.0.113.9", "ipMode": "VIP"}]
    assert wanted_ingress({"spec": {"type": "ClusterIP"}}, nodes) == []
    assert wanted_ingress({"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}}, nodes) is None


def test_proxy_answers_on_external_and_ingress_ips_and_loopback_is_relayed():
    from kubeclass.node.loopbacklb import wanted
    from kubeclass.node.serviceproxy import external_ips
    svc = {"metadata": {"namespace": "d", "name": "web"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.7", "::1"],
                    "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"ip": "127.0.0.1"}, {"hostname": "lb.example"}]}}}
    assert external_ips(svc) == ["192.0.2.7", "10.0.0.2"]
    assert wanted({"d/web": svc}, "127.0.0.1") == {("127.0.0.1", 80): ("10.96.0.20", 80)}
    svc["spec"]["ports"][0]["nodePort"] = 30080   # and the NodePorts, on a loopback node address
    assert wanted({"d/web": svc}, "127.0.0.1") == {("127.0.0.1", 80): ("10.96.0.20", 80), ("127.0.0.1", 30080): ("10.96.0.20", 80)}
    svc["spec"]["type"] = "NodePort"
    assert wanted({"d/web": svc}, "127.0.0.1") == {("127.0.0.1", 30080): ("10.96.0.20", 80)}
    assert wanted({"d/web": svc}, "10.0.0.2") == {}
