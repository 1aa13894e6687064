"""The `LimitRanger` admission plugin (upstream plugin/pkg/admission/limitranger).

Mutating (Pod CREATE): Container-type `default` limits and `defaultRequest` requests fill what the
containers leave unset, recorded in the `kubernetes.io/limit-ranger` annotation. Validating (Pod CREATE
and UPDATE): Container and Pod `min`, `max` and `maxLimitRequestRatio`, with upstream's messages. Pod
totals are the containers' sums and exclude overhead, as upstream.
"""
from __future__ import annotations

from ..api import errors, quantity
from ..api.podresources import pod_limits, pod_requests
from . import Attributes, Lister, Plugin

ANNOTATION = "kubernetes.io/limit-ranger"


def _milli(v: str) -> int:
    return quantity.parse(v).milli()


def _min(kind: str, r: str, enforced: str, req: dict, lim: dict) -> str | None:
    if r not in req:
        return f"minimum {r} usage per {kind} is {enforced}.  No request is specified"
    if _milli(req[r]) < _milli(enforced):
        return f"minimum {r} usage per {kind} is {enforced}, but request is {req[r]}"
    if r in lim and _milli(lim[r]) < _milli(enforced):
        return f"minimum {r} usage per {kind} is {enforced}, but limit is {lim[r]}"
    return None


def _max(kind: str, r: str, enforced: str, req: dict, lim: dict) -> str | None:
    if r not in lim:
        return f"maximum {r} usage per {kind} is {enforced}.  No limit is specified"
    if _milli(lim[r]) > _milli(enforced):
        return f"maximum {r} usage per {kind} is {enforced}, but limit is {lim[r]}"
    if r in req and _milli(req[r]) > _milli(enforced):
        return f"maximum {r} usage per {kind} is {enforced}, but request is {req[r]}"
    return None


def _ratio(kind: str, r: str, enforced: str, req: dict, lim: dict) -> str | None:
    rq, lm = (_milli(req[r]) if r in req else 0), (_milli(lim[r]) if r in lim else 0)
    if not rq:
        return f"{r} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
    if not lm:
        return f"{r} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    observed = lm / rq
    if observed * 1000 > _milli(enforced):
        return f"{r} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:f}"
    return None


def _check(item: dict, kind: str, req: dict, lim: dict) -> list[str]:
    out = []
    for field, fn in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for r, enforced in (item.get(field) or {}).items():
            msg = fn(kind, r, enforced, req, lim)
            if msg:
                out.append(msg)
    return out


def _pod_totals(spec: dict) -> tuple[dict, dict]:
    """Pod requests/limits as LimitRanger counts them: without overhead (upstream)."""
    pod = {"spec": spec}
    return ({r: q.canonical() for r, q in pod_requests(pod, overhead=False).items()},
            {r: q.canonical() for r, q in pod_limits(pod, overhead=False).items()})


class LimitRanger(Plugin):
    name = "LimitRanger"

    def _ranges(self, a: Attributes, lister: Lister) -> list[dict]:
        if a.group != "" or a.resource != "pods" or a.subresource or not a.namespace:
            return []
        return lister.list("", "limitranges", a.namespace)

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if a.operation != "CREATE":
            return
        ranges = self._ranges(a, lister)
        if not ranges:
            return
        spec = a.object.setdefault("spec", {})
        notes: list[str] = []
        for lr in ranges:
            for item in (lr.get("spec") or {}).get("limits") or []:
                if item.get("type") != "Container":
                    continue
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                    res = c.setdefault("resources", {})
                    set_req, set_lim = [], []
                    for r, v in (item.get("defaultRequest") or {}).items():
                        if r not in (res.get("requests") or {}):
                            res.setdefault("requests", {})[r] = v
                            set_req.append(r)
                    for r, v in (item.get("default") or {}).items():
                        if r not in (res.get("limits") or {}):
                            res.setdefault("limits", {})[r] = v
                            set_lim.append(r)
                    if set_req:
                        notes.append(f"{', '.join(set_req)} request for container {c.get('name', '')}")
                    if set_lim:
                        notes.append(f"{', '.join(set_lim)} limit for container {c.get('name', '')}")
        if notes:
            a.object.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)

    async def validate(self, a: Attributes, lister: Lister) -> None:
        if a.operation not in ("CREATE", "UPDATE"):
            return
        ranges = self._ranges(a, lister)
        if not ranges:
            return
        spec = a.object.get("spec") or {}
        msgs: list[str] = []
        for lr in ranges:
            for item in (lr.get("spec") or {}).get("limits") or []:
                if item.get("type") == "Container":
                    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                        res = c.get("resources") or {}
                        msgs += _check(item, "Container", res.get("requests") or {}, res.get("limits") or {})
                elif item.get("type") == "Pod":
                    req, lim = _pod_totals(spec)
                    msgs += _check(item, "Pod", req, lim)
        if msgs:
            uniq = list(dict.fromkeys(msgs))
            text = uniq[0] if len(uniq) == 1 else "[" + ", ".join(uniq) + "]"
            raise errors.forbidden_status("pods", "", a.display_name(), text)
