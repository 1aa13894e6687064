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
