"""The `RuntimeClass` admission plugin (upstream plugin/pkg/admission/runtimeclass), Pod CREATE only.

Mutating: copy `overhead.podFixed` into `spec.overhead` (a different preset overhead is refused), merge
`scheduling.nodeSelector` (a conflicting key is refused) and merge tolerations by upstream's superset
rule. Validating: look the class up again and re-check the overhead.

Beyond upstream: when the requested name is not a class but is some class's *handler*, the refusal
says which class to use (users trip on this: microk8s#2359).
"""
from __future__ import annotations

from ..api import errors, quantity, tolerations
from . import Attributes, Lister, Plugin


def _forbidden(a: Attributes, msg: str) -> errors.StatusError:
    return errors.forbidden_status("pods", "", a.display_name(), msg)


def _same_resources(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    try:
        return all(quantity.parse(a[k]) == quantity.parse(b[k]) for k in a)
    except quantity.QuantityError:
        return False


class RuntimeClass(Plugin):
    name = "RuntimeClass"

    def _lookup(self, a: Attributes, lister: Lister) -> dict | None:
        name = ((a.object or {}).get("spec") or {}).get("runtimeClassName")
        if name is None:
            return None
        rc = lister.get("node.k8s.io", "runtimeclasses", None, name)
        if rc is None:
            msg = f'pod rejected: RuntimeClass "{name}" not found'
            hint = [c["metadata"]["name"] for c in lister.list("node.k8s.io", "runtimeclasses") if c.get("handler") == name]
            if hint:
                msg += f' (RuntimeClass "{hint[0]}" has handler "{name}"; runtimeClassName takes the class name)'
            raise _forbidden(a, msg)
        return rc

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if not a.is_pod_create():
            return
        rc = self._lookup(a, lister)
        if rc is None:
            return
        spec = a.object.setdefault("spec", {})
        if rc.get("overhead") is not None:
            fixed = rc["overhead"].get("podFixed")
            if spec.get("overhead") and not _same_resources(spec["overhead"], fixed or {}):
                raise _forbidden(a, "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")
            if fixed is None:
                spec.pop("overhead", None)
            else:
                spec["overhead"] = dict(fixed)
        sched = rc.get("scheduling")
        if sched is None:
            return
        rc_sel = sched.get("nodeSelector")
        if spec.get("nodeSelector") is None:
            if rc_sel is not None:
                spec["nodeSelector"] = dict(rc_sel)
        else:
            sel = spec["nodeSelector"]
            for k, v in (rc_sel or {}).items():
                if k in sel and sel[k] != v:
                    raise _forbidden(a, f"conflict: runtimeClass.scheduling.nodeSelector[{k}] = {v}; pod.spec.nodeSelector[{k}] = {sel[k]}")
                sel[k] = v
        merged = tolerations.merge(spec.get("tolerations") or [], sched.get("tolerations") or [])
        if merged:
            spec["tolerations"] = merged
        else:
            spec.pop("tolerations", None)

    async def validate(self, a: Attributes, lister: Lister) -> None:
        if not a.is_pod_create():
            return
        rc = self._lookup(a, lister)
        overhead = ((a.object or {}).get("spec") or {}).get("overhead")
        if not overhead:
            return
        if rc is not None and rc.get("overhead") is not None:
            if not _same_resources(overhead, rc["overhead"].get("podFixed") or {}):
                raise _forbidden(a, "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")
            return
        raise _forbidden(a, "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")
