"""Writes without a resourceVersion are retried until they apply, as upstream's GuaranteedUpdate: concurrent
merge patches, `kubectl label`, `kubectl scale`-style scale patches all succeed; only a request that carries a
resourceVersion may get 409 (issue 13, item 7)."""
from __future__ import annotations

import concurrent.futures
import json


def test_concurrent_patches_without_a_resource_version_all_apply(cluster):
    cluster.ok("create", "configmap", "contended")
    url = "/api/v1/namespaces/default/configmaps/contended"
    try:
        def patch(i):
            return cluster.request("PATCH", url, json.dumps({"data": {f"k{i}": str(i)}}),
                                   headers={"Content-Type": "application/merge-patch+json"})[0]
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            codes = list(ex.map(patch, range(64)))
        assert codes == [200] * 64
        data = json.loads(cluster.ok("get", "configmap", "contended", "-o", "json"))["data"]
        assert data == {f"k{i}": str(i) for i in range(64)}
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(lambda i: cluster.kubectl("label", "configmap", "contended", f"l{i}=v"), range(16)))
        assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
        # a pinned resourceVersion that is stale is a conflict, as upstream
        code, _, out = cluster.request("PATCH", url, json.dumps({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}}),
                                       headers={"Content-Type": "application/merge-patch+json"})
        assert code == 409 and out["reason"] == "Conflict"
    finally:
        cluster.kubectl("delete", "configmap", "contended")


def test_a_delete_is_not_refused_because_the_object_changed_meanwhile(cluster):
    """As upstream's storage Delete: a delete without preconditions reads the object again when a concurrent write
    (a controller's status update) moved it on, instead of answering 409 (seen as a flaky `kubectl delete deploy` on
    etcd while the Deployment controller wrote its status). A resourceVersion precondition still gets its 409."""
    url = "/api/v1/namespaces/default/configmaps"
    for round_ in range(6):
        name = f"contended-delete-{round_}"
        cluster.request("POST", url, {"metadata": {"name": name, "finalizers": ["example.com/hold"]}})

        def patch(i):
            return cluster.request("PATCH", f"{url}/{name}", json.dumps({"data": {f"k{i}": str(i)}}),
                                   headers={"Content-Type": "application/merge-patch+json"})[0]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            writers = [ex.submit(patch, i) for i in range(24)]
            deleted = ex.submit(lambda: cluster.request("DELETE", f"{url}/{name}")[0])
            assert deleted.result() == 200
            assert {w.result() for w in writers} == {200}
        obj = cluster.request("GET", f"{url}/{name}")[2]
        assert obj["metadata"]["deletionTimestamp"]
        stale = cluster.request("DELETE", f"{url}/{name}", {"preconditions": {"resourceVersion": "1"}})
        assert stale[0] == 409 and "Precondition failed" in stale[2]["message"]
        cluster.request("PATCH", f"{url}/{name}", json.dumps({"metadata": {"finalizers": None}}),
                        headers={"Content-Type": "application/merge-patch+json"})
