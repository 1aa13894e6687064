"""RBAC escalation prevention (pure logic), as upstream's RBAC storage does it: a Role or ClusterRole may only
grant rules the requester itself holds, and a binding may only bind a role whose rules the requester holds
(unless it may `escalate` roles / `bind` that role, or is in system:masters; the server checks those).

A requested rule is broken down into atomic rules (one verb x group x resource x resourceName, or one verb x
nonResourceURL); it is covered when one of the requester's rules covers each. The message lists what is
missing in upstream's compact form, e.g. `{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}`.
"""
from __future__ import annotations

from .errors import go_quote


def breakdown(rule: dict) -> list[dict]:
    out = []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in verbs:
                if names:
                    out += [{"apiGroups": [group], "resources": [resource], "verbs": [verb], "resourceNames": [n]} for n in names]
                else:
                    out.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    for url in rule.get("nonResourceURLs") or []:
        out += [{"nonResourceURLs": [url], "verbs": [v]} for v in verbs]
    return out


def _has(items: list, value: str) -> bool:
    return value in items


def _has_all(items: list, values: list) -> bool:
    return all(v in items for v in values)


def _resources_cover(owner: list, wanted: list) -> bool:
    if "*" in owner or _has_all(owner, wanted):
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path:
            return False
        if "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _urls_cover(owner: list, wanted: list) -> bool:
    for url in wanted:
        if not any(o == url or (o.endswith("*") and url.startswith(o[:-1])) for o in owner):
            return False
    return True


def rule_covers(owner: dict, sub: dict) -> bool:
    """Whether the owner's rule covers the (atomic) subrule."""
    ov, og, ore = owner.get("verbs") or [], owner.get("apiGroups") or [], owner.get("resources") or []
    on, ou = owner.get("resourceNames") or [], owner.get("nonResourceURLs") or []
    if not ("*" in ov or _has_all(ov, sub.get("verbs") or [])):
        return False
    if not ("*" in og or _has_all(og, sub.get("apiGroups") or [])):
        return False
    if not _resources_cover(ore, sub.get("resources") or []):
        return False
    if not _urls_cover(ou, sub.get("nonResourceURLs") or []):
        return False
    # an owner naming resources covers only those names; a subrule naming none needs an owner naming none
    sn = sub.get("resourceNames") or []
    if on and not (sn and _has_all(on, sn)):
        return False
    return True


def missing(owner_rules: list[dict], rules: list[dict]) -> list[dict]:
    """The atomic rules of `rules` that none of the owner's rules covers."""
    out = []
    for rule in rules:
        for sub in breakdown(rule):
            if not any(rule_covers(o, sub) for o in owner_rules):
                out.append(sub)
    return out


def compact(rules: list[dict]) -> list[dict]:
    """Rules naming one group, one resource and at most one resource name merged, their verbs combined."""
    out: list[dict] = []
    simple: dict[tuple, dict] = {}
    for r in rules:
        names = r.get("resourceNames") or []
        if (len(names) > 1 or r.get("nonResourceURLs") or len(r.get("apiGroups") or []) != 1
                or len(r.get("resources") or []) != 1):
            out.append(r)
            continue
        key = (r["apiGroups"][0], r["resources"][0], names[0] if names else None)
        if key in simple:
            for v in r.get("verbs") or []:
                if v not in simple[key]["verbs"]:
                    simple[key]["verbs"].append(v)
        else:
            simple[key] = {**r, "verbs": list(r.get("verbs") or [])}
    return out + list(simple.values())


def _q(values: list) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def compact_string(r: dict) -> str:
    parts = []
    for field, label in (("apiGroups", "APIGroups"), ("resources", "Resources"), ("nonResourceURLs", "NonResourceURLs"),
                         ("resourceNames", "ResourceNames"), ("verbs", "Verbs")):
        if r.get(field):
            parts.append(f"{label}:{_q(r[field])}")
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: str, groups: list[str], lacking: list[dict]) -> str:
    described = sorted({compact_string(r) for r in compact(lacking)})
    return (f"user {go_quote(user)} (groups={_q(groups)}) is attempting to grant RBAC permissions not currently held:\n"
            + "\n".join(described))
