"""RBAC authorization (upstream's RBAC authorizer): `system:masters` is allowed everything; otherwise
a request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's namespace, binds the
user (or one of its groups, or its service account) to a role with a matching rule. Roles are read from
the store's cache; the default ClusterRoles are bootstrapped at start as kube-apiserver does."""
from __future__ import annotations

import copy

from ..api import rbac
from ..api.rbac import RequestAttributes


class RBACAuthorizer:
    def __init__(self, store):
        self.store = store

    def _role_rules(self, ref: dict, namespace: str) -> list[dict]:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            e = self.store.get(f"/registry/clusterroles/{name}")
        elif kind == "Role" and namespace:
            e = self.store.get(f"/registry/roles/{namespace}/{name}")
        else:
            e = None
        return (e.obj.get("rules") or []) if e else []

    def _bindings(self, namespace: str):
        for _, e in self.store.list("/registry/clusterrolebindings/")[0]:
            yield e.obj, ""
        if namespace:
            for _, e in self.store.list(f"/registry/rolebindings/{namespace}/")[0]:
                yield e.obj, namespace

    def rules_for(self, user: str, groups: tuple[str, ...], namespace: str):
        for b, ns in self._bindings(namespace):
            if any(rbac.subject_matches(s, user, groups, ns or b["metadata"].get("namespace", "")) for s in b.get("subjects") or []):
                yield from self._role_rules(b.get("roleRef") or {}, ns)

    def authorize(self, a: RequestAttributes) -> bool:
        if "system:masters" in a.groups:
            return True
        return any(rbac.rule_allows(r, a) for r in self.rules_for(a.user, a.groups, a.namespace))


async def bootstrap(rest, registry) -> None:
    """Create the default ClusterRoles and ClusterRoleBindings that are missing."""
    from .rest import Context
    for objs, plural in ((rbac.DEFAULT_CLUSTER_ROLES, "clusterroles"), (rbac.DEFAULT_CLUSTER_ROLE_BINDINGS, "clusterrolebindings")):
        res = registry.BY_PATH[("rbac.authorization.k8s.io", "v1", plural)]
        for obj in objs:
            if rest.store.get(res.key(None, obj["metadata"]["name"])) is None:
                await rest.create(Context("POST", {}, "application/json"), res, copy.deepcopy(obj))
