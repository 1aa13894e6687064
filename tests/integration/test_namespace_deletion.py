"""Namespace deletion through the namespace controller (issue 12): the content is deleted through the API
(so finalizers and cascading deletion are honoured), the namespace reports upstream's five deletion
conditions while something blocks it, and it goes once the last finalizer does."""
from __future__ import annotations

import json

import yaml

from conftest import wait_for as wait



def test_namespace_content_is_deleted_then_the_namespace(cluster):
    cluster.ok("create", "namespace", "nsdel-a")
    cluster.ok("create", "configmap", "c", "-n", "nsdel-a")
    cluster.ok("create", "deployment", "d", "--image=busybox", "-n", "nsdel-a")
    out = cluster.kubectl("delete", "namespace", "nsdel-a", "--timeout=60s", timeout=90)
    assert out.returncode == 0 and out.stdout.strip() == 'namespace "nsdel-a" deleted', out.stderr
    assert cluster.kubectl("get", "namespace", "nsdel-a").returncode != 0


def test_a_finalizer_holds_the_namespace_with_upstream_conditions(cluster):
    cluster.ok("create", "namespace", "nsdel-b")
    cluster.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                          "metadata": {"name": "held", "namespace": "nsdel-b",
                                                                       "finalizers": ["example.com/hold"]}}))
    cluster.ok("delete", "namespace", "nsdel-b", "--wait=false")

    def conds():
        ns = json.loads(cluster.ok("get", "namespace", "nsdel-b", "-o", "json"))
        c = {x["type"]: x for x in ns["status"].get("conditions") or []}
        return (ns, c) if "NamespaceFinalizersRemaining" in c else None
    ns, c = wait(conds, what="deletion conditions")
    assert ns["status"]["phase"] == "Terminating" and ns["spec"]["finalizers"] == ["kubernetes"]
    got = [(x["type"], x["status"], x["reason"], x["message"]) for x in ns["status"]["conditions"]]
    assert got == [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered", "All resources successfully discovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
        ("NamespaceContentRemaining", "True", "SomeResourcesRemain", "Some resources are remaining: configmaps. has 1 resource instances"),
        ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
         "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")]
    r = cluster.kubectl("create", "configmap", "late", "-n", "nsdel-b")
    assert 'configmaps "late" is forbidden: unable to create new content in namespace nsdel-b because it is being terminated' in r.stderr
    held = json.loads(cluster.ok("get", "configmap", "held", "-n", "nsdel-b", "-o", "json"))
    assert held["metadata"].get("deletionTimestamp")
    cluster.ok("patch", "configmap", "held", "-n", "nsdel-b", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait(lambda: cluster.kubectl("get", "namespace", "nsdel-b").returncode != 0, what="the namespace gone")


def test_finalize_subresource(cluster):
    """A namespace whose `kubernetes` finalizer is removed through namespaces/NAME/finalize goes at once."""
    cluster.ok("create", "namespace", "nsdel-c")
    ns = json.loads(cluster.ok("get", "namespace", "nsdel-c", "-o", "json"))
    ns["spec"]["finalizers"] = []
    code, _, body = cluster.request("PUT", "/api/v1/namespaces/nsdel-c/finalize", ns)
    assert code == 200 and "finalizers" not in body.get("spec", {})
    cluster.ok("delete", "namespace", "nsdel-c", "--timeout=10s")
    res = json.loads(cluster.ok("get", "--raw", "/api/v1"))["resources"]
    fin = next(r for r in res if r["name"] == "namespaces/finalize")
    assert fin["verbs"] == ["update"]
