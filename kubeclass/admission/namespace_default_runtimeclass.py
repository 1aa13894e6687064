"""Namespace default RuntimeClass (beyond upstream; asked for in argo-workflows#14820 and
knative/serving#12729): a namespace annotated `runtimeclass.kubeclass.io/default: <class>` gives that
class to Pods created in it without a `runtimeClassName`. Runs before the RuntimeClass plugin, so the
class's overhead and scheduling apply as if the user had named it."""
from __future__ import annotations

from . import Attributes, Lister, Plugin

ANNOTATION = "runtimeclass.kubeclass.io/default"


class NamespaceDefaultRuntimeClass(Plugin):
    name = "NamespaceDefaultRuntimeClass"

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if not a.is_pod_create() or not a.namespace:
            return
        spec = a.object.setdefault("spec", {})
        if spec.get("runtimeClassName") is not None:
            return
        ns = lister.get("", "namespaces", None, a.namespace)
        default = ((ns or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
        if default:
            spec["runtimeClassName"] = default
