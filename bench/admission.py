"""bench/admission: the time the admission chain adds to a Pod create, with every plugin on.

In-process against a real SQLite store: a namespace with a LimitRange (seed 001's customer-limits),
a ResourceQuota (customer-quota), Pod Security labels (baseline enforce, restricted warn), a namespace
default RuntimeClass, and a RuntimeClass with overhead and scheduling. Times chain.admit + chain.validate
per Pod (the part of a create the chain is responsible for), including the quota status write each
admitted Pod costs (a store commit). Prints figures; asserts nothing.
Policies (Kyverno/Gatekeeper) are not implemented yet, so none are loaded.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import tempfile
import time

from kubeclass.admission import Attributes, Chain
from kubeclass.api import pod as podapi
from kubeclass.server.quota_status import QuotaStatus
from kubeclass.server.rest import StoreLister
from kubeclass.store.sqlite import SQLiteStore

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "", "namespace": "bench"},
       "spec": {"containers": [{"name": "app", "image": "nginx:alpine", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=3000)
    args = ap.parse_args()
    store = SQLiteStore(os.path.join(tempfile.mkdtemp(prefix="kubeclass-admission-"), "db"))
    await store.create("/registry/namespaces/bench", {"metadata": {"name": "bench", "labels": {
        "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"},
        "annotations": {"runtimeclass.kubeclass.io/default": "gvisor"}}})
    await store.create("/registry/runtimeclasses/gvisor", {"metadata": {"name": "gvisor"}, "handler": "runsc",
                                                           "overhead": {"podFixed": {"cpu": "50m", "memory": "64Mi"}},
                                                           "scheduling": {"nodeSelector": {"runtime.kubernetes.io/gvisor": "true"},
                                                                          "tolerations": [{"key": "sandboxed", "operator": "Exists", "effect": "NoSchedule"}]}})
    await store.create("/registry/limitranges/bench/customer-limits", {"metadata": {"name": "customer-limits", "namespace": "bench"},
                       "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m", "memory": "256Mi"},
                                            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}})
    await store.create("/registry/resourcequotas/bench/customer-quota", {"metadata": {"name": "customer-quota", "namespace": "bench"},
                       "spec": {"hard": {"requests.cpu": "1000", "requests.memory": "2000Gi", "limits.cpu": "2000",
                                         "limits.memory": "4000Gi", "pods": "100000"}}})
    lister = StoreLister(store)
    quota = QuotaStatus(store, {})
    chain = Chain(writer=quota)
    print(f"kubeclass bench/admission: {os.cpu_count()} cores; plugins: {', '.join(p.name for p in chain.plugins)}; policies loaded: 0")
    for label, existing in (("empty namespace", 0), ("namespace with 1000 pods", 1000)):
        for i in range(existing):
            p = copy.deepcopy(POD)
            p["metadata"]["name"] = f"existing-{label[:5]}-{i}"
            await store.create(f"/registry/pods/bench/{p['metadata']['name']}", p)
        await quota.refresh("bench")  # what the status refresher does when a quota or pods change
        times = []
        for i in range(args.pods):
            p = copy.deepcopy(POD)
            p["metadata"]["name"] = f"p-{existing}-{i}"
            podapi.set_defaults(p)
            a = Attributes("CREATE", "", "pods", None, "bench", p["metadata"]["name"], p)
            t = time.perf_counter()
            await chain.admit(a, lister)
            await chain.validate(a, lister)
            times.append(time.perf_counter() - t)
        times.sort()
        p50, p99 = times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3
        print(f"  {label:<26} {args.pods} pods: chain adds p50 {p50:.3f} ms, p99 {p99:.3f} ms, mean {statistics.mean(times) * 1e3:.3f} ms")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
