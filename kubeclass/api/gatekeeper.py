"""OPA Gatekeeper: `templates.gatekeeper.sh/v1` ConstraintTemplate objects, the constraint kinds they
declare (served under `constraints.gatekeeper.sh/v1beta1`, as Gatekeeper's generated CRDs are), a
constraint's `spec.match`, the AdmissionReview-shaped `input` its Rego sees, and the normalisation of
Rego v0 partial-set results. Rego itself is evaluated by the admission plugin (a real engine).

Facts from Gatekeeper (pkg/target, pkg/mutation/match, apis/templates): the template name must be the
lowercase of its kind; one target, `admission.k8s.gatekeeper.sh`; a constraint's plural and singular are
the lowercase kind, categories `constraint` and `constraints`; enforcementAction `deny` (default),
`dryrun`, `warn`; denials read `[<constraint name>] <msg>`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import orjson

from . import meta, names
from .errors import FieldError, invalid, not_supported, required
from .selectors import LabelSelector, SelectorError

TARGET = "admission.k8s.gatekeeper.sh"
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"
CONSTRAINT_VERSION = "v1beta1"
ACTIONS = ["deny", "dryrun", "warn", "scoped"]


# --------------------------------------------------------------------------------------- templates

def template_kind(t: dict) -> str:
    return (((t.get("spec") or {}).get("crd") or {}).get("spec") or {}).get("names", {}).get("kind", "")


def validate_template(t: dict) -> list[FieldError]:
    md = t.get("metadata", {})
    errs = meta.validate_object_meta(md, False, names.dns1123_subdomain)
    spec = t.get("spec")
    if not isinstance(spec, dict):
        return errs + [required("spec", "")]
    kind = template_kind(t)
    if not kind:
        errs.append(required("spec.crd.spec.names.kind", ""))
    elif not kind[:1].isalpha() or not kind.replace("_", "").isalnum():
        errs.append(invalid("spec.crd.spec.names.kind", kind, "must be a valid Kind: letters and digits, starting with a letter"))
    elif md.get("name") and md["name"] != kind.lower():
        errs.append(invalid("metadata.name", md["name"],
                            f"the ConstraintTemplate's name {md['name']!r} is not equal to the lowercase of CRD's Kind: {kind.lower()!r}"))
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        errs.append(required("spec.targets", ""))
    elif len(targets) != 1:
        errs.append(invalid("spec.targets", len(targets), "exactly one target is supported"))
    else:
        tg = targets[0] if isinstance(targets[0], dict) else {}
        if tg.get("target") != TARGET:
            errs.append(not_supported("spec.targets[0].target", tg.get("target"), [TARGET]))
        if not isinstance(tg.get("rego"), str) or not tg.get("rego", "").strip():
            errs.append(required("spec.targets[0].rego", ""))
        if tg.get("libs") is not None and not (isinstance(tg["libs"], list) and all(isinstance(x, str) for x in tg["libs"])):
            errs.append(invalid("spec.targets[0].libs", str(tg["libs"]), "must be a list of strings"))
    sch = parameters_schema(t)
    if sch is not None and not isinstance(sch, dict):
        errs.append(invalid("spec.crd.spec.validation.openAPIV3Schema", str(sch), "must be an object"))
    return errs


def parameters_schema(t: dict) -> Any:
    v = (((t.get("spec") or {}).get("crd") or {}).get("spec") or {}).get("validation") or {}
    return v.get("openAPIV3Schema")


def rego_sources(t: dict) -> tuple[str, list[str]]:
    tg = (t.get("spec") or {}).get("targets", [{}])[0]
    return tg.get("rego", ""), list(tg.get("libs") or [])


def package_of(rego: str) -> str:
    for line in rego.splitlines():
        line = line.strip()
        if line.startswith("package "):
            return line.split()[1]
    return ""


def template_status(t: dict, errors: list[str] | None = None) -> dict:
    st: dict = {"created": not errors}
    if errors:
        st["byPod"] = [{"id": "kubeclass", "observedGeneration": t["metadata"].get("generation", 1),
                        "errors": [{"code": "ingest_error", "message": e} for e in errors]}]
    return st


def prepare_template(t: dict, old: dict | None = None) -> None:
    t["status"] = template_status(t)


# --------------------------------------------------------------------------------------- constraints

def definition_name(kind: str) -> str:
    return f"sh.gatekeeper.constraints.v1beta1.{kind}"


def constraint_definition(t: dict) -> dict:
    """The OpenAPI schema of the constraint kind: Gatekeeper's match and enforcementAction, and the
    template's parameters schema (unknown parameters are kept, as Gatekeeper's CRDs preserve them)."""
    kind = template_kind(t)
    params = parameters_schema(t)
    params = dict(params) if isinstance(params, dict) else {}
    if not params.get("properties"):
        params["x-kubernetes-preserve-unknown-fields"] = True
    params.setdefault("type", "object")
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "description": f"{kind} is a Gatekeeper constraint of template {t['metadata']['name']}.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "properties": {
                "enforcementAction": {"type": "string"},
                "match": free,
                "parameters": params,
                "scopedEnforcementActions": {"type": "array", "items": free},
            }},
            "status": free,
        },
        "x-kubernetes-group-version-kind": [{"group": CONSTRAINT_GROUP, "version": CONSTRAINT_VERSION, "kind": kind}],
    }


def validate_constraint(c: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(c.get("metadata", {}), False, names.dns1123_subdomain)
    spec = c.get("spec") or {}
    if not isinstance(spec, dict):
        return errs + [invalid("spec", str(spec), "must be an object")]
    action = spec.get("enforcementAction")
    if action is not None and action not in ACTIONS:
        errs.append(not_supported("spec.enforcementAction", action, ACTIONS))
    m = spec.get("match")
    if m is not None:
        if not isinstance(m, dict):
            errs.append(invalid("spec.match", str(m), "must be an object"))
        else:
            for i, k in enumerate(m.get("kinds") or []):
                if not isinstance(k, dict):
                    errs.append(invalid(f"spec.match.kinds[{i}]", str(k), "must be an object"))
            for f in ("labelSelector", "namespaceSelector"):
                if m.get(f) is not None:
                    try:
                        LabelSelector.from_object(m[f])
                    except (SelectorError, Exception) as e:  # noqa: BLE001 - malformed selector is a user error
                        errs.append(invalid(f"spec.match.{f}", str(m[f]), str(e)))
            scope = m.get("scope")
            if scope is not None and scope not in ("*", "Cluster", "Namespaced"):
                errs.append(not_supported("spec.match.scope", scope, ["*", "Cluster", "Namespaced"]))
    return errs


def constraint_defaults(c: dict) -> None:
    spec = c.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("enforcementAction", "deny")


def constraint_row(c: dict) -> list:
    spec = c.get("spec") or {}
    return [c["metadata"]["name"], spec.get("enforcementAction", "deny"), (c.get("status") or {}).get("totalViolations", "")]


# --------------------------------------------------------------------------------------- matching

@dataclass
class Review:
    operation: str
    group: str
    version: str
    kind: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str
    object: dict | None
    old_object: dict | None
    username: str = ""
    groups: list | None = None
    dry_run: bool = False
    namespace_labels: dict | None = None

    def input(self) -> dict:
        """`input.review` as Gatekeeper builds it from the AdmissionRequest."""
        r = {"kind": {"group": self.group, "version": self.version, "kind": self.kind},
             "resource": {"group": self.group, "version": self.version, "resource": self.resource},
             "name": self.name, "operation": self.operation,
             "userInfo": {"username": self.username, "groups": list(self.groups or [])},
             "object": self.object, "oldObject": self.old_object, "dryRun": self.dry_run}
        if self.namespace:
            r["namespace"] = self.namespace
        if self.subresource:
            r["subResource"] = self.subresource
        return r


def _ns_match(patterns: list[str], ns: str) -> bool:
    return any(fnmatch.fnmatchcase(ns, p) for p in patterns)


@dataclass
class Prefilter:
    """Literal kinds and namespaces of a constraint's match, for a cheap first rejection."""
    kinds: frozenset | None
    namespaces: frozenset | None

    @classmethod
    def of(cls, c: dict) -> "Prefilter":
        m = (c.get("spec") or {}).get("match") or {}
        kinds: set | None = set()
        for k in m.get("kinds") or [{}]:
            ks = k.get("kinds") or ["*"]
            if "*" in ks:
                kinds = None
                break
            kinds |= set(ks)
        ns = m.get("namespaces")
        lit = frozenset(ns) if ns and not any(ch in n for n in ns for ch in "*?[") else None
        return cls(frozenset(kinds) if kinds is not None else None, lit)

    def rejects(self, rv: Review) -> bool:
        if self.kinds is not None and rv.kind not in self.kinds:
            return True
        return self.namespaces is not None and rv.kind != "Namespace" and rv.namespace not in self.namespaces


def constraint_matches(c: dict, rv: Review) -> bool:
    m = (c.get("spec") or {}).get("match") or {}
    kinds = m.get("kinds")
    if kinds:
        ok = False
        for k in kinds:
            groups = k.get("apiGroups") or ["*"]
            ks = k.get("kinds") or ["*"]
            if ("*" in groups or rv.group in groups) and ("*" in ks or rv.kind in ks):
                ok = True
                break
        if not ok:
            return False
    obj = rv.object or rv.old_object or {}
    md = obj.get("metadata") or {}
    scope = m.get("scope", "*")
    if scope == "Cluster" and rv.namespace:
        return False
    if scope == "Namespaced" and not rv.namespace:
        return False
    ns = rv.namespace or (md.get("name", "") if rv.kind == "Namespace" and rv.group == "" else None)
    if m.get("namespaces"):
        if ns is None or not _ns_match(m["namespaces"], ns):
            return False
    if m.get("excludedNamespaces") and ns is not None and _ns_match(m["excludedNamespaces"], ns):
        return False
    if m.get("name") and not fnmatch.fnmatchcase(rv.name or md.get("name", ""), m["name"]):
        return False
    if m.get("labelSelector") is not None and not LabelSelector.from_object(m["labelSelector"]).matches(md.get("labels") or {}):
        return False
    if m.get("namespaceSelector") is not None:
        if rv.namespace is None and not (rv.kind == "Namespace" and rv.group == ""):
            return False
        labels = rv.namespace_labels if rv.namespace else md.get("labels")
        if not LabelSelector.from_object(m["namespaceSelector"]).matches(labels or {}):
            return False
    return True


# --------------------------------------------------------------------------------------- results

def violations(result: Any) -> list[dict]:
    """The `violation` set as a list of objects. Rego v0 partial sets (`violation[{"msg": m}] { ... }`)
    come back from the engine as an object whose keys are the JSON of each element; v1 sets as a list."""
    if result is None:
        return []
    if isinstance(result, list):
        return [v for v in result if isinstance(v, dict)]
    if isinstance(result, dict):
        out = []
        for k, v in result.items():
            if v is True and isinstance(k, str) and k.startswith("{"):
                try:
                    el = orjson.loads(k)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(el, dict):
                    out.append(el)
        return out
    return []
