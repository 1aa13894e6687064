"""Probes on the real node (issue 12): readiness decides Ready (and so a Deployment's availability),
liveness restarts the container with upstream's events, the startup probe holds the others back;
exec probes run through the runtime (inside the gVisor sandbox for runsc), tcpSocket / httpGet connect in
the Pod's network namespace."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n---\n"
           "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: standard\nhandler: runc\n")


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    return node_cluster


def pod(name, script, rc, **probes):
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"runtimeClassName": rc, "terminationGracePeriodSeconds": 1,
                                    "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                    "command": ["sh", "-c", script], **probes}]}})


def status(nc, name):
    return json.loads(nc.ok("get", "pod", name, "-o", "json"))["status"]


def ready(nc, name):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status(nc, name).get("conditions", []))


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_exec_readiness_decides_ready(nc, rc):
    name = f"ready-{rc}"
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    nc.ok("apply", "-f", "-", input=pod(name, "sleep 2; touch /tmp/ready; sleep 3600", rc, readinessProbe=probe))
    wait_for(lambda: status(nc, name).get("phase") == "Running", 60, what="Running")
    st = status(nc, name)
    assert st["containerStatuses"][0]["ready"] is False and not ready(nc, name)
    wait_for(lambda: ready(nc, name), 30, what="Ready once /tmp/ready exists")
    ev = [e for e in nc.events(name) if e["reason"] == "Unhealthy"]
    assert ev and ev[0]["type"] == "Warning" and ev[0]["message"].startswith("Readiness probe failed: cat: can't open '/tmp/ready'")
    p = json.loads(nc.ok("get", "pod", name, "-o", "json"))
    assert p["spec"]["containers"][0]["readinessProbe"] == {**probe, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}
    nc.ok("delete", "pod", name, "--grace-period=1")


def test_liveness_failure_restarts_the_container(nc):
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
    nc.ok("apply", "-f", "-", input=pod("live", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600", "standard", livenessProbe=probe))
    wait_for(lambda: status(nc, "live").get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1, 60, what="a restart")
    reasons = [(e["reason"], e["message"]) for e in nc.events("live")]
    assert ("Killing", "Container app failed liveness probe, will be restarted") in reasons
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed:") for r, m in reasons)
    nc.ok("delete", "pod", "live", "--grace-period=1")


def test_tcp_and_http_probes_in_the_pod_network(nc):
    script = "mkdir -p /www; echo ok > /www/index.html; httpd -f -p 8080 -h /www"
    nc.ok("apply", "-f", "-", input=pod("web", script, "standard",
                                        ports=[{"name": "http", "containerPort": 8080}],
                                        readinessProbe={"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
                                        livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1}))
    wait_for(lambda: ready(nc, "web"), 60, what="Ready through httpGet")
    time.sleep(2)
    assert status(nc, "web")["containerStatuses"][0]["restartCount"] == 0
    nc.ok("apply", "-f", "-", input=pod("web404", script, "standard",
                                        readinessProbe={"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1}))
    ev = wait_for(lambda: [e for e in nc.events("web404") if e["reason"] == "Unhealthy"], 60, what="Unhealthy")
    assert ev[0]["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404"
    assert not ready(nc, "web404")
    nc.ok("delete", "pod", "web", "web404", "--grace-period=1")
