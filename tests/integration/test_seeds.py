"""Every RuntimeClass (and namespace/quota/limit-range) YAML in ../shared/seeds applies verbatim with
`kubectl apply -f` and no extra flags, and reads back as written."""
from __future__ import annotations

import json
import re

import pytest
import yaml

import seeds

SERVED_NOW = {"RuntimeClass", "Namespace", "ResourceQuota", "LimitRange"}


def _seed_blocks():
    out = []
    for name, i, text in seeds.blocks():
        try:
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]
        except yaml.YAMLError:
            continue
        if docs and all(d["kind"] in SERVED_NOW for d in docs) and any(d["kind"] == "RuntimeClass" for d in docs) | any(d["kind"] != "RuntimeClass" for d in docs):
            out.append(pytest.param(text, docs, id=f"{name[:3]}-block{i}"))
    return out


@pytest.mark.parametrize("text,docs", _seed_blocks())
def test_seed_block_applies_verbatim(cluster, text, docs):
    out = cluster.ok("apply", "-f", "-", input=text)
    for d in docs:
        assert re.search(rf"{d['kind'].lower()}(\.[a-z.0-9]+)?/{d['metadata']['name']} (created|configured|unchanged)", out), out
    try:
        for d in docs:
            ns = ["-n", d["metadata"]["namespace"]] if d["metadata"].get("namespace") else []
            got = json.loads(cluster.ok("get", d["kind"].lower(), d["metadata"]["name"], *ns, "-o", "json"))
            if d["kind"] == "RuntimeClass":
                assert got["apiVersion"] == "node.k8s.io/v1"
                assert got["handler"] == d["handler"]
                assert got.get("overhead") == d.get("overhead")
                assert got.get("scheduling") == d.get("scheduling")
                assert (got["metadata"].get("labels") or {}) == (d["metadata"].get("labels") or {})
            if d["kind"] == "ResourceQuota":
                assert got["spec"]["hard"] == {k: str(v) for k, v in d["spec"]["hard"].items()}
            if d["kind"] == "LimitRange":
                assert got["spec"]["limits"][0]["default"] == d["spec"]["limits"][0]["default"]
            # applying the same block again changes nothing
        again = cluster.ok("apply", "-f", "-", input=text)
        assert "unchanged" in again or "configured" in again
    finally:
        for d in docs:
            if d["kind"] == "RuntimeClass":
                cluster.kubectl("delete", "runtimeclass", d["metadata"]["name"], "--ignore-not-found")


def test_seed001_heredoc_lists_like_the_seed(cluster):
    """Seed 001's `kubectl apply -f - <<EOF` block, then `kubectl get runtimeclasses` as its expected output."""
    heredoc = seeds.block("001", "name: kata\nhandler: kata-qemu\n", "---")
    cluster.ok("apply", "-f", "-", input=heredoc)
    try:
        out = cluster.ok("get", "runtimeclasses")
        lines = out.strip().splitlines()
        assert re.match(r"^NAME\s+HANDLER\s+AGE$", lines[0])
        rows = {l.split()[0]: l.split()[1:] for l in lines[1:]}
        assert rows["standard"][0] == "runc" and rows["gvisor"][0] == "runsc" and rows["kata"][0] == "kata-qemu"
        assert all(re.match(r"^\d+s$", r[1]) for r in rows.values())
        wide = cluster.ok("get", "runtimeclasses", "-o", "wide").strip().splitlines()
        assert re.match(r"^NAME\s+HANDLER\s+AGE$", wide[0])
    finally:
        cluster.kubectl("delete", "runtimeclass", "standard", "gvisor", "kata", "--ignore-not-found")


def test_seed002_v1beta1_and_alpha_shape(cluster):
    """Seed 002's v1beta1 object applies; the same class reads back in v1, v1beta1 and the v1alpha1 shape."""
    text = seeds.block("002", "RuntimeClass")
    cluster.ok("apply", "-f", "-", input=text)
    try:
        v1 = json.loads(cluster.ok("get", "runtimeclasses.v1.node.k8s.io", "myclass", "-o", "json"))
        assert v1["handler"] == "myconfiguration"
        beta = json.loads(cluster.ok("get", "--raw", "/apis/node.k8s.io/v1beta1/runtimeclasses/myclass"))
        assert beta["apiVersion"] == "node.k8s.io/v1beta1" and beta["handler"] == "myconfiguration"
        alpha = json.loads(cluster.ok("get", "--raw", "/apis/node.k8s.io/v1alpha1/runtimeclasses/myclass"))
        assert alpha["apiVersion"] == "node.k8s.io/v1alpha1"
        assert alpha["spec"] == {"runtimeHandler": "myconfiguration"} and "handler" not in alpha
    finally:
        cluster.kubectl("delete", "runtimeclass", "myclass", "--ignore-not-found")


def test_v1alpha1_create_follows_beta_rules(cluster):
    """Seed 002's upgrade notes: alpha objects need a handler, and dots are no longer allowed."""
    alpha = "apiVersion: node.k8s.io/v1alpha1\nkind: RuntimeClass\nmetadata:\n  name: old-style\nspec:\n  runtimeHandler: %s\n"
    cp = cluster.kubectl("apply", "-f", "-", input=alpha % "my.handler")
    assert cp.returncode != 0
    assert 'handler: Invalid value: "my.handler": must not contain dots' in cp.stderr
    cluster.ok("apply", "-f", "-", input=alpha % "runc")
    try:
        v1 = json.loads(cluster.ok("get", "runtimeclass", "old-style", "-o", "json"))
        assert v1["handler"] == "runc" and "spec" not in v1
    finally:
        cluster.kubectl("delete", "runtimeclass", "old-style", "--ignore-not-found")
