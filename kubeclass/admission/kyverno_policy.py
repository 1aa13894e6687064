"""Kyverno policies (kyverno.io/v1 ClusterPolicy and Policy) enforced in the chain, where Kyverno's
validating webhook would sit. Enforce failures deny as Kyverno's webhook does (HTTP 400, no reason, so
kubectl prints `Error from server: ... admission webhook "validate.kyverno.svc-fail" denied the request`);
Audit failures admit with a `Warning:` and a `PolicyViolation` event on the object."""
from __future__ import annotations

import yaml

from ..api import kyverno
from ..api.errors import StatusError
from . import Attributes, Lister, Plugin

WEBHOOK = "validate.kyverno.svc-fail"
COMPONENT = "kyverno-admission"


class KyvernoPolicies(Plugin):
    name = "KyvernoPolicies"

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[str, kyverno.Policy]] = {}   # uid -> (resourceVersion, policy)

    def _policy(self, obj: dict) -> kyverno.Policy:
        md = obj["metadata"]
        got = self._compiled.get(md.get("uid", ""))
        if got is None or got[0] != md.get("resourceVersion"):
            got = (md.get("resourceVersion"), kyverno.compile_policy(obj))
            self._compiled[md.get("uid", "")] = got
        return got[1]

    async def validate(self, a: Attributes, lister: Lister) -> None:
        if a.operation not in ("CREATE", "UPDATE") or a.object is None:
            return
        policies = lister.list("kyverno.io", "clusterpolicies")
        if a.namespace:
            policies = policies + lister.list("kyverno.io", "policies", a.namespace)
        if not policies:
            return
        if len(self._compiled) > 4 * len(policies) + 64:
            self._compiled.clear()
        req = self._request(a, lister)
        blocked: dict[str, dict[str, str]] = {}
        audits: list[tuple[str, kyverno.Outcome]] = []
        for obj in policies:
            if (obj.get("spec") or {}).get("admission") is False:
                continue
            pol = self._policy(obj)
            for out in kyverno.run(pol, req):
                if out.status != "fail":
                    continue
                if out.enforce:
                    blocked.setdefault(pol.name, {})[out.rule] = out.message
                else:
                    audits.append((pol.name, out))
        if blocked:
            resource = "/".join(x for x in (req.kind, req.namespace, req.name or a.display_name()) if x)
            listing = yaml.safe_dump(blocked, default_flow_style=False, width=80, sort_keys=True)
            raise StatusError(400, "", f'admission webhook "{WEBHOOK}" denied the request: \n\nresource {resource} '
                                       f"was blocked due to the following policies \n\n{listing}")
        for pol_name, out in audits:
            a.warnings.append(f"policy {pol_name}.{out.rule}: {out.message}")
            if not a.dry_run:
                a.events.append({"reason": "PolicyViolation", "type": "Warning", "component": COMPONENT,
                                 "message": f"policy {pol_name}/{out.rule} fail: {out.message}"})

    @staticmethod
    def _request(a: Attributes, lister: Lister) -> kyverno.Request:
        obj = a.object or {}
        group_version = obj.get("apiVersion", "")
        version = group_version.rsplit("/", 1)[-1]
        labels = {}
        if a.namespace:
            ns = lister.get("", "namespaces", None, a.namespace)
            labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
        user = a.user
        return kyverno.Request(a.operation, a.group, version, obj.get("kind", ""), a.subresource, a.namespace,
                               a.name or obj.get("metadata", {}).get("name", ""), a.object, a.old_object,
                               getattr(user, "name", "") or "", list(getattr(user, "groups", ()) or ()), labels)
