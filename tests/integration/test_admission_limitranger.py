"""LimitRanger with seed 001's customer-limits, and upstream's min/max/ratio messages."""
from __future__ import annotations

import json

import pytest

import seeds

POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  containers:\n  - name: app\n    image: busybox\n{res}"


@pytest.fixture
def customer_ns(cluster):
    block = seeds.block("001", "name: customer-limits")
    cluster.ok("apply", "-f", "-", input=block)
    yield "customer-workloads"
    cluster.kubectl("delete", "namespace", "customer-workloads", "--timeout=30s")


def test_seed001_customer_limits_defaults(cluster, customer_ns):
    lr = json.loads(cluster.ok("get", "limitrange", "customer-limits", "-n", customer_ns, "-o", "json"))
    assert lr["spec"]["limits"][0]["default"] == {"cpu": "200m", "memory": "256Mi"}
    cluster.ok("apply", "-f", "-", input=POD.format(name="bare", ns=customer_ns, res=""))
    pod = json.loads(cluster.ok("get", "pod", "bare", "-n", customer_ns, "-o", "json"))
    res = pod["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    # explicit values are kept
    cluster.ok("apply", "-f", "-", input=POD.format(name="explicit", ns=customer_ns,
                                                      res="    resources:\n      requests:\n        cpu: 50m\n"))
    pod = json.loads(cluster.ok("get", "pod", "explicit", "-n", customer_ns, "-o", "json"))
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}


def test_min_max_ratio_messages(cluster):
    cluster.ok("create", "namespace", "lr-bounds")
    try:
        cluster.ok("apply", "-n", "lr-bounds", "-f", "-", input=(
            "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: bounds\nspec:\n  limits:\n  - type: Container\n"
            "    max:\n      cpu: 500m\n    min:\n      cpu: 50m\n    maxLimitRequestRatio:\n      cpu: \"2\"\n"
            "  - type: Pod\n    max:\n      memory: 1Gi\n"))
        lr = json.loads(cluster.ok("get", "limitrange", "bounds", "-n", "lr-bounds", "-o", "json"))
        assert lr["spec"]["limits"][0]["default"] == {"cpu": "500m"}       # from max
        assert lr["spec"]["limits"][0]["defaultRequest"] == {"cpu": "500m"}  # from default
        cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="big", ns="lr-bounds",
                             res="    resources:\n      limits:\n        cpu: \"1\"\n        memory: 2Gi\n"))
        assert cp.returncode == 1
        assert cp.stderr.strip().endswith(
            'pods "big" is forbidden: [maximum cpu usage per Container is 500m, but limit is 1, '
            'maximum memory usage per Pod is 1Gi, but limit is 2Gi]')
        cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="ratio", ns="lr-bounds",
                             res="    resources:\n      requests:\n        cpu: 100m\n      limits:\n        cpu: 400m\n        memory: 100Mi\n"))
        assert cp.stderr.strip().endswith('pods "ratio" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000')
        cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="tiny", ns="lr-bounds",
                             res="    resources:\n      requests:\n        cpu: 10m\n      limits:\n        cpu: 20m\n        memory: 100Mi\n"))
        assert cp.stderr.strip().endswith('pods "tiny" is forbidden: minimum cpu usage per Container is 50m, but request is 10m')
    finally:
        cluster.kubectl("delete", "namespace", "lr-bounds", "--timeout=30s")
