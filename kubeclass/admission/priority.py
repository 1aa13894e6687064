"""The `Priority` admission plugin (upstream plugin/pkg/admission/priority): a Pod's
`priorityClassName` resolves to `spec.priority` (and `preemptionPolicy`) from its PriorityClass, or from
the global default class, else 0; the built-in system classes always exist. Messages as upstream."""
from __future__ import annotations

from ..api import errors
from . import Attributes, Lister, Plugin

SYSTEM = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}


class Priority(Plugin):
    name = "Priority"

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if not a.is_pod_create():
            return
        spec = a.object.setdefault("spec", {})
        name = spec.get("priorityClassName")
        policy = None
        if name:
            if name in SYSTEM:
                value = SYSTEM[name]
            else:
                pc = lister.get("scheduling.k8s.io", "priorityclasses", None, name)
                if pc is None:
                    raise errors.forbidden_status("pods", "", a.display_name(), f"no PriorityClass with name {name} was found")
                value, policy = int(pc.get("value", 0)), pc.get("preemptionPolicy")
        else:
            default = next((pc for pc in lister.list("scheduling.k8s.io", "priorityclasses") if pc.get("globalDefault")), None)
            value = int(default.get("value", 0)) if default else 0
            policy = default.get("preemptionPolicy") if default else None
            if default:
                spec["priorityClassName"] = default["metadata"]["name"]
        if spec.get("priority") is not None and spec["priority"] != value:
            raise errors.forbidden_status("pods", "", a.display_name(),
                                          f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
                                          f"priority admission controller computed {value} from the given PriorityClass name")
        spec["priority"] = value
        if policy and not spec.get("preemptionPolicy"):
            spec["preemptionPolicy"] = policy
        elif not spec.get("preemptionPolicy"):
            spec["preemptionPolicy"] = "PreemptLowerPriority"
