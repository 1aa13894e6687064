"""Upstream's OpenAPI definitions (Kubernetes 1.32, shipped by the pinned `kubernetes-validate`
package) and what we derive from them: strict decoding (unknown fields, type errors), quantity
canonicalization, strategic-merge patch strategies and the OpenAPI v3 documents kubectl reads.

Kinds that 1.32 no longer defines (node.k8s.io v1beta1/v1alpha1 RuntimeClass, policy kinds) are added
from `extra_definitions()` so the same machinery covers them.
"""
from __future__ import annotations

import copy
import functools
import os
from typing import Any

import orjson

from . import quantity

K8S_SCHEMA_VERSION = "v1.32.0-local"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_PREFIX = "#/$defs/"


@functools.lru_cache(maxsize=1)
def definitions() -> dict[str, dict]:
    import kubernetes_validate

    path = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        K8S_SCHEMA_VERSION, "_definitions.json")
    with open(path, "rb") as f:
        defs = orjson.loads(f.read())["$defs"]
    defs.update(extra_definitions(defs))
    return defs


def extra_definitions(defs: dict) -> dict:
    """RuntimeClass v1beta1 (same shape as v1) and v1alpha1 (spec-wrapped) schemas."""
    out: dict[str, dict] = {}
    v1 = defs["io.k8s.api.node.v1.RuntimeClass"]
    beta = copy.deepcopy(v1)
    beta["x-kubernetes-group-version-kind"] = [{"group": "node.k8s.io", "kind": "RuntimeClass", "version": "v1beta1"}]
    beta["properties"]["apiVersion"]["enum"] = ["node.k8s.io/v1beta1"]
    out["io.k8s.api.node.v1beta1.RuntimeClass"] = beta
    alpha = copy.deepcopy(v1)
    alpha["x-kubernetes-group-version-kind"] = [{"group": "node.k8s.io", "kind": "RuntimeClass", "version": "v1alpha1"}]
    alpha["properties"]["apiVersion"]["enum"] = ["node.k8s.io/v1alpha1"]
    props = alpha["properties"]
    spec_props = {
        "runtimeHandler": dict(props.pop("handler"), description="runtimeHandler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
        "overhead": props.pop("overhead"),
        "scheduling": props.pop("scheduling"),
    }
    out["io.k8s.api.node.v1alpha1.RuntimeClassSpec"] = {
        "description": "RuntimeClassSpec is a specification of a RuntimeClass.",
        "properties": spec_props, "required": ["runtimeHandler"], "type": ["object", "null"]}
    props["spec"] = {"$ref": _PREFIX + "io.k8s.api.node.v1alpha1.RuntimeClassSpec",
                     "description": "spec represents specification of the RuntimeClass."}
    alpha["required"] = ["spec"]
    out["io.k8s.api.node.v1alpha1.RuntimeClass"] = alpha
    out.update(_policy_definitions())
    for ver in ("v1beta1", "v1alpha1"):
        lst = copy.deepcopy(defs["io.k8s.api.node.v1.RuntimeClassList"])
        lst["properties"]["items"]["items"] = {"$ref": _PREFIX + f"io.k8s.api.node.{ver}.RuntimeClass"}
        lst["x-kubernetes-group-version-kind"] = [{"group": "node.k8s.io", "kind": "RuntimeClassList", "version": ver}]
        out[f"io.k8s.api.node.{ver}.RuntimeClassList"] = lst
    return out


def _crd(kind: str, group: str, version: str, description: str, spec: dict) -> dict:
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"description": description, "type": "object",
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                "metadata": {"$ref": _PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": spec, "status": free},
            "x-kubernetes-group-version-kind": [{"group": group, "kind": kind, "version": version}]}


def _policy_definitions() -> dict:
    """Kyverno and Gatekeeper CRD schemas: the top-level fields typed, the rest kept as given (as their
    CRDs do with x-kubernetes-preserve-unknown-fields) and checked by the kinds' validation."""
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    kyverno_spec = {"type": "object", "description": "Spec declares policy behaviors.", "properties": {
        "admission": {"type": "boolean", "description": "Admission controls if rules are applied during admission."},
        "background": {"type": "boolean", "description": "Background controls if rules are applied to existing resources during a background scan."},
        "validationFailureAction": {"type": "string", "description": "ValidationFailureAction defines if a validation policy rule violation should block the admission review request (Enforce), or allow (Audit) the admission review request and report an error in a policy report."},
        "rules": {"type": "array", "description": "Rules is a list of Rule instances. A Policy contains multiple rules and each rule can validate, mutate, or generate resources.",
                  "items": free},
        "emitWarning": {"type": "boolean"}, "failurePolicy": {"type": "string"}, "webhookTimeoutSeconds": {"type": "integer"},
        "validationFailureActionOverrides": {"type": "array", "items": free}, "applyRules": {"type": "string"},
        "generateExisting": {"type": "boolean"}, "mutateExistingOnPolicyUpdate": {"type": "boolean"},
        "useServerSideApply": {"type": "boolean"}, "schemaValidation": {"type": "boolean"}, "webhookConfiguration": free}}
    ct_spec = {"type": "object", "properties": {
        "crd": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "names": {"type": "object", "properties": {"kind": {"type": "string"}, "shortNames": {"type": "array", "items": {"type": "string"}}}},
            "validation": {"type": "object", "properties": {
                "openAPIV3Schema": free, "legacySchema": {"type": "boolean"}}}}}}},
        "targets": {"type": "array", "items": {"type": "object", "properties": {
            "target": {"type": "string"}, "rego": {"type": "string"}, "libs": {"type": "array", "items": {"type": "string"}},
            "code": {"type": "array", "items": free}}}}}}
    return {
        "io.kyverno.v1.ClusterPolicy": _crd("ClusterPolicy", "kyverno.io", "v1", "ClusterPolicy declares validation, mutation, and generation behaviors for matching resources.", kyverno_spec),
        "io.kyverno.v1.Policy": _crd("Policy", "kyverno.io", "v1", "Policy declares validation, mutation, and generation behaviors for matching resources. See: https://kyverno.io/docs/writing-policies/ for more information.", kyverno_spec),
        "sh.gatekeeper.templates.v1.ConstraintTemplate": _crd("ConstraintTemplate", "templates.gatekeeper.sh", "v1", "ConstraintTemplate is the Schema for the constrainttemplates API", ct_spec),
    }


def add_definition(name: str, schema: dict) -> None:
    """A schema defined at run time (a Gatekeeper constraint kind)."""
    definitions()[name] = schema


def ref_name(schema: dict) -> str | None:
    r = schema.get("$ref")
    return r[len(_PREFIX):] if r else None


def resolve(schema: dict) -> tuple[str | None, dict]:
    name = ref_name(schema)
    if name:
        return name, definitions()[name]
    return None, schema


_TYPES_CACHE: dict[int, tuple[frozenset, dict]] = {}


def _types(schema: dict) -> frozenset:
    got = _TYPES_CACHE.get(id(schema))
    if got is None:
        t = schema.get("type")
        # the schema is kept with its entry, so its id() cannot be reused by another dict
        got = (frozenset() if t is None else frozenset([t] if isinstance(t, str) else t), schema)
        _TYPES_CACHE[id(schema)] = got
    return got[0]


# ---------------------------------------------------------------------------------------------
# Decoding: what Go's JSON decoder into the typed struct would do.

class DecodeError(ValueError):
    pass


_GO_TYPE = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool",
            "object": "object", "array": "array"}


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def decode(obj: dict, def_name: str, kind: str) -> tuple[dict, list[str]]:
    """Normalize `obj` in place as decoding into the Go type would, returning (obj, unknown_paths).

    Drops nulls, canonicalizes quantities, raises DecodeError for type mismatches (with Go's wording).
    """
    unknown: list[str] = []
    root = definitions()[def_name]
    try:
        _fast(obj, root)
    except _Slow:
        # The fast walk only normalizes; for the field paths of an error or of unknown fields, walk again
        # with paths (every normalization is idempotent, so the object comes out the same).
        _walk(obj, root, "", unknown, kind)
    return obj, unknown


class _Slow(Exception):
    pass


_QTY, _INTSTR, _ANY, _OBJ, _ARR, _STR, _INT, _NUM, _BOOL = range(9)
_COMPILED: dict[int, tuple] = {}


def _compile(schema: dict) -> tuple:
    """What _walk decides about `schema`, decided once (the definitions never change once loaded)."""
    got = _COMPILED.get(id(schema))
    if got is not None:
        return got
    name, s = resolve(schema)
    if name == QUANTITY:
        got = (_QTY,)
    elif name == INT_OR_STRING:
        got = (_INTSTR,)
    elif "x-kubernetes-preserve-unknown-fields" in s or (not s.get("properties") and not s.get("additionalProperties") and not s.get("items") and not _types(s)):
        got = (_ANY,)
    else:
        types = _types(s)
        if "object" in types or "properties" in s or "additionalProperties" in s:
            addl = s.get("additionalProperties")
            got = (_OBJ, s.get("properties"), addl if isinstance(addl, dict) else None)
        elif "array" in types:
            got = (_ARR, s.get("items", {}))
        elif "string" in types:
            got = (_STR,)
        elif "integer" in types:
            got = (_INT,)
        elif "number" in types:
            got = (_NUM,)
        elif "boolean" in types:
            got = (_BOOL,)
        else:
            got = (_ANY,)
    got = got + (schema,)  # holds the schema, so its id() is never reused by another dict
    _COMPILED[id(schema)] = got
    return got


_STR_LEAF, _ANY_LEAF, _CALL = range(3)
_DECODERS: dict[int, tuple] = {}


def _entry(schema: dict) -> tuple:
    """How an object's decoder treats one property: strings and free-form values checked inline (most
    leaves), anything else through its own decoder function."""
    got = _DECODERS.get(id(schema))
    if got is None:
        c = _compile(schema)
        t = c[0]
        if t == _STR:
            got = (_STR_LEAF, None, schema)
        elif t == _ANY:
            got = (_ANY_LEAF, None, schema)
        else:
            got = (_CALL, _make_decoder(c), schema)   # holds the schema, so its id() is never reused
        _DECODERS[id(schema)] = got
    return got


def _make_decoder(c: tuple):
    """A function normalizing a value of the compiled schema `c` in place, raising _Slow for anything
    the path-reporting walk must handle (a type error, an unknown field, a bad quantity). Object
    decoders resolve their properties on first use, so recursive schemas are fine."""
    t = c[0]
    if t == _OBJ:
        props, addl = c[1], c[2]
        table: dict[str, tuple] | None = None
        addl_entry: tuple | None = None

        def obj(value):
            nonlocal table, addl_entry
            if type(value) is not dict:
                raise _Slow
            if table is None:
                table = {k: _entry(sub) for k, sub in (props or {}).items()}
                addl_entry = _entry(addl) if addl is not None else None
            nulls = None
            for k, v in value.items():
                if v is None:
                    nulls = (nulls or []) + [k]
                    continue
                e = table.get(k) or addl_entry
                if e is None:
                    if props is not None:
                        raise _Slow
                    continue
                kind = e[0]
                if kind == _STR_LEAF:
                    if type(v) is not str:
                        raise _Slow
                elif kind == _CALL:
                    value[k] = e[1](v)   # an existing key: the dict does not change size
            if nulls:
                for k in nulls:
                    del value[k]
            return value
        return obj
    if t == _ARR:
        items = c[1]

        def arr(value):
            if type(value) is not list:
                raise _Slow
            kind, f, _ = _entry(items)
            if kind == _STR_LEAF:
                for v in value:
                    if type(v) is not str and v is not None:
                        raise _Slow
                return [v for v in value if v is not None] if None in value else value
            if kind == _ANY_LEAF:
                return [v for v in value if v is not None]
            return [f(v) for v in value if v is not None]
        return arr
    if t == _QTY:
        def qty(value):
            try:
                return quantity.canonical(value)
            except quantity.QuantityError:
                raise _Slow
        return qty
    if t == _INT:
        def integer(value):
            if type(value) is int:
                return value
            raise _Slow
        return integer
    if t == _BOOL:
        def boolean(value):
            if type(value) is bool:
                return value
            raise _Slow
        return boolean
    if t == _INTSTR:
        def intstr(value):
            if type(value) in (int, str):
                return value
            raise _Slow
        return intstr
    if t == _NUM:
        def number(value):
            if type(value) in (int, float):
                return value
            raise _Slow
        return number
    return lambda value: value


def _fast(value: Any, schema: dict) -> Any:
    kind, f, _ = _entry(schema)
    if kind == _STR_LEAF:
        if type(value) is not str:
            raise _Slow
        return value
    return value if kind == _ANY_LEAF else f(value)


def _walk(value: Any, schema: dict, path: str, unknown: list[str], kind: str) -> Any:
    name, schema = resolve(schema)
    if name == QUANTITY:
        try:
            return quantity.canonical(value)
        except quantity.QuantityError as e:
            raise DecodeError(str(e))
    if name == INT_OR_STRING:
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type intstr.IntOrString")
        return value
    if "x-kubernetes-preserve-unknown-fields" in schema or (not schema.get("properties") and not schema.get("additionalProperties") and not schema.get("items") and not _types(schema)):
        return value
    types = _types(schema)
    if "object" in types or "properties" in schema or "additionalProperties" in schema:
        if not isinstance(value, dict):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type {_go_struct(name, schema)}")
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for k in list(value.keys()):
            v = value[k]
            sub = f"{path}.{k}" if path else k
            if v is None:
                del value[k]
                continue
            if props is not None and k in props:
                value[k] = _walk(v, props[k], sub, unknown, kind)
            elif addl is not None and isinstance(addl, dict):
                value[k] = _walk(v, addl, sub, unknown, kind)
            elif props is not None:
                unknown.append(sub)
                del value[k]
        return value
    if "array" in types:
        if not isinstance(value, list):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type []{_item_type(schema)}")
        items = schema.get("items", {})
        out = []
        for i, v in enumerate(value):
            if v is None:
                continue
            out.append(_walk(v, items, f"{path}[{i}]", unknown, kind))
        return out
    if "string" in types:
        if not isinstance(value, str):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type string")
        return value
    if "integer" in types:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type int64")
        return int(value)
    if "number" in types:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type float64")
        return value
    if "boolean" in types:
        if not isinstance(value, bool):
            raise DecodeError(f"json: cannot unmarshal {_json_type(value)} into Go struct field {kind}.{path} of type bool")
        return value
    return value


def _go_struct(name: str | None, schema: dict) -> str:
    if name:
        parts = name.split(".")
        return f"{parts[-2]}.{parts[-1]}"
    if "additionalProperties" in schema:
        return "map[string]" + _item_type({"items": schema["additionalProperties"]})
    return "object"


def _item_type(schema: dict) -> str:
    name, s = resolve(schema.get("items", {}))
    if name:
        return _go_struct(name, s)
    t = _types(s) - {"null"}
    return _GO_TYPE.get(next(iter(t)), "interface {}") if t else "interface {}"


# ---------------------------------------------------------------------------------------------
# Strategic merge patch metadata.

def child_schema(schema: dict | None, key: str) -> dict | None:
    """Schema of field `key` of an object schema (or of a map value)."""
    if schema is None:
        return None
    _, s = resolve(schema)
    props = s.get("properties")
    if props and key in props:
        return props[key]
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        return addl
    return None


def item_schema(schema: dict | None) -> dict | None:
    if schema is None:
        return None
    _, s = resolve(schema)
    return s.get("items")


def patch_meta(schema: dict | None) -> tuple[str, str | None]:
    """(strategy, mergeKey) of a list field schema; strategy '' means replace (atomic)."""
    if schema is None:
        return "", None
    strategy = schema.get("x-kubernetes-patch-strategy", "")
    return strategy, schema.get("x-kubernetes-patch-merge-key")


# ---------------------------------------------------------------------------------------------
# OpenAPI v3 documents.

def _to_v3(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "$ref":
                out[k] = "#/components/schemas/" + v[len(_PREFIX):]
            elif k == "type" and isinstance(v, list):
                real = [t for t in v if t != "null"]
                out[k] = real[0] if real else "object"
            elif k == "enum" and schema.get("description", "").startswith(("APIVersion defines", "Kind is a string")):
                continue
            elif k == "oneOf" and v and all("type" in x for x in v):
                continue
            else:
                out[k] = _to_v3(v)
        if "oneOf" in schema and all("type" in x for x in schema["oneOf"]):
            out.setdefault("type", "string")
            if any("integer" in str(x.get("type")) for x in schema["oneOf"]):
                out["x-kubernetes-int-or-string"] = True
                out.pop("type", None)
        return out
    if isinstance(schema, list):
        return [_to_v3(x) for x in schema]
    return schema


def closure(roots: list[str]) -> dict[str, dict]:
    defs = definitions()
    seen: dict[str, dict] = {}
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen or n not in defs:
            continue
        seen[n] = defs[n]
        _collect_refs(defs[n], stack)
    return seen


def _collect_refs(s: Any, acc: list[str]) -> None:
    if isinstance(s, dict):
        r = s.get("$ref")
        if r:
            acc.append(r[len(_PREFIX):])
        for v in s.values():
            _collect_refs(v, acc)
    elif isinstance(s, list):
        for v in s:
            _collect_refs(v, acc)


@functools.lru_cache(maxsize=1)
def upstream_details() -> dict:
    """What kube-apiserver's v3 documents carry beyond the definitions: enums (with their "Possible enum values"
    descriptions) and the oneOf shapes of Quantity and IntOrString (tools/openapi_enums.py made the file)."""
    with open(os.path.join(os.path.dirname(__file__), "openapi_upstream.json"), "rb") as f:
        return orjson.loads(f.read())


def openapi_v3_schemas(roots: list[str], v3_details: bool = True) -> dict[str, dict]:
    """The schemas roots need, in OpenAPI v3 form; with v3_details, upstream's enums and the oneOf types that
    `kubectl explain` names (`podFixed <map[string]Quantity>`, `enum: NoExecute, NoSchedule, PreferNoSchedule`)."""
    out = {n: _to_v3(s) for n, s in closure(roots).items()}
    if not v3_details:
        return out
    extra = upstream_details()
    for n, s in extra["schemas"].items():
        if n in out:
            out[n] = copy.deepcopy(s)
    for n, props in extra["enums"].items():
        for prop, e in props.items():
            ps = ((out.get(n) or {}).get("properties") or {}).get(prop)
            if ps is not None:
                ps["enum"] = list(e["enum"])
                if e["possible"] and e["possible"] not in ps.get("description", ""):
                    ps["description"] = ps.get("description", "") + e["possible"]
    return out
