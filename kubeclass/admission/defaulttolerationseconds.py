"""The `DefaultTolerationSeconds` admission plugin (upstream plugin/pkg/admission/defaulttolerationseconds):
every Pod that does not already tolerate them gets
`node.kubernetes.io/not-ready:NoExecute` and `node.kubernetes.io/unreachable:NoExecute` for 300 s
(kube-apiserver's --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds), so that
its Pods are evicted five minutes after their node stops reporting, not at once. It runs before RuntimeClass,
as upstream orders them, so a class's tolerations are merged with these present."""
from __future__ import annotations

from . import Attributes, Lister, Plugin

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def _tolerates(tolerations: list, key: str) -> bool:
    return any(isinstance(t, dict) and t.get("key", "") in (key, "") and t.get("effect", "") in ("NoExecute", "")
               for t in tolerations)


class DefaultTolerationSeconds(Plugin):
    name = "DefaultTolerationSeconds"

    def __init__(self, not_ready_seconds: int = 300, unreachable_seconds: int = 300):
        self.seconds = {NOT_READY: not_ready_seconds, UNREACHABLE: unreachable_seconds}

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if a.group != "" or a.resource != "pods" or a.subresource or a.operation not in ("CREATE", "UPDATE") or not a.object:
            return
        spec = a.object.setdefault("spec", {})
        tols = spec.get("tolerations") or []
        if not isinstance(tols, list):
            return
        added = [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}
                 for key, secs in self.seconds.items() if not _tolerates(tols, key)]
        if added:
            spec["tolerations"] = tols + added
