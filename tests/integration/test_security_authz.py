"""Authorization holes an attacker would use (issue 13, items 1-3), closed as upstream closes them: RBAC
escalation prevention, impersonation, and server-side apply under another object's name."""
from __future__ import annotations

import yaml

from test_rbac import as_user, user_kubeconfig

ESCALATION = "is attempting to grant RBAC permissions not currently held:"


def token_of(kubeconfig: str) -> str:
    with open(kubeconfig) as f:
        return yaml.safe_load(f)["users"][0]["user"]["token"]


def role(name: str, ns: str, rules: list[dict], kind: str = "Role") -> str:
    md = {"name": name, **({"namespace": ns} if kind == "Role" else {})}
    return yaml.safe_dump({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md, "rules": rules})


def test_a_namespace_admin_cannot_grant_what_it_does_not_hold(cluster, tmp_path):
    cluster.ok("create", "namespace", "esc-team")
    try:
        cluster.ok("create", "rolebinding", "alice-admin", "--clusterrole=admin", "--user=alice", "-n", "esc-team")
        alice = user_kubeconfig(cluster, tmp_path, "alice")
        # bind itself to cluster-admin inside its namespace: refused, with upstream's text
        cp = as_user(cluster, alice, "create", "rolebinding", "x", "--clusterrole=cluster-admin", "--user=alice", "-n", "esc-team")
        assert cp.returncode == 1
        assert ('rolebindings.rbac.authorization.k8s.io "x" is forbidden: user "alice" (groups=["system:authenticated"]) '
                f'{ESCALATION}\n{{APIGroups:["*"], Resources:["*"], Verbs:["*"]}}\n{{NonResourceURLs:["*"], Verbs:["*"]}}') in cp.stderr
        assert as_user(cluster, alice, "get", "secrets", "-n", "esc-team").returncode == 1
        # a Role granting */*/*: refused; one granting what admin holds: allowed
        cp = as_user(cluster, alice, "create", "-f", "-", input=role("wild", "esc-team", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))
        assert cp.returncode == 1
        assert ('roles.rbac.authorization.k8s.io "wild" is forbidden: user "alice" (groups=["system:authenticated"]) '
                f'{ESCALATION}\n{{APIGroups:["*"], Resources:["*"], Verbs:["*"]}}') in cp.stderr
        cp = as_user(cluster, alice, "create", "-f", "-", input=role(
            "readers", "esc-team", [{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"]}]))
        assert cp.returncode == 1 and '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}' in cp.stderr
        assert '"pods"' not in cp.stderr.split(ESCALATION)[1]           # pods are covered: only secrets are missing
        cp = as_user(cluster, alice, "create", "-f", "-", input=role(
            "pod-reader", "esc-team", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]))
        assert cp.returncode == 0, cp.stderr
        # ... and may bind it (it holds its rules), and may widen it only within what it holds
        assert as_user(cluster, alice, "create", "rolebinding", "pr", "--role=pod-reader", "--user=eve", "-n", "esc-team").returncode == 0
        cp = as_user(cluster, alice, "patch", "role", "pod-reader", "-n", "esc-team", "--type=json",
                     "-p", '[{"op": "add", "path": "/rules/0/verbs/-", "value": "delete"}]')
        assert cp.returncode == 0, cp.stderr                            # admin may delete pods
        cp = as_user(cluster, alice, "patch", "role", "pod-reader", "-n", "esc-team", "--type=json",
                     "-p", '[{"op": "add", "path": "/rules/0/resources/-", "value": "secrets"}]')
        assert cp.returncode == 1 and ESCALATION in cp.stderr
        # the cluster admin (system:masters) may grant anything
        cluster.ok("create", "rolebinding", "x", "--clusterrole=cluster-admin", "--user=alice", "-n", "esc-team")
        assert as_user(cluster, alice, "get", "secrets", "-n", "esc-team").returncode == 0
    finally:
        cluster.kubectl("delete", "namespace", "esc-team", "--timeout=30s")


def test_create_rolebindings_alone_binds_nothing_more_bind_and_escalate_verbs_allow_it(cluster, tmp_path):
    cluster.ok("create", "namespace", "esc-bind")
    try:
        cluster.ok("apply", "-f", "-", input=role("binder", "esc-bind", [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create"]}]))
        cluster.ok("create", "rolebinding", "bob-binder", "--role=binder", "--user=bob", "-n", "esc-bind")
        bob = user_kubeconfig(cluster, tmp_path, "bob")
        cp = as_user(cluster, bob, "create", "rolebinding", "me-admin", "--clusterrole=admin", "--user=bob", "-n", "esc-bind")
        assert cp.returncode == 1
        assert 'rolebindings.rbac.authorization.k8s.io "me-admin" is forbidden: user "bob" (groups=["system:authenticated"]) ' + ESCALATION in cp.stderr
        cp = as_user(cluster, bob, "create", "rolebinding", "ghost", "--clusterrole=no-such-role", "--user=bob", "-n", "esc-bind")
        assert cp.returncode == 1 and 'clusterrole.rbac.authorization.k8s.io "no-such-role" not found' in cp.stderr
        # `bind` on that role, and `escalate` on roles, as upstream
        cluster.ok("apply", "-f", "-", input=role("binder-plus", "esc-bind", [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["admin"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]))
        cluster.ok("create", "rolebinding", "bob-binder-plus", "--role=binder-plus", "--user=bob", "-n", "esc-bind")
        cp = as_user(cluster, bob, "create", "rolebinding", "me-admin", "--clusterrole=admin", "--user=bob", "-n", "esc-bind")
        assert cp.returncode == 0, cp.stderr
        cp = as_user(cluster, bob, "create", "rolebinding", "me-edit", "--clusterrole=cluster-admin", "--user=bob", "-n", "esc-bind")
        assert cp.returncode == 1 and ESCALATION in cp.stderr           # bind names admin only
        cp = as_user(cluster, bob, "create", "-f", "-", input=role("wild", "esc-bind", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))
        assert cp.returncode == 0, cp.stderr                            # escalate
        # a ClusterRole is checked against cluster-wide rules only
        cp = as_user(cluster, bob, "create", "-f", "-", input=role("c-wild", "", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "ClusterRole"))
        assert cp.returncode == 1 and "forbidden" in cp.stderr
    finally:
        cluster.kubectl("delete", "namespace", "esc-bind", "--timeout=30s")


def test_impersonation_needs_the_impersonate_verb_and_then_acts_as_the_impersonated(cluster, tmp_path):
    cluster.ok("create", "namespace", "imp-team")
    try:
        cluster.ok("create", "secret", "generic", "s", "--from-literal=a=b", "-n", "imp-team")
        # the admin acting as dev (no bindings): dev's answers, not the admin's
        cp = cluster.kubectl("get", "secrets", "-n", "imp-team", "--as=dev")
        assert cp.returncode == 1 and cp.stderr.strip() == ('Error from server (Forbidden): secrets is forbidden: User "dev" cannot list '
                                                            'resource "secrets" in API group "" in the namespace "imp-team"')
        who = cluster.ok("auth", "whoami", "--as=dev", "--as-group=devs", "-o", "json")
        assert yaml.safe_load(who)["status"]["userInfo"] == {"username": "dev", "groups": ["devs", "system:authenticated"]}
        assert cluster.kubectl("auth", "can-i", "get", "secrets", "-n", "imp-team", "--as=dev").stdout.strip() == "no"
        assert "*.*" not in cluster.ok("auth", "can-i", "--list", "--as=dev")
        assert cluster.kubectl("auth", "can-i", "get", "secrets", "-n", "imp-team", "--as=dev", "--as-group=system:masters").stdout.strip() == "yes"
        # a user who may not impersonate is refused with upstream's text
        cluster.ok("create", "rolebinding", "carl-view", "--clusterrole=view", "--user=carl", "-n", "imp-team")
        carl = user_kubeconfig(cluster, tmp_path, "carl")
        cp = as_user(cluster, carl, "get", "pods", "-n", "imp-team", "--as=dev")
        assert cp.returncode == 1 and cp.stderr.strip() == ('Error from server (Forbidden): users "dev" is forbidden: User "carl" '
                                                            'cannot impersonate resource "users" in API group "" at the cluster scope')
        # allowed users but not groups: the group is refused
        cluster.ok("create", "clusterrole", "imp-users", "--verb=impersonate", "--resource=users")
        cluster.ok("create", "clusterrolebinding", "carl-imp", "--clusterrole=imp-users", "--user=carl")
        assert as_user(cluster, carl, "auth", "whoami", "--as=dev").returncode == 0
        cp = as_user(cluster, carl, "get", "pods", "-n", "imp-team", "--as=dev", "--as-group=system:masters")
        assert cp.returncode == 1 and ('groups "system:masters" is forbidden: User "carl" cannot impersonate resource "groups" '
                                       'in API group "" at the cluster scope') in cp.stderr
        # a group without a user is a bad request, not silently ignored
        code, _, body = cluster.request("GET", "/api/v1/namespaces/imp-team/pods", headers={"Impersonate-Group": "system:masters"},
                                        token=token_of(carl))
        assert code == 400 and "without impersonating a user" in body["message"]
        code, _, body = cluster.request("GET", "/api/v1/namespaces/imp-team/secrets", token=token_of(carl),
                                        headers={"Impersonate-User": "system:serviceaccount:imp-team:builder"})
        assert code == 403 and body["message"] == ('serviceaccounts "builder" is forbidden: User "carl" cannot impersonate resource '
                                                   '"serviceaccounts" in API group "" in the namespace "imp-team"')
    finally:
        cluster.kubectl("delete", "clusterrolebinding", "carl-imp", "--ignore-not-found")
        cluster.kubectl("delete", "clusterrole", "imp-users", "--ignore-not-found")
        cluster.kubectl("delete", "namespace", "imp-team", "--timeout=30s")


def test_server_side_apply_cannot_create_an_object_under_another_name(cluster, tmp_path):
    cluster.ok("create", "namespace", "ssa-name")
    try:
        cluster.ok("apply", "-f", "-", input=role("one-cm", "ssa-name", [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed-cm"], "verbs": ["get", "patch"]}]))
        cluster.ok("create", "rolebinding", "dan-one-cm", "--role=one-cm", "--user=dan", "-n", "ssa-name")
        dan = token_of(user_kubeconfig(cluster, tmp_path, "dan"))
        body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sneaky", "namespace": "ssa-name"}, "data": {"a": "b"}})
        url = "/api/v1/namespaces/ssa-name/configmaps/allowed-cm?fieldManager=dan"
        code, _, out = cluster.request("PATCH", url, body, headers={"Content-Type": "application/apply-patch+yaml"}, token=dan)
        assert code == 400 and out["message"] == "the name of the object (sneaky) does not match the name on the URL (allowed-cm)"
        assert cluster.kubectl("get", "configmap", "sneaky", "-n", "ssa-name").returncode == 1
        # the same body under the URL's own name creates that one
        code, _, out = cluster.request("PATCH", url, body.replace("sneaky", "allowed-cm"),
                                       headers={"Content-Type": "application/apply-patch+yaml"}, token=dan)
        assert code == 201 and out["metadata"]["name"] == "allowed-cm"
        for method in ("PUT", "PATCH"):
            code, _, out = cluster.request(method, url.split("?")[0], {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sneaky"}},
                                           headers={"Content-Type": "application/merge-patch+json"} if method == "PATCH" else None)
            assert code == 400 and "does not match the name on the URL (allowed-cm)" in out["message"], (method, out)
    finally:
        cluster.kubectl("delete", "namespace", "ssa-name", "--timeout=30s")


def test_a_refused_create_has_no_empty_name_in_its_status_details(cluster, tmp_path):
    """metav1.StatusDetails' name is omitempty: a 403 for a create (no object name yet) carries none."""
    nobody = token_of(user_kubeconfig(cluster, tmp_path, "nameless"))
    code, _, out = cluster.request("POST", "/api/v1/namespaces/default/configmaps",
                                   {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, token=nobody)
    assert code == 403 and out["details"] == {"kind": "configmaps"}
