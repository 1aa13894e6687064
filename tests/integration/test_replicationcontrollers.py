"""ReplicationControllers (issue 18 part 3) and the manifest users write most: a Deployment with its Service and a
ReplicationController in one file, through `kubectl apply -f` and the official client's utils.create_from_yaml."""
from __future__ import annotations

import json

import pytest

from conftest import wait_for

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: legacy, tier: old}
    spec:
      containers:
      - name: legacy
        image: busybox:1.36
"""


def pods_of(cluster, ns: str, owner_kind: str) -> list[dict]:
    items = json.loads(cluster.ok("get", "pods", "-n", ns, "-o", "json"))["items"]
    return [p for p in items if any(r["kind"] == owner_kind for r in p["metadata"].get("ownerReferences") or [])
            and not p["metadata"].get("deletionTimestamp")]


def test_kubectl_apply_a_bundle_and_run_the_rc(cluster):
    cluster.ok("create", "namespace", "bundle")
    try:
        out = cluster.ok("apply", "-n", "bundle", "-f", "-", input=MANIFEST)
        assert out.splitlines() == ["deployment.apps/web created", "service/web created", "replicationcontroller/legacy created"]
        rc = json.loads(cluster.ok("get", "rc", "legacy", "-n", "bundle", "-o", "json"))
        assert rc["spec"]["selector"] == {"app": "legacy", "tier": "old"}            # defaulted from the template
        assert rc["metadata"]["labels"] == {"app": "legacy", "tier": "old"}
        wait_for(lambda: len(pods_of(cluster, "bundle", "ReplicationController")) == 2, 30, what="the RC's two Pods")
        ref = pods_of(cluster, "bundle", "ReplicationController")[0]["metadata"]["ownerReferences"][0]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == ("v1", "ReplicationController", "legacy", True)
        wait_for(lambda: cluster.ok("get", "rc", "legacy", "-n", "bundle").splitlines()[1].split()[1:3] == ["2", "2"], 30)
        assert cluster.ok("get", "rc", "-n", "bundle").splitlines()[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        assert cluster.ok("scale", "rc", "legacy", "-n", "bundle", "--replicas=3").strip() == "replicationcontroller/legacy scaled"
        wait_for(lambda: len(pods_of(cluster, "bundle", "ReplicationController")) == 3, 30, what="a third Pod")
        events = cluster.ok("get", "events", "-n", "bundle", "--field-selector", "involvedObject.kind=ReplicationController")
        assert "SuccessfulCreate" in events and "replication-controller" not in events.splitlines()[0]
        cp = cluster.kubectl("apply", "-n", "bundle", "-f", "-", input=MANIFEST.replace("tier: old", "tier: new").replace(
            "template:\n    metadata:\n      labels: {app: legacy", "selector: {app: nope}\n  template:\n    metadata:\n      labels: {app: legacy"))
        assert "`selector` does not match template `labels`" in cp.stderr
        cluster.ok("delete", "rc", "legacy", "-n", "bundle")
        wait_for(lambda: not pods_of(cluster, "bundle", "ReplicationController"), 30, what="the RC's Pods collected")
    finally:
        cluster.kubectl("delete", "namespace", "bundle", "--timeout=30s")


def test_official_client_create_from_yaml(cluster, k8s_client, tmp_path):
    from kubernetes import utils
    cluster.ok("create", "namespace", "bundle-py")
    try:
        path = tmp_path / "bundle.yaml"
        path.write_text(MANIFEST)
        created = utils.create_from_yaml(k8s_client, str(path), namespace="bundle-py")
        kinds = [o.kind for group in created for o in group]
        assert kinds == ["Deployment", "Service", "ReplicationController"]
        with pytest.raises(utils.FailToCreateError) as e:
            utils.create_from_yaml(k8s_client, str(path), namespace="bundle-py")
        assert [x.status for x in e.value.api_exceptions] == [409, 409, 409]
        assert all(json.loads(x.body)["reason"] == "AlreadyExists" for x in e.value.api_exceptions)
    finally:
        cluster.kubectl("delete", "namespace", "bundle-py", "--timeout=30s")
