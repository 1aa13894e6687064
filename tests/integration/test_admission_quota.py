"""ResourceQuota admission with seed 001's customer-quota: overhead is charged, messages are upstream's,
usage follows deletions, and a concurrent burst never overshoots."""
from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest

import seeds

NS = "customer-workloads"


@pytest.fixture
def customer(cluster):
    block = seeds.block("001", "name: customer-quota")
    gvisor = seeds.gvisor_with_overhead()
    cluster.ok("apply", "-f", "-", input=block)
    cluster.ok("apply", "-f", "-", input=gvisor)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--timeout=30s")
    cluster.kubectl("delete", "runtimeclass", "gvisor", "--ignore-not-found")


def quota_used(cluster, ns, name):
    deadline = time.time() + 10
    while True:
        q = json.loads(cluster.ok("get", "resourcequota", name, "-n", ns, "-o", "json"))
        if (q.get("status") or {}).get("used") is not None or time.time() > deadline:
            return q["status"]["used"]
        time.sleep(0.1)


def test_seed001_overhead_is_charged(cluster, customer):
    before = quota_used(cluster, NS, "customer-quota")
    assert before["requests.cpu"] == "0" and before["pods"] == "0"
    pod = seeds.overhead_example_pod()
    cluster.ok("apply", "-n", NS, "-f", "-", input=pod)
    used = quota_used(cluster, NS, "customer-quota")
    # container 100m/128Mi + gvisor overhead 50m/64Mi; limits from customer-limits' defaults (200m/256Mi) + overhead
    assert used == {"pods": "1", "requests.cpu": "150m", "requests.memory": "192Mi", "limits.cpu": "250m", "limits.memory": "320Mi"}
    out = cluster.ok("get", "resourcequota", "-n", NS)
    assert "requests.cpu: 150m/10" in out and "requests.memory: 192Mi/20Gi" in out
    cluster.ok("delete", "pod", "overhead-example", "-n", NS)
    deadline = time.time() + 10
    while quota_used(cluster, NS, "customer-quota")["pods"] != "0" and time.time() < deadline:
        time.sleep(0.1)
    assert quota_used(cluster, NS, "customer-quota")["requests.cpu"] == "0"


def test_quota_messages(cluster):
    cluster.ok("create", "namespace", "q-msgs")
    try:
        cluster.ok("create", "quota", "small", "--hard=requests.cpu=150m,limits.cpu=1", "-n", "q-msgs")
        pod = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n  namespace: q-msgs\nspec:\n  containers:\n"
               "  - name: app\n    image: busybox\n    resources:\n{r}")
        cp = cluster.kubectl("apply", "-f", "-", input=pod.format(n="nolimit", r="      requests:\n        cpu: 100m\n"))
        assert cp.stderr.strip().endswith('pods "nolimit" is forbidden: failed quota: small: must specify limits.cpu for: app')
        ok = "      requests:\n        cpu: 100m\n      limits:\n        cpu: 100m\n"
        cluster.ok("apply", "-f", "-", input=pod.format(n="first", r=ok))
        cp = cluster.kubectl("apply", "-f", "-", input=pod.format(n="second", r=ok))
        assert cp.stderr.strip().endswith('pods "second" is forbidden: exceeded quota: small, requested: requests.cpu=100m, '
                                          'used: requests.cpu=100m, limited: requests.cpu=150m')
    finally:
        cluster.kubectl("delete", "namespace", "q-msgs", "--timeout=30s")


def test_concurrent_burst_admits_exactly_the_quota(cluster):
    import aiohttp
    cluster.ok("create", "namespace", "burst")
    cluster.ok("create", "quota", "fifty", "--hard=pods=50", "-n", "burst")

    async def burst():
        ctx = ssl.create_default_context(cafile=cluster.ca())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=64),
                                         headers={"Authorization": f"Bearer {cluster.token()}"}) as s:
            async def one(i):
                body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"b-{i}"},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
                async with s.post(cluster.url + "/api/v1/namespaces/burst/pods", json=body) as r:
                    return r.status, await r.json()
            return await asyncio.gather(*[one(i) for i in range(200)])
    try:
        results = asyncio.run(burst())
        codes = [c for c, _ in results]
        assert codes.count(201) == 50 and codes.count(403) == 150
        assert all("exceeded quota: fifty, requested: pods=1, used: pods=50, limited: pods=50" in b["message"]
                   for c, b in results if c == 403)
        assert len(json.loads(cluster.ok("get", "pods", "-n", "burst", "-o", "json"))["items"]) == 50
        assert quota_used(cluster, "burst", "fifty")["pods"] == "50"
    finally:
        cluster.kubectl("delete", "namespace", "burst", "--timeout=60s")


def test_object_counts_for_other_kinds(cluster):
    """count/<resource>[.<group>] quotas (upstream's generic object-count evaluator) for kinds other than Pods."""
    cluster.ok("create", "namespace", "q-count")
    try:
        # the namespace's `default` ServiceAccount (made by the controller manager) counts, as upstream
        cluster.ok("create", "quota", "objects", "--hard=count/deployments.apps=1,count/serviceaccounts=3", "-n", "q-count")
        cluster.ok("create", "deployment", "one", "--image=busybox", "-n", "q-count")
        cp = cluster.kubectl("create", "deployment", "two", "--image=busybox", "-n", "q-count")
        assert cp.returncode == 1
        assert cp.stderr.strip() == ('error: failed to create deployment: deployments.apps "two" is forbidden: exceeded quota: objects, '
                                     "requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1")
        cluster.ok("create", "serviceaccount", "a", "-n", "q-count")
        used = quota_used(cluster, "q-count", "objects")
        assert used == {"count/deployments.apps": "1", "count/serviceaccounts": "2"}
        # deleting frees the count (the status refresher recounts)
        cluster.ok("delete", "deployment", "one", "-n", "q-count")
        deadline = time.time() + 10
        while quota_used(cluster, "q-count", "objects").get("count/deployments.apps") != "0" and time.time() < deadline:
            time.sleep(0.1)
        assert quota_used(cluster, "q-count", "objects")["count/deployments.apps"] == "0"
        assert cluster.ok("create", "deployment", "two", "--image=busybox", "-n", "q-count").strip() == "deployment.apps/two created"
    finally:
        cluster.kubectl("delete", "namespace", "q-count", "--timeout=30s")
