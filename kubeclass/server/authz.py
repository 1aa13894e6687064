"""RBAC authorization (upstream's RBAC authorizer): `system:masters` is allowed everything; otherwise
a request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's namespace, binds the
user (or one of its groups, or its service account) to a role with a matching rule. Roles are read from
the store's cache; the default ClusterRoles are bootstrapped at start as kube-apiserver does."""
from __future__ import annotations

import copy

from ..api import errors, rbac
from ..api.rbac import RequestAttributes
from ..api.rbac_escalation import escalation_message, missing


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


ROLES = ("roles", "clusterroles")
BINDINGS = ("rolebindings", "clusterrolebindings")


class EscalationGuard:
    """Upstream's RBAC storage checks, run by the REST layer before admission on every create and update of a
    Role, ClusterRole, RoleBinding or ClusterRoleBinding: the requester may only grant what it holds."""

    def __init__(self, authorizer: RBACAuthorizer):
        self.authz = authorizer

    def check(self, user, res, obj: dict, old: dict | None) -> None:
        if res.group != "rbac.authorization.k8s.io" or user is None or "system:masters" in user.groups:
            return
        md = obj.get("metadata") or {}
        ns, name = md.get("namespace") or "", md.get("name") or ""
        if res.plural in ROLES:
            if old is not None and (old.get("rules") or []) == (obj.get("rules") or []):
                return
            if self._allowed(user, "escalate", res.plural, ns, name):
                return
            self._confirm(user, ns, obj.get("rules") or [], res, name)
        elif res.plural in BINDINGS:
            ref = obj.get("roleRef") or {}
            if old is not None and (old.get("roleRef") or {}) == ref and \
                    (old.get("subjects") or []) == (obj.get("subjects") or []):
                return   # metadata only (labels, finalizers for the garbage collector...)
            plural = "roles" if ref.get("kind") == "Role" else "clusterroles"
            if self._allowed(user, "bind", plural, ns, ref.get("name") or ""):
                return
            rules = self._role_rules(ref, ns, res, name)
            self._confirm(user, ns, rules, res, name)

    def _allowed(self, user, verb: str, plural: str, ns: str, name: str) -> bool:
        return self.authz.authorize(RequestAttributes(user.name, user.groups, verb, True, "rbac.authorization.k8s.io",
                                                      plural, "", ns, name))

    def _role_rules(self, ref: dict, ns: str, res, name: str) -> list[dict]:
        kind, rname = ref.get("kind"), ref.get("name") or ""
        if kind == "ClusterRole":
            e = self.authz.store.get(f"/registry/clusterroles/{rname}")
            missing_msg = f'clusterrole.rbac.authorization.k8s.io "{rname}" not found'
        elif kind == "Role" and ns:
            e = self.authz.store.get(f"/registry/roles/{ns}/{rname}")
            missing_msg = f'role.rbac.authorization.k8s.io "{rname}" not found'
        else:
            e, missing_msg = None, f"unsupported role reference kind: {kind!r}"
        if e is None:
            raise errors.forbidden_status(res.plural, res.group, name, missing_msg)
        return e.obj.get("rules") or []

    def _confirm(self, user, ns: str, rules: list[dict], res, name: str) -> None:
        owner = list(self.authz.rules_for(user.name, user.groups, ns))
        lacking = missing(owner, rules)
        if lacking:
            raise errors.forbidden_status(res.plural, res.group, name, escalation_message(user.name, list(user.groups), lacking))
