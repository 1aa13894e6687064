"""The admission chain, in upstream's order: every mutating plugin, then object validation, then every
validating plugin. Plugins see the request (`Attributes`) and read other objects through a `Lister`
(the server's cache, as upstream plugins read informers); they never touch the store or the server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Lister(Protocol):
    def get(self, group: str, resource: str, namespace: str | None, name: str) -> dict | None: ...
    def list(self, group: str, resource: str, namespace: str | None = None) -> list[dict]: ...


@dataclass
class Attributes:
    operation: str          # CREATE | UPDATE | DELETE
    group: str
    resource: str           # plural, e.g. "pods"
    subresource: str | None
    namespace: str | None
    name: str
    object: dict | None
    old_object: dict | None = None
    user: Any = None
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    # events about the object, recorded once it is stored: dicts of reason, message, type, component
    events: list[dict] = field(default_factory=list)
    # coroutine functions run once the object is stored, before the serialization locks are released
    after_store: list = field(default_factory=list)

    def is_pod_create(self) -> bool:
        return self.operation == "CREATE" and self.group == "" and self.resource == "pods" and not self.subresource

    def display_name(self) -> str:
        """The name upstream's NewForbidden shows: name, else generateName, else Unknown."""
        md = (self.object or {}).get("metadata", {})
        return md.get("name") or md.get("generateName") or "Unknown"


class Plugin:
    name = ""

    async def admit(self, a: Attributes, lister: Lister) -> None:
        """Mutating phase."""

    async def validate(self, a: Attributes, lister: Lister) -> None:
        """Validating phase."""


    def serialization_key(self, a: Attributes, lister: Lister) -> str | None:
        """Requests with the same key are admitted and stored one at a time (quota accounting)."""
        return None


def default_plugins(writer=None, toleration_seconds: tuple[int, int] = (300, 300)) -> list[Plugin]:
    from .defaulttolerationseconds import DefaultTolerationSeconds
    from .gatekeeper import GatekeeperConstraints
    from .kyverno_policy import KyvernoPolicies
    from .limitranger import LimitRanger
    from .namespace_default_runtimeclass import NamespaceDefaultRuntimeClass
    from .podsecurity import PodSecurity
    from .priority import Priority
    from .resourcequota import ResourceQuota
    from .runtimeclass import RuntimeClass
    from .serviceaccount import ServiceAccount
    # upstream order: LimitRanger, ServiceAccount, Priority, DefaultTolerationSeconds ... RuntimeClass ... PodSecurity ...
    # (validating webhooks: Kyverno, Gatekeeper) ... ResourceQuota (last)
    return [LimitRanger(), ServiceAccount(), Priority(), DefaultTolerationSeconds(*toleration_seconds), NamespaceDefaultRuntimeClass(),
            RuntimeClass(), PodSecurity(), KyvernoPolicies(), GatekeeperConstraints(), ResourceQuota(writer)]


class Chain:
    def __init__(self, plugins: list[Plugin] | None = None, writer=None, toleration_seconds: tuple[int, int] = (300, 300)):
        self.plugins = default_plugins(writer, toleration_seconds) if plugins is None else plugins

    def serialization_keys(self, a: Attributes, lister: Lister) -> list[str]:
        return sorted({k for p in self.plugins if (k := p.serialization_key(a, lister))})

    async def admit(self, a: Attributes, lister: Lister) -> None:
        for p in self.plugins:
            await p.admit(a, lister)

    async def validate(self, a: Attributes, lister: Lister) -> None:
        for p in self.plugins:
            await p.validate(a, lister)
