"""RBAC as upstream: a user bound to `edit` in one namespace works there, cannot write RuntimeClasses
(seed 002: cluster-admin only) and cannot read other namespaces; `kubectl auth can-i` tells the truth."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from conftest import ROOT

RC = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {n}\nhandler: runsc\n"


def user_kubeconfig(cluster, tmp_path, user, *groups):
    args = [sys.executable, "-m", "kubeclass.cli", "token", "create", "--user", user, "--data-dir", cluster.data_dir]
    for g in groups:
        args += ["--group", g]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    cfg = yaml.safe_load(out)
    assert cfg["users"][0]["name"] == user and cfg["users"][0]["user"]["token"]
    path = tmp_path / f"{user}.kubeconfig"
    path.write_text(out)
    return str(path)


def as_user(cluster, kubeconfig, *args, input=None):
    return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", os.path.join(cluster.data_dir, "kcache-users"), *args],
                          input=input, capture_output=True, text=True, timeout=60)


def test_edit_user_in_one_namespace(cluster, tmp_path):
    cluster.ok("create", "namespace", "team-dev")
    cluster.ok("apply", "-f", "-", input=RC.format(n="rbac-gvisor"))
    try:
        cluster.ok("create", "rolebinding", "dev-edit", "--clusterrole=edit", "--user=dev", "-n", "team-dev")
        kc = user_kubeconfig(cluster, tmp_path, "dev")
        cp = as_user(cluster, kc, "run", "web", "--image=busybox", "-n", "team-dev")
        assert cp.returncode == 0, cp.stderr
        assert "web" in as_user(cluster, kc, "get", "pods", "-n", "team-dev").stdout
        cp = as_user(cluster, kc, "apply", "-f", "-", input=RC.format(n="mine"))
        assert cp.returncode == 1
        assert 'runtimeclasses.node.k8s.io is forbidden: User "dev" cannot create resource "runtimeclasses" in API group "node.k8s.io" at the cluster scope' in cp.stderr \
            or 'runtimeclasses.node.k8s.io "mine" is forbidden: User "dev" cannot get resource "runtimeclasses"' in cp.stderr
        cp = as_user(cluster, kc, "create", "-f", "-", input=RC.format(n="mine"))
        assert cp.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": runtimeclasses.node.k8s.io is forbidden: '
                                     'User "dev" cannot create resource "runtimeclasses" in API group "node.k8s.io" at the cluster scope')
        for verb_args, verb in ((["label", "runtimeclass", "rbac-gvisor", "x=y"], "patch"),
                                (["delete", "runtimeclass", "rbac-gvisor"], "delete")):
            cp = as_user(cluster, kc, *verb_args)
            assert cp.returncode == 1
            assert f'User "dev" cannot {"get" if verb == "patch" else verb} resource "runtimeclasses" in API group "node.k8s.io" at the cluster scope' in cp.stderr
        cp = as_user(cluster, kc, "replace", "-f", "-", input=RC.format(n="rbac-gvisor"))
        assert cp.returncode == 1 and "forbidden" in cp.stderr
        cp = as_user(cluster, kc, "get", "pods", "-n", "default")
        assert cp.stderr.strip() == ('Error from server (Forbidden): pods is forbidden: User "dev" cannot list resource "pods" '
                                     'in API group "" in the namespace "default"')
        assert as_user(cluster, kc, "auth", "can-i", "create", "pods", "-n", "team-dev").stdout.strip() == "yes"
        assert as_user(cluster, kc, "auth", "can-i", "create", "runtimeclasses").stdout.strip() == "no"
        assert as_user(cluster, kc, "auth", "can-i", "list", "pods", "-n", "default").stdout.strip() == "no"
        # the runtime class is untouched
        assert "rbac-gvisor" in cluster.ok("get", "runtimeclass", "rbac-gvisor")
    finally:
        cluster.kubectl("delete", "namespace", "team-dev", "--timeout=30s")
        cluster.kubectl("delete", "runtimeclass", "rbac-gvisor", "--ignore-not-found")


def test_cluster_admin_binding_and_groups(cluster, tmp_path):
    cluster.ok("create", "clusterrolebinding", "boss-admin", "--clusterrole=cluster-admin", "--user=boss")
    cluster.ok("create", "clusterrolebinding", "readers-view", "--clusterrole=view", "--group=readers")
    try:
        boss = user_kubeconfig(cluster, tmp_path, "boss")
        assert as_user(cluster, boss, "apply", "-f", "-", input=RC.format(n="boss-rc")).returncode == 0
        assert as_user(cluster, boss, "delete", "runtimeclass", "boss-rc").returncode == 0
        reader = user_kubeconfig(cluster, tmp_path, "rita", "readers")
        assert as_user(cluster, reader, "get", "pods", "-A").returncode == 0
        cp = as_user(cluster, reader, "run", "x", "--image=busybox")
        assert cp.returncode == 1 and 'User "rita" cannot create resource "pods" in API group "" in the namespace "default"' in cp.stderr
        who = as_user(cluster, reader, "auth", "whoami").stdout
        assert "rita" in who and "readers" in who
    finally:
        cluster.kubectl("delete", "clusterrolebinding", "boss-admin", "readers-view")


def test_default_roles_exist_and_unknown_user_is_401(cluster, tmp_path):
    out = cluster.ok("get", "clusterroles")
    for r in ("cluster-admin", "admin", "edit", "view", "system:discovery"):
        assert r in out
    bad = tmp_path / "bad.kubeconfig"
    cfg = yaml.safe_load(open(cluster.kubeconfig))
    cfg["users"][0]["user"]["token"] = "nope"
    bad.write_text(yaml.safe_dump(cfg))
    cp = as_user(cluster, str(bad), "get", "pods")
    assert cp.returncode == 1 and "You must be logged in to the server" in cp.stderr
