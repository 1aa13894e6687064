"""Kyverno `kyverno.io/v1` ClusterPolicy / Policy: validation of the policy objects, resource matching
(`match` / `exclude` with `any`, `all` or a bare `resources`), Pod-controller rule generation
("autogen") and `validate.pattern` / `validate.anyPattern` evaluation with Kyverno's anchors and value
operators, producing Kyverno's messages (`validation error: <msg>. rule <rule> failed at path <path>`).

Facts from Kyverno (pkg/engine/validate, pkg/engine/anchor, pkg/engine/wildcards, pkg/autogen,
pkg/webhooks/utils): paths are `/a/b/0/c/`; conditional anchors `(k)` and global anchors `^(k)` turn a
mismatch into a skip; `=(k)` checks only when present; `X(k)` forbids the key; `<(k)` needs one list
element to match; strings may use `*`/`?` wildcards, `|` (or), `&` (and) and `>`, `<`, `>=`, `<=`,
`!`, `a-b`, `a!-b` on numbers, quantities and durations.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

import jmespath
import jmespath.exceptions

from . import meta, names, quantity
from .errors import FieldError, forbidden, invalid, not_supported, required
from .selectors import LabelSelector, SelectorError

ACTIONS = ["audit", "enforce", "Audit", "Enforce"]
POD_CONTROLLERS = ["DaemonSet", "Deployment", "Job", "StatefulSet", "ReplicaSet", "ReplicationController"]
AUTOGEN_ANNOTATION = "pod-policies.kyverno.io/autogen-controllers"
_RULE_TYPES = ("mutate", "generate", "verifyImages")
_SUPPORTED_VALIDATE = ("pattern", "anyPattern")


# --------------------------------------------------------------------------------------- the object

def validate_policy(obj: dict, namespaced: bool) -> list[FieldError]:
    errs = meta.validate_object_meta(obj.get("metadata", {}), namespaced, names.dns1123_subdomain)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs + [required("spec", "")]
    action = spec.get("validationFailureAction")
    if action is not None and action not in ACTIONS:
        errs.append(not_supported("spec.validationFailureAction", action, ACTIONS))
    rules = spec.get("rules")
    if not isinstance(rules, list) or not rules:
        return errs + [required("spec.rules", "")]
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        p = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            errs.append(invalid(p, str(rule), "must be an object"))
            continue
        name = rule.get("name")
        if not name or not isinstance(name, str):
            errs.append(required(p + ".name", ""))
        elif len(name) > 63:
            errs.append(invalid(p + ".name", name, "must be no more than 63 characters"))
        elif name in seen:
            errs.append(invalid(p + ".name", name, "duplicate rule name"))
        seen.add(name or "")
        errs += _validate_match(rule.get("match"), p + ".match", required_=True)
        if rule.get("exclude") is not None:
            errs += _validate_match(rule.get("exclude"), p + ".exclude", required_=False)
        for t in _RULE_TYPES:
            if t in rule:
                errs.append(forbidden(f"{p}.{t}", f"kubeclass enforces validate rules only; {t} rules are not supported"))
        v = rule.get("validate")
        if v is None:
            if not any(t in rule for t in _RULE_TYPES):
                errs.append(required(p + ".validate", "a rule needs a validate declaration"))
            continue
        if not isinstance(v, dict):
            errs.append(invalid(p + ".validate", str(v), "must be an object"))
            continue
        fa = v.get("failureAction")
        if fa is not None and fa not in ACTIONS[2:]:
            errs.append(not_supported(p + ".validate.failureAction", fa, ACTIONS[2:]))
        kinds = [k for k in v if k not in ("message", "failureAction", "allowExistingViolations", "failureActionOverrides")]
        for k in kinds:
            if k not in _SUPPORTED_VALIDATE:
                errs.append(forbidden(f"{p}.validate.{k}", "kubeclass supports validate.pattern and validate.anyPattern"))
        if not any(k in v for k in _SUPPORTED_VALIDATE):
            errs.append(required(p + ".validate", "one of pattern or anyPattern is required"))
        if "pattern" in v and "anyPattern" in v:
            errs.append(forbidden(p + ".validate", "only one of pattern or anyPattern may be set"))
        if "anyPattern" in v and not isinstance(v["anyPattern"], list):
            errs.append(invalid(p + ".validate.anyPattern", str(v["anyPattern"]), "must be a list"))
        for pat_path, pat in _patterns(v, p + ".validate"):
            errs += _validate_anchors(pat, pat_path)
    return errs


def _patterns(v: dict, p: str):
    if "pattern" in v:
        yield p + ".pattern", v["pattern"]
    if isinstance(v.get("anyPattern"), list):
        for j, pat in enumerate(v["anyPattern"]):
            yield f"{p}.anyPattern[{j}]", pat


def _validate_anchors(pat: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if isinstance(pat, dict):
        for k, v in pat.items():
            if not isinstance(k, str):
                continue
            a = parse_anchor(k)
            if a is None and ("(" in k or ")" in k) and re.match(r"^[^a-zA-Z0-9]*\(", k):
                errs.append(invalid(f"{path}.{k}", k, "invalid anchor"))
            errs += _validate_anchors(v, f"{path}.{k}")
    elif isinstance(pat, list):
        for i, v in enumerate(pat):
            errs += _validate_anchors(v, f"{path}[{i}]")
    return errs


def _validate_match(m: Any, p: str, required_: bool) -> list[FieldError]:
    if m is None:
        return [required(p, "")] if required_ else []
    if not isinstance(m, dict):
        return [invalid(p, str(m), "must be an object")]
    errs: list[FieldError] = []
    filters = list(_filters(m))
    if not filters and required_:
        errs.append(required(p, "one of any, all or resources is required"))
    if ("any" in m or "all" in m) and ("resources" in m or "subjects" in m):
        errs.append(forbidden(p, "can't specify any/all together with resources/subjects"))
    for fp, f in _filter_paths(m, p):
        res = f.get("resources")
        if res is not None and not isinstance(res, dict):
            errs.append(invalid(fp + ".resources", str(res), "must be an object"))
            continue
        if res and res.get("selector") is not None:
            try:
                LabelSelector.from_object(res["selector"])
            except (SelectorError, Exception) as e:  # noqa: BLE001 - any malformed selector is a user error
                errs.append(invalid(fp + ".resources.selector", str(res["selector"]), str(e)))
        if required_ and not (res or {}).get("kinds") and not f.get("subjects") and not f.get("roles") and not f.get("clusterRoles"):
            errs.append(required(fp + ".resources.kinds", ""))
    return errs


def _filters(m: dict):
    for key in ("any", "all"):
        for f in m.get(key) or []:
            if isinstance(f, dict):
                yield f
    if "resources" in m or "subjects" in m or "roles" in m or "clusterRoles" in m:
        yield m


def _filter_paths(m: dict, p: str):
    for key in ("any", "all"):
        for i, f in enumerate(m.get(key) or []):
            if isinstance(f, dict):
                yield f"{p}.{key}[{i}]", f
    if "resources" in m or "subjects" in m:
        yield p, m


def defaults(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("admission", True)
        spec.setdefault("background", True)
        spec.setdefault("validationFailureAction", "Audit")


def prepare(obj: dict) -> None:
    """What Kyverno's policy controller reports once a policy is loaded: Ready, with autogen rules."""
    pol = compile_policy(obj)
    obj["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "Ready",
                        "lastTransitionTime": meta.now_rfc3339()}],
        "ready": True,
        "rulecount": {"validate": len([r for r in pol.rules if not r.autogen]), "generate": 0, "mutate": 0, "verifyimages": 0},
        "autogen": {"rules": [r.source for r in pol.rules if r.autogen]} if any(r.autogen for r in pol.rules) else {},
    }


def prepare_update(new: dict, old: dict) -> None:
    prepare(new)


def table_row(obj: dict) -> list:
    spec = obj.get("spec") or {}
    ready = "False"
    msg = ""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready, msg = c.get("status", "False"), c.get("message", "")
    return [obj["metadata"]["name"], str(spec.get("admission", True)).lower(), str(spec.get("background", True)).lower(),
            ready, meta.age(obj["metadata"].get("creationTimestamp")), msg]


# --------------------------------------------------------------------------------------- compiling

@dataclass
class Rule:
    name: str
    match: dict
    exclude: dict | None
    message: str
    patterns: list[Any]          # one for `pattern`, several for `anyPattern`
    any_pattern: bool
    enforce: bool
    allow_existing: bool
    autogen: bool = False
    source: dict = field(default_factory=dict)
    has_vars: bool = False

    kinds: frozenset | None = None        # the kind names the rule can match, when literal (a fast pre-check)
    namespaces: frozenset | None = None   # the namespaces it can match, when literal

    def __post_init__(self) -> None:
        self.has_vars = "{{" in repr(self.patterns)
        if self.match.get("all"):
            return
        filters = list(_filters(self.match))
        kinds: set[str] = set()
        nss: set[str] = set()
        for f in filters:
            res = f.get("resources") or {}
            ks = res.get("kinds") or []
            if kinds is not None:
                if not ks or any(c in k for k in ks for c in "*?"):
                    kinds = None
                else:
                    kinds |= {_kind_name(k) for k in ks}
            ns = res.get("namespaces") or []
            if nss is not None:
                if not ns or any(c in n for n in ns for c in "*?["):
                    nss = None
                else:
                    nss |= set(ns)
        if filters:
            self.kinds = frozenset(kinds) if kinds is not None else None
            self.namespaces = frozenset(nss) if nss is not None else None


@dataclass
class Policy:
    name: str
    namespace: str | None       # set for a namespaced Policy: it only sees its own namespace
    rules: list[Rule]


def _enforce(action: str | None) -> bool:
    return (action or "Audit").lower() == "enforce"


def compile_policy(obj: dict) -> Policy:
    spec = obj.get("spec") or {}
    md = obj.get("metadata") or {}
    default_action = spec.get("validationFailureAction")
    rules: list[Rule] = []
    controllers = _autogen_controllers(md.get("annotations") or {})
    for raw in spec.get("rules") or []:
        v = raw.get("validate")
        if not isinstance(v, dict) or not any(k in v for k in _SUPPORTED_VALIDATE):
            continue
        pats = [v["pattern"]] if "pattern" in v else list(v.get("anyPattern") or [])
        rule = Rule(raw["name"], raw.get("match") or {}, raw.get("exclude"), v.get("message", ""), pats, "anyPattern" in v,
                    _enforce(v.get("failureAction") or default_action), v.get("allowExistingViolations", True), source=raw)
        rules.append(rule)
        rules.extend(_autogen(rule, controllers))
    return Policy(md.get("name", ""), md.get("namespace"), rules)


def _autogen_controllers(annotations: dict) -> list[str]:
    value = annotations.get(AUTOGEN_ANNOTATION)
    if value is None:
        return POD_CONTROLLERS + ["CronJob"]
    if value.strip().lower() == "none":
        return []
    return [c.strip() for c in value.split(",") if c.strip()]


def _rule_kinds(match: dict) -> list[str]:
    return [k for f in _filters(match) for k in ((f.get("resources") or {}).get("kinds") or [])]


def _autogen(rule: Rule, controllers: list[str]) -> list[Rule]:
    """Kyverno's autogen: a rule that matches only Pods also guards the Pod templates of controllers."""
    kinds = _rule_kinds(rule.match)
    if not kinds or any(_kind_name(k) != "Pod" for k in kinds) or not controllers:
        return []
    if any((f.get("resources") or {}).get(x) for f in _filters(rule.match) for x in ("names", "name", "selector")):
        return []
    out = []
    plain = [c for c in controllers if c != "CronJob"]
    if plain:
        out.append(_wrapped(rule, "autogen-" + rule.name, plain, lambda p: {"spec": {"template": p}}))
    if "CronJob" in controllers:
        out.append(_wrapped(rule, "autogen-cronjob-" + rule.name, ["CronJob"],
                            lambda p: {"spec": {"jobTemplate": {"spec": {"template": p}}}}))
    return out


def _wrapped(rule: Rule, name: str, kinds: list[str], wrap) -> Rule:
    match = _replace_kinds(rule.match, kinds)
    exclude = _replace_kinds(rule.exclude, kinds) if rule.exclude else None
    pats = [wrap(p) for p in rule.patterns]
    v = {"message": rule.message, ("anyPattern" if rule.any_pattern else "pattern"): pats if rule.any_pattern else pats[0]}
    src = {"name": name, "match": match, "validate": v}
    if exclude:
        src["exclude"] = exclude
    return Rule(name, match, exclude, rule.message, pats, rule.any_pattern, rule.enforce, rule.allow_existing, True, src)


def _replace_kinds(m: dict, kinds: list[str]) -> dict:
    def fix(f: dict) -> dict:
        f = dict(f)
        if f.get("resources"):
            f["resources"] = {**f["resources"], "kinds": list(kinds)}
        return f
    out = dict(m)
    for key in ("any", "all"):
        if key in out:
            out[key] = [fix(f) for f in out[key]]
    if "resources" in out:
        out = fix(out)
    return out


# --------------------------------------------------------------------------------------- matching

@dataclass
class Request:
    """What a rule is matched and evaluated against (Kyverno's admission request context)."""
    operation: str
    group: str
    version: str
    kind: str
    subresource: str | None
    namespace: str | None
    name: str
    object: dict | None
    old_object: dict | None
    username: str = ""
    groups: list[str] = field(default_factory=list)
    namespace_labels: dict = field(default_factory=dict)


def _kind_name(k: str) -> str:
    """`apps/v1/Deployment` -> Deployment; `Pod/status` -> Pod."""
    parts = k.split("/")
    if len(parts) >= 2 and parts[-1][:1].islower():   # Kind/subresource
        parts = parts[:-1]
    return parts[-1]


def _kind_matches(entry: str, req: Request) -> bool:
    parts = entry.split("/")
    sub = None
    if len(parts) >= 2 and parts[-1][:1].islower() and parts[-1] != "*":
        sub = parts.pop()
    kind = parts[-1]
    if (sub or None) != (req.subresource or None) and not (sub == "*" and req.subresource):
        return False
    if not fnmatch.fnmatchcase(req.kind, kind):
        return False
    if len(parts) == 2:   # version/Kind or group/Kind ("*/Pod", "v1/Pod")
        gv = parts[0]
        return gv == "*" or gv == req.version or gv == req.group
    if len(parts) == 3:
        return (parts[0] in ("*", req.group)) and (parts[1] in ("*", req.version))
    return True


def _wild(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _resource_filter_matches(f: dict, req: Request) -> bool:
    res = f.get("resources") or {}
    obj = req.object or req.old_object or {}
    md = obj.get("metadata") or {}
    if res.get("kinds") and not any(_kind_matches(k, req) for k in res["kinds"]):
        return False
    if res.get("operations") and req.operation not in res["operations"]:
        return False
    names_ = list(res.get("names") or []) + ([res["name"]] if res.get("name") else [])
    if names_ and not _wild(names_, req.name or md.get("name", "")):
        return False
    if res.get("namespaces"):
        ns = req.namespace if req.namespace is not None else (md.get("name", "") if req.kind == "Namespace" else None)
        if ns is None or not _wild(res["namespaces"], ns):
            return False
    if res.get("selector") is not None:
        if not LabelSelector.from_object(res["selector"]).matches(md.get("labels") or {}):
            return False
    if res.get("namespaceSelector") is not None:
        if req.namespace is None or not LabelSelector.from_object(res["namespaceSelector"]).matches(req.namespace_labels):
            return False
    if res.get("annotations"):
        ann = md.get("annotations") or {}
        for k, v in res["annotations"].items():
            if not any(fnmatch.fnmatchcase(ak, k) and fnmatch.fnmatchcase(av, v) for ak, av in ann.items()):
                return False
    subjects = f.get("subjects")
    if subjects:
        ok = False
        for s in subjects:
            kind, name = s.get("kind"), s.get("name", "")
            if kind == "User" and fnmatch.fnmatchcase(req.username, name):
                ok = True
            elif kind == "Group" and any(fnmatch.fnmatchcase(g, name) for g in req.groups):
                ok = True
            elif kind == "ServiceAccount" and req.username == f"system:serviceaccount:{s.get('namespace', '')}:{name}":
                ok = True
        if not ok:
            return False
    return True


def matches(m: dict | None, req: Request) -> bool:
    if not m:
        return False
    if m.get("any"):
        return any(_resource_filter_matches(f, req) for f in m["any"])
    if m.get("all"):
        return all(_resource_filter_matches(f, req) for f in m["all"])
    return _resource_filter_matches(m, req)


def rule_applies(rule: Rule, pol: Policy, req: Request) -> bool:
    if pol.namespace is not None and req.namespace != pol.namespace:
        return False
    if rule.kinds is not None and req.kind not in rule.kinds:
        return False
    if rule.namespaces is not None and req.namespace not in rule.namespaces and req.kind != "Namespace":
        return False
    if req.subresource and not any("/" in k and _kind_matches(k, req) for k in _rule_kinds(rule.match)):
        return False
    if not matches(rule.match, req):
        return False
    return not (rule.exclude and matches(rule.exclude, req))


# --------------------------------------------------------------------------------------- patterns

class _Skip(Exception):
    """A conditional or global anchor did not match: the pattern does not apply."""

    def __init__(self, path: str, is_global: bool = False):
        self.path, self.is_global = path, is_global


@dataclass
class Anchor:
    kind: str   # "", "(", "^(", "=(", "X(", "<(", "+("
    key: str


_ANCHOR_RE = re.compile(r"^(\^|=|X|<|\+)?\((.+)\)$")


def parse_anchor(key: str) -> Anchor | None:
    m = _ANCHOR_RE.match(key)
    if not m:
        return None
    return Anchor((m.group(1) or "") + "(", m.group(2))


def check(resource: Any, pattern: Any, path: str = "/") -> str | None:
    """Returns None when `resource` satisfies `pattern`, else the failing path. Raises _Skip."""
    if isinstance(pattern, dict):
        if not isinstance(resource, dict):
            return path
        return _check_map(resource, pattern, path)
    if isinstance(pattern, list):
        if not isinstance(resource, list):
            return path
        return _check_list(resource, pattern, path)
    return None if value_matches(resource, pattern) else path


def _check_map(resource: dict, pattern: dict, path: str) -> str | None:
    anchors, plain = [], []
    for k, v in pattern.items():
        a = parse_anchor(k)
        (anchors if a else plain).append((a or Anchor("", k), v))
    # conditions first: a failed condition skips the whole map
    for a, v in anchors:
        if a.kind in ("(", "^("):
            sub = f"{path}{a.key}/"
            if a.key not in resource:
                raise _Skip(sub, a.kind == "^(")
            try:
                failed = check(resource[a.key], v, sub)
            except _Skip as s:
                raise _Skip(s.path, s.is_global or a.kind == "^(")
            if failed is not None:
                raise _Skip(failed, a.kind == "^(")
    for a, v in anchors:
        sub = f"{path}{a.key}/"
        if a.kind == "=(":
            if a.key in resource:
                failed = check(resource[a.key], v, sub)
                if failed is not None:
                    return failed
        elif a.kind == "X(":
            if a.key in resource:
                return sub
        elif a.kind == "<(":
            val = resource.get(a.key)
            if isinstance(val, list) and not isinstance(v, list):
                if not any(_safe(check, x, v, f"{sub}{i}/") is None for i, x in enumerate(val)):
                    return sub
            elif isinstance(val, list) and isinstance(v, list) and v:
                if not any(_safe(check, x, v[0], f"{sub}{i}/") is None for i, x in enumerate(val)):
                    return sub
            else:
                failed = check(val, v, sub)
                if failed is not None:
                    return failed
    for a, v in plain:
        failed = check(resource.get(a.key), v, f"{path}{a.key}/")
        if failed is not None:
            return failed
    return None


def _safe(fn, *args) -> str | None:
    try:
        return fn(*args)
    except _Skip as s:
        return s.path


def _check_list(resource: list, pattern: list, path: str) -> str | None:
    if not pattern:
        return None
    first = pattern[0]
    if isinstance(first, dict):
        # every element must match; an element whose conditions do not hold is skipped
        for i, el in enumerate(resource):
            try:
                failed = check(el, first, f"{path}{i}/")
            except _Skip as s:
                if s.is_global:
                    raise
                continue
            if failed is not None:
                return failed
        return None
    if len(pattern) == 1:
        for i, el in enumerate(resource):
            failed = check(el, first, f"{path}{i}/")
            if failed is not None:
                return failed
        return None
    if len(resource) < len(pattern):
        return path
    for i, p in enumerate(pattern):
        failed = check(resource[i], p, f"{path}{i}/")
        if failed is not None:
            return failed
    return None


# --------------------------------------------------------------------------------------- values

def value_matches(value: Any, pattern: Any) -> bool:
    if pattern is None:
        return value in (None, "", 0, False) or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)
    if isinstance(pattern, bool):
        return value is pattern or (isinstance(value, str) and value.lower() == str(pattern).lower())
    if isinstance(pattern, (int, float)):
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return value == pattern
        if isinstance(value, str):
            try:
                return float(value) == float(pattern)
            except ValueError:
                return False
        return False
    if isinstance(pattern, str):
        return any(all(_one(value, cond.strip()) for cond in alt.split("&")) for alt in pattern.split("|"))
    return False


_OPS = (">=", "<=", "!=", ">", "<", "!")
_RANGE = re.compile(r"^(\S+?)(!?)-(\S+)$")


def _one(value: Any, pat: str) -> bool:
    if value is None:
        return pat == ""
    if isinstance(value, (dict, list)):
        return False
    sval = _str(value)
    for op in _OPS:
        if pat.startswith(op):
            operand = pat[len(op):].strip()
            if op in ("!", "!="):
                return not _wildcard(sval, operand)
            cmp = _compare(value, operand)
            if cmp is None:
                return False
            return {">=": cmp >= 0, "<=": cmp <= 0, ">": cmp > 0, "<": cmp < 0}[op]
    m = _RANGE.match(pat)
    if m and _number_like(m.group(1)) and _number_like(m.group(3)):
        lo, hi = _compare(value, m.group(1)), _compare(value, m.group(3))
        if lo is None or hi is None:
            return False
        inside = lo >= 0 and hi <= 0
        return not inside if m.group(2) else inside
    return _wildcard(sval, pat)


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _wildcard(value: str, pat: str) -> bool:
    if pat == "*":
        return True
    return fnmatch.fnmatchcase(value, pat.replace("[", "[[]")) if any(c in pat for c in "*?") else value == pat


def _number_like(s: str) -> bool:
    return _to_number(s) is not None


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _to_number(s: Any) -> float | None:
    if isinstance(s, bool):
        return None
    if isinstance(s, (int, float)):
        return float(s)
    s = str(s).strip()
    try:
        return float(s)
    except ValueError:
        pass
    if _DURATION.match(s):
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        return sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", s))
    try:
        return float(quantity.parse(s).value)
    except Exception:  # noqa: BLE001 - not a quantity: not comparable
        return None


def _compare(value: Any, operand: str) -> int | None:
    a, b = _to_number(value), _to_number(operand)
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


# --------------------------------------------------------------------------------------- evaluation

@dataclass
class Outcome:
    rule: str
    status: str          # pass | fail | skip
    message: str = ""
    enforce: bool = False


def _context(req: Request) -> dict:
    return {"request": {"operation": req.operation, "object": req.object, "oldObject": req.old_object,
                        "namespace": req.namespace, "name": req.name,
                        "kind": {"group": req.group, "version": req.version, "kind": req.kind},
                        "userInfo": {"username": req.username, "groups": req.groups}},
            "serviceAccountName": req.username.split(":")[-1] if req.username.startswith("system:serviceaccount:") else ""}


_VAR = re.compile(r"\{\{\s*(.+?)\s*\}\}")


def substitute(value: Any, ctx: dict) -> Any:
    """Kyverno variables (`{{ request.object.metadata.name }}`) are JMESPath over the request context."""
    if isinstance(value, str) and "{{" in value:
        def repl(m: re.Match) -> str:
            try:
                got = jmespath.search(m.group(1), ctx)
            except jmespath.exceptions.JMESPathError:
                return m.group(0)
            return "" if got is None else _str(got) if not isinstance(got, (dict, list)) else str(got)
        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {substitute(k, ctx): substitute(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, ctx) for v in value]
    return value


def _message(rule: Rule, ctx: dict, path: str) -> str:
    if not rule.message:
        return f"validation error: rule {rule.name} failed at path {path}"
    msg = substitute(rule.message, ctx)
    if not msg.endswith("."):
        msg += "."
    return f"validation error: {msg} rule {rule.name} failed at path {path}"


def _any_message(rule: Rule, ctx: dict, failures: list[str]) -> str:
    errs = " ".join(failures)
    if not rule.message:
        return f"validation error: {errs}"
    msg = substitute(rule.message, ctx)
    return f"validation error: {msg} {errs}" if msg.endswith(".") else f"validation error: {msg}. {errs}"


def evaluate(rule: Rule, obj: dict, ctx: dict) -> Outcome:
    """One rule against one object (already matched)."""
    patterns = [substitute(p, ctx) for p in rule.patterns] if rule.has_vars else rule.patterns
    if not rule.any_pattern:
        try:
            failed = check(obj, patterns[0])
        except _Skip:
            return Outcome(rule.name, "skip", f"rule {rule.name} skipped: conditional anchor mismatch", rule.enforce)
        if failed is None:
            return Outcome(rule.name, "pass", f"validation rule '{rule.name}' passed.", rule.enforce)
        return Outcome(rule.name, "fail", _message(rule, ctx, failed), rule.enforce)
    failures, skipped = [], 0
    for i, p in enumerate(patterns):
        try:
            failed = check(obj, p)
        except _Skip:
            skipped += 1
            continue
        if failed is None:
            return Outcome(rule.name, "pass", f"validation rule '{rule.name}' anyPattern[{i}] passed.", rule.enforce)
        failures.append(f"rule {rule.name}[{i}] failed at path {failed}.")
    if not failures and skipped:
        return Outcome(rule.name, "skip", f"rule {rule.name} skipped: conditional anchor mismatch", rule.enforce)
    return Outcome(rule.name, "fail", _any_message(rule, ctx, failures), rule.enforce)


def run(pol: Policy, req: Request) -> list[Outcome]:
    """Every applicable rule of `pol` against the request; Kyverno's allowExistingViolations on UPDATE."""
    out: list[Outcome] = []
    ctx = None
    for rule in pol.rules:
        if not rule_applies(rule, pol, req):
            continue
        if ctx is None:
            ctx = _context(req)
        res = evaluate(rule, req.object or {}, ctx)
        if res.status == "fail" and req.operation == "UPDATE" and rule.allow_existing and req.old_object:
            if evaluate(rule, req.old_object, ctx).status == "fail":
                res = Outcome(rule.name, "skip", "existing violation", rule.enforce)
        out.append(res)
    return out
