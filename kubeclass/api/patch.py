"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902, via `jsonpatch`) and strategic merge
patch driven by upstream's `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` schema tags."""
from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson

from . import schema as sch


COPY_LIMIT = 3 * 1024 * 1024   # upstream: the maximum request size


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: dict, ops: Any, copy_limit: int = COPY_LIMIT) -> dict:
    """RFC 6902, one operation at a time: what `copy` operations add is counted and refused beyond copy_limit
    bytes, as upstream's AccumulatedCopySizeLimit does (22 copies of a doubling value would need gigabytes)."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    ops = copy.deepcopy(ops)   # `add` inserts its value itself: later operations must not change the patch (retries reuse it)
    copied = 0
    try:
        for op in ops:
            if isinstance(op, dict) and op.get("op") == "copy" and isinstance(op.get("from"), str):
                value = jsonpatch.JsonPointer(op["from"]).resolve(doc)
                copied += len(orjson.dumps(value))
                if copied > copy_limit:
                    raise PatchError(f"Unable to complete the copy, the accumulated size increase of copy is {copied}, "
                                     f"exceeding the limit {copy_limit}")
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, AttributeError) as e:
        raise PatchError(str(e))
    except orjson.JSONEncodeError as e:
        raise PatchError(f"copy: {e}")
    return doc


def strategic_merge_patch(target: dict, patch: dict, def_name: str | None) -> dict:
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch body must be a JSON object")
    root = {"$ref": "#/$defs/" + def_name} if def_name else None
    return _smp_map(copy.deepcopy(target), patch, root)


def _strip(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _smp_map(orig: dict, patch: dict, schema: dict | None) -> dict | None:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"] or [])
        orig = {k: v for k, v in orig.items() if k in keep}
    orders: dict[str, list] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v or []
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(orig.get(f), list):
                orig[f] = [x for x in orig[f] if x not in (v or [])]
            continue
        sub = sch.child_schema(schema, k)
        if v is None:
            orig.pop(k, None)
        elif isinstance(v, dict):
            cur = orig.get(k)
            merged = _smp_map(cur if isinstance(cur, dict) else {}, v, sub)
            if merged is None:
                orig.pop(k, None)
            else:
                orig[k] = merged
        elif isinstance(v, list):
            orig[k] = _smp_list(orig.get(k) if isinstance(orig.get(k), list) else [], v, sub)
        else:
            orig[k] = v
    for f, order in orders.items():
        if isinstance(orig.get(f), list):
            orig[f] = _apply_order(orig[f], order, sch.patch_meta(sch.child_schema(schema, f))[1])
    return orig


def _smp_list(orig: list, patch: list, schema: dict | None) -> list:
    strategy, key = sch.patch_meta(schema)
    if "merge" not in strategy.split(","):
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return _strip([x for x in patch if not (isinstance(x, dict) and x.get("$patch"))])
        return _strip(patch)
    if not key:  # list of primitives: union
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    item = sch.item_schema(schema)
    out = list(orig)
    for p in patch:
        if not isinstance(p, dict):
            continue
        if p.get("$patch") == "replace":
            return _strip([x for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")])
        kv = p.get(key)
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == kv), None)
        if p.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, p, item))
        else:
            out[idx] = _smp_map(out[idx], p, item)
    return [x for x in out if x is not None]


def _apply_order(items: list, order: list, key: str | None) -> list:
    if not key:
        ranked = {v: i for i, v in enumerate(order)}
        return sorted(items, key=lambda x: ranked.get(x, len(ranked)))
    ranked = {o.get(key): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda x: ranked.get(x.get(key) if isinstance(x, dict) else None, len(ranked)))
