"""User impersonation (`kubectl --as`), as upstream's impersonation filter (pure logic): the Impersonate-User,
Impersonate-Group, Impersonate-Uid and Impersonate-Extra-<key> headers become the checks the requester must
pass (verb `impersonate` on users / groups / serviceaccounts / uids / userextras/<key>) and the identity the
request then runs as."""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from .rbac import RequestAttributes

SA_PREFIX = "system:serviceaccount:"


class ImpersonationError(ValueError):
    """Impersonation headers that ask for something impossible (400)."""


@dataclass
class Impersonation:
    user: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)
    groups_given: bool = False

    def checks(self, requestor: str, requestor_groups: tuple[str, ...]) -> list[RequestAttributes]:
        """What the requester must be allowed, in upstream's order: the user (or service account), each group,
        each extra value, the uid."""
        def attrs(group: str, resource: str, name: str, ns: str = "", sub: str = "") -> RequestAttributes:
            return RequestAttributes(requestor, requestor_groups, "impersonate", True, group, resource, sub, ns, name)
        out = []
        sa = _service_account(self.user)
        out.append(attrs("", "serviceaccounts", sa[1], sa[0]) if sa else attrs("", "users", self.user))
        out += [attrs("", "groups", g) for g in self.groups]
        for key, values in self.extra.items():
            out += [attrs("authentication.k8s.io", "userextras", v, sub=key) for v in values]
        if self.uid:
            out.append(attrs("authentication.k8s.io", "uids", self.uid))
        return out

    def identity(self) -> tuple[str, str, tuple[str, ...], dict[str, list[str]]]:
        """(name, uid, groups, extra) the request runs as: a service account without groups given gets its
        groups; a user other than system:anonymous gets system:authenticated unless a group says otherwise."""
        groups = list(self.groups)
        sa = _service_account(self.user)
        if sa and not self.groups_given:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        if self.user != "system:anonymous":
            if not any(g in ("system:authenticated", "system:unauthenticated") for g in groups):
                groups.append("system:authenticated")
        elif "system:unauthenticated" not in groups:
            groups.append("system:unauthenticated")
        return self.user, self.uid, tuple(groups), self.extra


def _service_account(user: str) -> tuple[str, str] | None:
    if not user.startswith(SA_PREFIX):
        return None
    parts = user[len(SA_PREFIX):].split(":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def from_headers(headers: list[tuple[str, str]]) -> Impersonation | None:
    """The impersonation a request asks for (header names lower-case), or None."""
    user, uid, groups, extra = None, "", [], {}
    groups_given = has_uid = False
    for name, value in headers:
        if name == "impersonate-user":
            user = value
        elif name == "impersonate-group":
            groups.append(value)
            groups_given = True
        elif name == "impersonate-uid":
            uid, has_uid = value, True
        elif name.startswith("impersonate-extra-"):
            key = urllib.parse.unquote(name[len("impersonate-extra-"):]).lower()
            extra.setdefault(key, []).append(value)
    if user is None:
        if groups_given or extra or has_uid:
            asked = (["Impersonate-Group"] if groups_given else []) + (["Impersonate-Extra-*"] if extra else []) + \
                    (["Impersonate-Uid"] if has_uid else [])
            raise ImpersonationError(f"requested {', '.join(asked)} without impersonating a user")
        return None
    if not user:
        raise ImpersonationError("Impersonate-User is empty")
    return Impersonation(user, groups, uid, extra, groups_given)
