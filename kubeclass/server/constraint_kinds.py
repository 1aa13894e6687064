"""Gatekeeper's CRD management, inside the server: every stored ConstraintTemplate serves its constraint
kind under constraints.gatekeeper.sh/v1beta1 (discovery, OpenAPI, REST), from the moment the template
is stored until it is deleted, when its constraints go with it (as deleting a CRD deletes its objects)."""
from __future__ import annotations

import logging

from ..api import gatekeeper, registry, schema

log = logging.getLogger("kubeclass.constraints")


class ConstraintKinds:
    def __init__(self, store):
        self.store = store
        self._served: dict[str, str] = {}   # plural -> template resourceVersion it was built from

    async def sync(self) -> None:
        templates = registry.STORAGE[("templates.gatekeeper.sh", "constrainttemplates")]
        want: dict[str, dict] = {}
        for _, e in self.store.list(templates.key_prefix(None))[0]:
            t = e.obj
            kind = gatekeeper.template_kind(t)
            if kind and not t["metadata"].get("deletionTimestamp"):
                want[kind.lower()] = t
        for plural, t in want.items():
            rv = t["metadata"].get("resourceVersion", "")
            if self._served.get(plural) == rv:
                continue
            kind = gatekeeper.template_kind(t)
            schema.add_definition(gatekeeper.definition_name(kind), gatekeeper.constraint_definition(t))
            registry.add_resource(registry.constraint_resource(t))
            self._served[plural] = rv
            log.info("serving constraint kind %s (template %s)", kind, t["metadata"]["name"])
        for plural in [p for p in self._served if p not in want]:
            res = registry.STORAGE.get((gatekeeper.CONSTRAINT_GROUP, plural))
            if res is not None:
                for key, _ in self.store.list(res.key_prefix(None))[0]:
                    try:
                        await self.store.delete(key)
                    except Exception:  # noqa: BLE001 - already gone
                        pass
            registry.remove_resource(gatekeeper.CONSTRAINT_GROUP, plural)
            del self._served[plural]
            log.info("constraint kind %s removed with its template", plural)
