"""bench/admission: the time the admission chain adds to a Pod create, with every plugin on.

In-process against a real SQLite store: a namespace with a LimitRange (seed 001's customer-limits),
a ResourceQuota (customer-quota), Pod Security labels (baseline enforce, restricted warn), a namespace
default RuntimeClass, and a RuntimeClass with overhead and scheduling. Times chain.admit + chain.validate
per Pod (the part of a create the chain is responsible for), including the quota status write each
admitted Pod costs (a store commit). Prints figures; asserts nothing.

Then the same with 100 policies loaded (60 Kyverno ClusterPolicies, 40 Gatekeeper constraints of 4
templates, seed 001's among them): first scoped as in a multi-tenant cluster (2 of the 100 apply to the
bench namespace), then all 100 applying to every Pod (the worst case: every pattern and every Rego
query runs per create).
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
from kubeclass.api import gatekeeper, registry
from kubeclass.api import pod as podapi
from kubeclass.server.quota_status import QuotaStatus
from kubeclass.server.rest import StoreLister
from kubeclass.store.sqlite import SQLiteStore

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "", "namespace": "bench", "labels": {"app": "web", "team": "a"}},
       "spec": {"runtimeClassName": "gvisor",
                "containers": [{"name": "app", "image": "registry.local/nginx:alpine", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}

KYVERNO_PATTERNS = [
    {"spec": {"runtimeClassName": "gvisor | kata"}},
    {"metadata": {"labels": {"app": "?*"}}},
    {"spec": {"containers": [{"image": "registry.local/*"}]}},
    {"spec": {"containers": [{"(name)": "app", "resources": {"requests": {"memory": "<=1Gi", "cpu": "?*"}}}]}},
    {"spec": {"=(hostNetwork)": False, "containers": [{"=(securityContext)": {"=(privileged)": False}}]}},
    {"spec": {"containers": [{"image": "!*:latest"}]}},
]
TEMPLATES = {
    "k8srequiredlabels": ("""package k8srequiredlabels
violation[{"msg": msg, "details": {"missing_labels": missing}}] {
  provided := {label | input.review.object.metadata.labels[label]}
  required := {label | label := input.parameters.labels[_]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("you must provide labels: %v", [missing])
}""", {"labels": ["app"]}),
    "k8sallowedrepos": ("""package k8sallowedrepos
violation[{"msg": msg}] {
  container := input.review.object.spec.containers[_]
  not strings.any_prefix_match(container.image, input.parameters.repos)
  msg := sprintf("container <%v> has an invalid image repo <%v>", [container.name, container.image])
}""", {"repos": ["registry.local/"]}),
    "k8sdisallowedtags": ("""package k8sdisallowedtags
violation[{"msg": msg}] {
  container := input.review.object.spec.containers[_]
  tag := split(container.image, ":")[1]
  tag == input.parameters.tags[_]
  msg := sprintf("container <%v> uses a disallowed tag <%v>", [container.name, container.image])
}""", {"tags": ["latest"]}),
}


def _kyverno(i: int, ns: str) -> dict:
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": f"kp-{i}", "uid": f"kp-{i}"},
            "spec": {"validationFailureAction": "Enforce", "rules": [{"name": f"r{i}", "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": [ns]}}]},
                     "validate": {"message": f"policy {i}", "pattern": KYVERNO_PATTERNS[i % len(KYVERNO_PATTERNS)]}}]}}


def _template(name: str, rego: str) -> dict:
    kind = {"k8srequiredruntimeclass": "K8sRequiredRuntimeClass"}.get(name, name)
    return {"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate", "metadata": {"name": name},
            "spec": {"crd": {"spec": {"names": {"kind": kind}}}, "targets": [{"target": gatekeeper.TARGET, "rego": rego}]}}


async def load_policies(store, scoped: bool) -> None:
    """60 Kyverno policies and 40 constraints; `scoped`: only 2 of them match the bench namespace."""
    for key, _ in store.list("/registry/clusterpolicies/")[0] + store.list("/registry/constrainttemplates.templates.gatekeeper.sh/")[0]:
        await store.delete(key)
    for r in [r for r in registry.RESOURCES if r.group == gatekeeper.CONSTRAINT_GROUP]:
        for key, _ in store.list(r.key_prefix(None))[0]:
            await store.delete(key)
        registry.remove_resource(r.group, r.plural)
    for i in range(60):
        await store.create(f"/registry/clusterpolicies/kp-{i}", _kyverno(i, "bench" if (not scoped or i == 0) else f"tenant-{i}"))
    seed_rego = open(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "seeds", "001_fb06027c71265940.txt")).read()
    seed_rego = seed_rego.split("rego: |\n", 1)[1].split("---")[0]
    seed_rego = "\n".join(line[8:] for line in seed_rego.splitlines())
    templates = dict(TEMPLATES, k8srequiredruntimeclass=(seed_rego, {"runtimeClasses": ["standard", "gvisor", "kata"]}))
    n = 0
    for name, (rego, params) in templates.items():
        t = _template(name, rego)
        await store.create(f"/registry/constrainttemplates.templates.gatekeeper.sh/{name}", t)
        res = registry.constraint_resource(t)
        registry.add_resource(res)
        for j in range(10):
            ns = "bench" if (not scoped or (name == "k8srequiredruntimeclass" and j == 0)) else f"tenant-{n}"
            c = {"apiVersion": f"{gatekeeper.CONSTRAINT_GROUP}/v1beta1", "kind": gatekeeper.template_kind(t),
                 "metadata": {"name": f"{name}-{j}", "uid": f"{name}-{j}-{scoped}"},
                 "spec": {"enforcementAction": "deny", "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}], "namespaces": [ns]},
                          "parameters": params}}
            await store.create(res.key(None, c["metadata"]["name"]), c)
            n += 1


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=3000)
    args = ap.parse_args()
    store = SQLiteStore(os.path.join(tempfile.mkdtemp(prefix="kubeclass-admission-"), "db"))
    await store.create("/registry/namespaces/bench", {"metadata": {"name": "bench", "labels": {
        "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"},
        "annotations": {"runtimeclass.kubeclass.io/default": "gvisor"}}})
    await store.create("/registry/serviceaccounts/bench/default", {"metadata": {"name": "default", "namespace": "bench", "uid": "sa-uid"}})
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
    print(f"kubeclass bench/admission: {os.cpu_count()} cores; plugins: {', '.join(p.name for p in chain.plugins)}")
    n = 0

    async def measure(label: str, existing: int) -> None:
        nonlocal n
        for i in range(existing):
            p = copy.deepcopy(POD)
            p["metadata"]["name"] = f"existing-{n}-{i}"
            await store.create(f"/registry/pods/bench/{p['metadata']['name']}", p)
        await quota.refresh("bench")  # what the status refresher does when a quota or pods change
        times = []
        for i in range(args.pods):
            p = copy.deepcopy(POD)
            p["metadata"]["name"] = f"p-{n}-{i}"
            podapi.set_defaults(p)
            a = Attributes("CREATE", "", "pods", None, "bench", p["metadata"]["name"], p)
            t = time.perf_counter()
            await chain.admit(a, lister)
            await chain.validate(a, lister)
            for fn in a.after_store:   # the quota charge, written once the Pod is stored
                await fn()
            times.append(time.perf_counter() - t)
        n += 1
        times.sort()
        p50, p99 = times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3
        print(f"  {label:<58} {args.pods} pods: chain adds p50 {p50:.3f} ms, p99 {p99:.3f} ms, mean {statistics.mean(times) * 1e3:.3f} ms")

    await measure("no policies, empty namespace", 0)
    await measure("no policies, namespace with 1000 pods", 1000)
    await load_policies(store, scoped=True)
    await measure("100 policies loaded, 2 apply to the namespace", 0)
    await load_policies(store, scoped=False)
    await measure("100 policies loaded, all 100 apply (60 Kyverno, 40 Gatekeeper)", 0)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
