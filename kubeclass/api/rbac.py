"""RBAC rule matching and the default roles kube-apiserver bootstraps (pure logic)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestAttributes:
    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _has(items, value) -> bool:
    return "*" in (items or []) or value in (items or [])


def rule_allows(rule: dict, a: RequestAttributes) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == a.path or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups"), a.api_group):
        return False
    resources = rule.get("resources") or []
    # ResourceMatches: "*", the exact resource[/subresource], or "*/<subresource>"
    if not ("*" in resources or a.full_resource in resources or (a.subresource and f"*/{a.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def subject_matches(subject: dict, user: str, groups: tuple[str, ...], binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user
    if kind == "Group":
        return subject.get("name") in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


def forbidden_message(a: RequestAttributes) -> str:
    if not a.resource_request:
        return f'User "{a.user}" cannot {a.verb} path "{a.path}"'
    if a.namespace:
        return f'User "{a.user}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.api_group}" in the namespace "{a.namespace}"'
    return f'User "{a.user}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.api_group}" at the cluster scope'


READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_VIEW_RULES = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status", "events", "serviceaccounts", "resourcequotas",
                                      "resourcequotas/status", "limitranges", "namespaces", "namespaces/status", "services",
                                      "services/status", "endpoints"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["apps"], "resources": ["daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
                                          "replicasets", "replicasets/scale", "replicasets/status"], "verbs": READ},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], "verbs": READ},
    # what metrics-server's system:aggregated-metrics-reader adds to view, edit and admin
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": READ},
]
_EDIT_RULES = [
    {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "serviceaccounts",
                                      "services", "services/proxy"], "verbs": WRITE},
    {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                                          "replicasets/scale"], "verbs": WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
]
_ADMIN_RULES = [
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": READ + WRITE},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
]
_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def _cr(name: str, rules: list) -> dict:
    md = {"name": name, "labels": dict(_META["labels"]), "annotations": dict(_META["annotations"])}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": md, "rules": rules}


def _crb(name: str, role: str, subjects: list[dict]) -> dict:
    md = {"name": name, "labels": dict(_META["labels"]), "annotations": dict(_META["annotations"])}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": md,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects}


def _group(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


DEFAULT_CLUSTER_ROLES = [
    _cr("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    _cr("admin", _VIEW_RULES + _EDIT_RULES + _ADMIN_RULES),
    _cr("edit", _VIEW_RULES + _EDIT_RULES),
    _cr("view", _VIEW_RULES),
    _cr("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                                  "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
    _cr("system:basic-user", [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                               "verbs": ["create"]},
                              {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
    _cr("system:aggregated-metrics-reader", [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": READ}]),
    _cr("system:monitoring", [{"nonResourceURLs": ["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
                                                   "/readyz", "/readyz/*"], "verbs": ["get"]}]),
    _cr("system:public-info-viewer", [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
    _cr("system:service-account-issuer-discovery", [{"nonResourceURLs": ["/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                                                                         "/openid/v1/jwks", "/openid/v1/jwks/"], "verbs": ["get"]}]),
]
DEFAULT_CLUSTER_ROLE_BINDINGS = [
    _crb("cluster-admin", "cluster-admin", [_group("system:masters")]),
    _crb("system:discovery", "system:discovery", [_group("system:authenticated")]),
    _crb("system:basic-user", "system:basic-user", [_group("system:authenticated")]),
    _crb("system:monitoring", "system:monitoring", [_group("system:monitoring")]),
    _crb("system:public-info-viewer", "system:public-info-viewer", [_group("system:authenticated"), _group("system:unauthenticated")]),
    _crb("system:service-account-issuer-discovery", "system:service-account-issuer-discovery", [_group("system:serviceaccounts")]),
]
