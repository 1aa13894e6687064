"""Validators core/v1 types share (tolerations, resource lists, node selectors), as upstream words them."""
from __future__ import annotations

import functools

from . import names, quantity
from .errors import FieldError, GoRepr, duplicate, go_quote, invalid, not_supported

TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
STANDARD_RESOURCES = STANDARD_CONTAINER_RESOURCES | {
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "services.nodeports", "services.loadbalancers", "count"}
INTEGER_RESOURCES = {"pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                     "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"}


def toleration_repr(t: dict) -> GoRepr:
    secs = t.get("tolerationSeconds")
    ts = "(*int64)(nil)" if secs is None else "(*int64)(0xc000010000)"
    return GoRepr('core.Toleration{Key:%s, Operator:%s, Value:%s, Effect:%s, TolerationSeconds:%s}' % (
        go_quote(t.get("key", "")), go_quote(t.get("operator", "")), go_quote(t.get("value", "")),
        go_quote(t.get("effect", "")), ts))


def validate_tolerations(tols: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tols):
        p = f"{path}[{i}]"
        key, op, val, eff = t.get("key", ""), t.get("operator", ""), t.get("value", ""), t.get("effect", "")
        if key:
            errs += [invalid(f"{p}.key", key, m) for m in names.qualified_name(key)]
        if not key and op != "Exists":
            errs.append(invalid(f"{p}.operator", op,
                                'operator must be Exists when `key` is empty, which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and eff != "NoExecute":
            errs.append(invalid(f"{p}.effect", eff, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op in ("Equal", ""):
            lv = names.label_value(val)
            if lv:
                errs.append(invalid(f"{p}.operator", val, ";".join(lv)))
        elif op == "Exists":
            if val:
                errs.append(invalid(f"{p}.operator", val, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", op, ["Equal", "Exists"]))
        if eff and eff not in TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", eff, TAINT_EFFECTS))
    return errs


def duplicate_tolerations(tols: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set = set()
    for i, t in enumerate(tols):
        ident = (t.get("key", ""), t.get("operator", ""), t.get("value", ""), t.get("effect", ""))
        if ident in seen:
            errs.append(duplicate(f"{path}[{i}]", toleration_repr(t)))
        seen.add(ident)
    return errs


def _is_native(name: str) -> bool:
    prefix = name.split("/", 1)[0]
    return "/" not in name or prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io")


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not names.qualified_name("requests." + name)


def validate_resource_name(name: str, path: str, container: bool) -> list[FieldError]:
    return [invalid(path, GoRepr(name), m) for m in _resource_name_problems(name, container)]


@functools.lru_cache(maxsize=4096)
def _resource_name_problems(name: str, container: bool) -> tuple[str, ...]:
    errs = list(names.qualified_name(name))
    if "/" not in name:
        # validateResourceName stops at a name that is not a qualified name; the container check still runs
        if not errs and name not in STANDARD_RESOURCES and not name.startswith("hugepages-"):
            errs.append("must be a standard resource type or fully qualified")
        if container and name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.append("must be a standard resource for containers")
    elif container and not _is_native(name) and not _is_extended(name):
        errs.append("doesn't follow extended resource name standard")
    return tuple(errs)


def validate_quantity_value(name: str, value, path: str) -> list[FieldError]:
    probs = _quantity_problems(name, value) if type(value) in (str, int, float) else _quantity_problems.__wrapped__(name, value)
    return [invalid(path, GoRepr(value) if go else value, m) for go, m in probs]


@functools.lru_cache(maxsize=16384)
def _quantity_problems(name: str, value) -> tuple[tuple[bool, str], ...]:
    """(show the value Go-quoted, message) for what is wrong with one quantity of resource `name`."""
    try:
        q = quantity.parse(value)
    except quantity.QuantityError as e:
        return ((False, str(e)),)
    out = []
    if q.value < 0:
        out.append((False, "must be greater than or equal to 0"))
    if (name in INTEGER_RESOURCES or ("/" in name and _is_extended(name))) and q.milli() % 1000 != 0:
        out.append((True, "must be an integer"))
    return tuple(out)


def validate_resource_list(rl: dict, path: str, container: bool = True) -> list[FieldError]:
    errs: list[FieldError] = []
    for name, value in rl.items():
        p = f"{path}[{name}]"
        errs += validate_resource_name(name, p, container)
        errs += validate_quantity_value(name, value, p)
    return errs


def validate_node_selector_map(sel: dict, path: str) -> list[FieldError]:
    return names.validate_labels(sel, path)
