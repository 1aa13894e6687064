"""The `ServiceAccount` admission plugin (upstream plugin/pkg/admission/serviceaccount): a Pod without
`serviceAccountName` runs as `default`; its service account must exist (for `default`, which the
controller manager creates in every namespace, it is looked for up to 10 times, as upstream, so a Pod made
right after its namespace is not refused); the `kube-api-access-<5 random>` projected volume (token,
kube-root-ca.crt's ca.crt, the namespace) is added and mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount in every container unless automountServiceAccountToken is
false on the Pod or its service account; the account's imagePullSecrets are copied to a Pod without any."""
from __future__ import annotations

import asyncio
import random

from ..api import errors, serviceaccounts
from . import Attributes, Lister, Plugin

MIRROR = "kubernetes.io/config.mirror"


class ServiceAccount(Plugin):
    name = "ServiceAccount"

    def __init__(self, default_attempts: int = 10):
        self.default_attempts = default_attempts

    async def _lookup(self, lister: Lister, ns: str, name: str) -> dict | None:
        attempts = self.default_attempts if name == "default" else 1
        for i in range(attempts):
            if i:
                await asyncio.sleep(random.uniform(0.1, 0.2))
            sa = lister.get("", "serviceaccounts", ns, name)
            if sa is not None:
                return sa
        return None

    async def admit(self, a: Attributes, lister: Lister) -> None:
        if not a.is_pod_create() or not isinstance(a.object, dict):
            return
        pod = a.object
        if MIRROR in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        name = spec["serviceAccountName"]
        spec["serviceAccount"] = name
        sa = await self._lookup(lister, a.namespace or "", name)
        if sa is None:
            raise errors.forbidden_status("pods", "", a.display_name(),
                                          f'error looking up service account {a.namespace}/{name}: serviceaccount "{name}" not found')
        if serviceaccounts.wants_token(spec, sa):
            serviceaccounts.mount_token(spec)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]]
