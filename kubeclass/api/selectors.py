"""Label selectors (string and object form) and field selectors, with apimachinery's semantics."""
from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


class SelectorError(ValueError):
    pass


_SPECIAL = ("!=", "==", "=", "(", ")", ",", "!")


def _validate(req: "Requirement") -> None:
    """The key a qualified name and each value a label value, with upstream's messages (labels.Parse)."""
    from . import names
    from .errors import go_value
    errs = names.qualified_name(req.key)
    if errs:
        raise SelectorError(f"unable to parse requirement: <nil>: Invalid value: {go_value(req.key)}: {'; '.join(errs)}")
    bad = []
    for i, v in enumerate(req.values):
        verrs = names.label_value(v)
        if verrs:
            bad.append(f"values[{i}][{req.key}]: Invalid value: {go_value(v)}: {'; '.join(verrs)}")
    if bad:
        raise SelectorError("unable to parse requirement: " + (bad[0] if len(bad) == 1 else "[" + ", ".join(bad) + "]"))


@dataclass
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !
    values: tuple = ()

    def matches(self, labels: dict) -> bool:
        has = self.key in labels
        if self.op in ("=", "==", "in"):
            return has and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not has or labels[self.key] not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        return False

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        return f"{self.key}{self.op}{self.values[0]}"


class LabelSelector:
    def __init__(self, reqs: list[Requirement] | None = None, nothing: bool = False):
        self.reqs = reqs or []
        self.nothing = nothing

    def matches(self, labels: dict | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.reqs)

    def empty(self) -> bool:
        return not self.reqs and not self.nothing

    def to_string(self) -> str:
        return ",".join(str(r) for r in self.reqs)

    @classmethod
    def parse(cls, s: str | None) -> "LabelSelector":
        s = (s or "").strip()
        if not s:
            return cls()
        toks = _TOKEN.findall(s)
        reqs: list[Requirement] = []
        i = 0

        def need(cond: bool, what: str):
            if not cond:
                raise SelectorError(f"unable to parse requirement: {what}")
        while i < len(toks):
            t = toks[i]
            if t == "!":
                need(i + 1 < len(toks), "found '', expected: identifier")
                need(toks[i + 1] not in _SPECIAL, f"found '{toks[i + 1]}', expected: identifier")
                reqs.append(Requirement(toks[i + 1], "!"))
                i += 2
            else:
                key = t
                need(key not in ("=", "==", "!=", "(", ")", ","), f"found '{key}', expected: identifier")
                i += 1
                if i >= len(toks) or toks[i] == ",":
                    reqs.append(Requirement(key, "exists"))
                elif toks[i] in ("=", "==", "!="):
                    op = "!=" if toks[i] == "!=" else "="
                    i += 1
                    val = ""
                    if i < len(toks) and toks[i] not in (",",):
                        val = toks[i]
                        need(val not in _SPECIAL, f"found '{val}', expected: identifier")
                        i += 1
                    reqs.append(Requirement(key, op, (val,)))
                elif toks[i] in ("in", "notin"):
                    op = toks[i]
                    i += 1
                    need(i < len(toks) and toks[i] == "(", "found '', expected: '('")
                    i += 1
                    vals = []
                    while i < len(toks) and toks[i] != ")":
                        if toks[i] != ",":
                            vals.append(toks[i])
                        i += 1
                    need(i < len(toks), "found '', expected: ')'")
                    i += 1
                    reqs.append(Requirement(key, op, tuple(vals)))
                else:
                    raise SelectorError(f"unable to parse requirement: found '{toks[i]}', expected: '=', '!=', '==', 'in', notin'")
            _validate(reqs[-1])
            if i < len(toks):
                need(toks[i] == ",", f"found '{toks[i]}', expected: ','")
                i += 1
        return cls(reqs)

    @classmethod
    def from_object(cls, sel: dict | None) -> "LabelSelector":
        """metav1.LabelSelector; a nil selector matches nothing, an empty one everything."""
        if sel is None:
            return cls(nothing=True)
        reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
        for e in sel.get("matchExpressions") or []:
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(e.get("operator"))
            if op is None:
                raise SelectorError(f"{e.get('operator')!r} is not a valid label selector operator")
            reqs.append(Requirement(e.get("key", ""), op, tuple(e.get("values") or ())))
        return cls(reqs)


@dataclass
class FieldRequirement:
    path: str
    op: str
    value: str


class FieldSelector:
    def __init__(self, reqs: list[FieldRequirement]):
        self.reqs = reqs

    @classmethod
    def parse(cls, s: str | None) -> "FieldSelector":
        reqs = []
        for part in (s or "").split(","):
            part = part.strip()
            if not part:
                continue
            m = re.match(r"^([^=!]+)(==|!=|=)(.*)$", part)
            if not m:
                raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
            reqs.append(FieldRequirement(m.group(1).strip(), "!=" if m.group(2) == "!=" else "=", m.group(3).strip()))
        return cls(reqs)

    def empty(self) -> bool:
        return not self.reqs

    def matches(self, obj: dict) -> bool:
        for r in self.reqs:
            v = field_value(obj, r.path)
            if (v == r.value) != (r.op == "="):
                return False
        return True

    def exact(self, path: str) -> str | None:
        for r in self.reqs:
            if r.path == path and r.op == "=":
                return r.value
        return None


# the field labels each resource supports in field selectors (upstream's field label conversion functions);
# the rest support metadata.name and metadata.namespace
_META = ("metadata.name", "metadata.namespace")
FIELD_LABELS = {
    ("", "pods"): _META + ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                           "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"),
    ("", "nodes"): ("metadata.name", "spec.unschedulable"),
    ("", "namespaces"): ("metadata.name", "status.phase"),
    ("", "secrets"): _META + ("type",),
    ("", "events"): _META + ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                             "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                             "reason", "reportingComponent", "source", "type"),
    ("apps", "replicasets"): _META + ("status.replicas",),
}
_ALIASES = {"source": "source.component", "status.podIPs": "status.podIP"}


def check_field_labels(fs: "FieldSelector", group: str, plural: str) -> None:
    """400 `field label not supported: X` for a field the resource cannot be selected by, as upstream."""
    allowed = FIELD_LABELS.get((group, plural), _META)
    for r in fs.reqs:
        if r.path not in allowed:
            raise SelectorError(f"field label not supported: {r.path}")


def field_value(obj: dict, path: str) -> str:
    path = _ALIASES.get(path, path)
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur) if not isinstance(cur, (dict, list)) else ""
