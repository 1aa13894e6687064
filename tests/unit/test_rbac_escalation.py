"""RBAC escalation prevention and impersonation headers (pure logic)."""
import pytest

from kubeclass.api import impersonation
from kubeclass.api.rbac_escalation import compact_string, escalation_message, missing


def R(groups, resources, verbs, names=None, urls=None):
    r = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    if urls:
        r = {"nonResourceURLs": urls, "verbs": verbs}
    return r


def test_coverage_as_upstream():
    owner = [R([""], ["pods", "*/status"], ["get", "list"]), R(["apps"], ["deployments"], ["*"], names=["web"]),
             R([], [], ["get"], urls=["/healthz", "/api/*"])]
    assert missing(owner, [R([""], ["pods", "pods/status", "nodes/status"], ["get"])]) == []
    assert missing(owner, [R([""], ["pods/log"], ["get"])]) == [R([""], ["pods/log"], ["get"])]
    assert missing(owner, [R(["apps"], ["deployments"], ["delete"], names=["web"])]) == []
    # an owner naming resources does not cover a rule naming none
    assert missing(owner, [R(["apps"], ["deployments"], ["get"])]) == [R(["apps"], ["deployments"], ["get"])]
    assert missing(owner, [R([], [], ["get"], urls=["/api/v1", "/healthz"])]) == []
    assert missing(owner, [R([], [], ["post"], urls=["/healthz"])]) == [{"nonResourceURLs": ["/healthz"], "verbs": ["post"]}]
    # a "*" asked for is covered only by a "*" held
    assert missing([R(["*"], ["*"], ["get", "list", "create"])], [R([""], ["pods"], ["*"])]) == [R([""], ["pods"], ["*"])]


def test_message_is_upstreams_compact_sorted_form():
    lacking = missing([], [R([""], ["secrets"], ["get", "list"]), R(["*"], ["*"], ["*"])])
    assert escalation_message("alice", ["a", "system:authenticated"], lacking) == (
        'user "alice" (groups=["a" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}')   # byte order
    assert compact_string(R(["apps"], ["deployments"], ["get"], names=["a", "b"])) == \
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["a" "b"], Verbs:["get"]}'


def test_impersonation_headers():
    assert impersonation.from_headers([("impersonate-foo", "x")]) is None
    with pytest.raises(impersonation.ImpersonationError, match="requested Impersonate-Group without impersonating a user"):
        impersonation.from_headers([("impersonate-group", "g")])
    imp = impersonation.from_headers([("impersonate-user", "dev"), ("impersonate-group", "a"), ("impersonate-group", "b"),
                                      ("impersonate-uid", "42"), ("impersonate-extra-scopes%2Fx", "s1")])
    checks = [(c.api_group, c.resource, c.subresource, c.name) for c in imp.checks("admin", ())]
    assert checks == [("", "users", "", "dev"), ("", "groups", "", "a"), ("", "groups", "", "b"),
                      ("authentication.k8s.io", "userextras", "scopes/x", "s1"), ("authentication.k8s.io", "uids", "", "42")]
    assert imp.identity() == ("dev", "42", ("a", "b", "system:authenticated"), {"scopes/x": ["s1"]})
    sa = impersonation.from_headers([("impersonate-user", "system:serviceaccount:ns1:builder")])
    assert [(c.resource, c.namespace, c.name) for c in sa.checks("admin", ())] == [("serviceaccounts", "ns1", "builder")]
    assert sa.identity()[2] == ("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated")
    anon = impersonation.from_headers([("impersonate-user", "system:anonymous")])
    assert anon.identity()[2] == ("system:unauthenticated",)
