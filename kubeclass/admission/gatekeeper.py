"""OPA Gatekeeper constraints enforced in the chain, where Gatekeeper's validating webhook would sit.

Each ConstraintTemplate's Rego (v0 syntax as Gatekeeper writes it, or v1) is compiled once per template
version into a bundle by rego-cpp (the `regopy` package: a maintained Rego engine, not ours) and queried
for `data.<package>.violation` with `input.review` (the AdmissionRequest) and `input.parameters` (the
constraint's). Violations deny with `[<constraint>] <msg>` (403, as Gatekeeper's webhook answers),
`warn` constraints return `Warning:` headers, `dryrun` ones only count. Template writes are checked here
too: Rego that does not compile is refused, as Gatekeeper's webhook refuses it.
"""
from __future__ import annotations

import logging

import orjson
import regopy

from ..api import gatekeeper
from ..api.errors import StatusError
from . import Attributes, Lister, Plugin

WEBHOOK = "validation.gatekeeper.sh"
log = logging.getLogger("kubeclass.gatekeeper")


class RegoError(Exception):
    pass


class Program:
    """One template's compiled Rego: a bundle plus a runner interpreter reused across queries."""

    def __init__(self, rego: str, libs: list[str]):
        self.package = gatekeeper.package_of(rego)
        if not self.package:
            raise RegoError("the Rego has no package declaration")
        build = regopy.Interpreter()
        try:
            build.add_module("template.rego", rego)
            for i, lib in enumerate(libs):
                build.add_module(f"lib{i}.rego", lib)
            self.bundle = build.build(f"violations = data.{self.package}.violation", [])
        except regopy.RegoError as e:
            raise RegoError(_clean(str(e))) from None
        self.runner = regopy.Interpreter()

    def violations(self, input_: dict) -> list[dict]:
        self.runner.set_input(regopy.Input(input_))
        try:
            out = self.runner.query_bundle(self.bundle)
        except regopy.RegoError as e:
            raise RegoError(_clean(str(e))) from None
        if not out.ok():
            raise RegoError(_clean(str(out)))
        doc = orjson.loads(str(out))
        results = doc.get("result") if isinstance(doc, dict) and "result" in doc else doc
        if isinstance(results, list):   # several results: one per solution
            found: list[dict] = []
            for r in results:
                found += gatekeeper.violations((r.get("bindings") or {}).get("violations"))
            return found
        return gatekeeper.violations((results.get("bindings") or {}).get("violations"))


def _clean(msg: str) -> str:
    lines = [ln.rstrip() for ln in msg.splitlines() if ln.strip()]
    return " ".join(lines)[:2000] or "Rego error"


def compile_template(t: dict) -> Program:
    rego, libs = gatekeeper.rego_sources(t)
    return Program(rego, libs)


class GatekeeperConstraints(Plugin):
    name = "GatekeeperConstraints"

    def __init__(self) -> None:
        self._programs: dict[str, tuple[str, Program | None, str]] = {}   # template name -> (rv, program, error)

    def _program(self, t: dict) -> tuple[Program | None, str]:
        md = t["metadata"]
        got = self._programs.get(md["name"])
        if got is None or got[0] != md.get("resourceVersion"):
            try:
                got = (md.get("resourceVersion"), compile_template(t), "")
            except RegoError as e:
                got = (md.get("resourceVersion"), None, str(e))
            self._programs[md["name"]] = got
        return got[1], got[2]

    async def validate(self, a: Attributes, lister: Lister) -> None:
        if a.operation not in ("CREATE", "UPDATE") or a.object is None:
            return
        if a.subresource:
            return   # Gatekeeper's webhook rules name resources, not subresources
        if a.group == "templates.gatekeeper.sh" and a.resource == "constrainttemplates":
            self._check_template(a.object)
            return
        templates = lister.list("templates.gatekeeper.sh", "constrainttemplates")
        if not templates:
            return
        review = None
        denies: list[str] = []
        for t in templates:
            kind = gatekeeper.template_kind(t)
            constraints = lister.list(gatekeeper.CONSTRAINT_GROUP, kind.lower()) if kind else []
            for c in constraints:
                if review is None:
                    review = self._review(a, lister)
                if not gatekeeper.constraint_matches(c, review):
                    continue
                program, error = self._program(t)
                name = c["metadata"]["name"]
                if program is None:
                    a.warnings.append(f"[{name}] not enforced: template {t['metadata']['name']} does not compile: {error}")
                    continue
                try:
                    found = program.violations({"review": review.input(), "parameters": (c.get("spec") or {}).get("parameters") or {}})
                except RegoError as e:
                    log.warning("constraint %s: evaluation failed: %s", name, e)
                    a.warnings.append(f"[{name}] evaluation failed, request admitted: {e}")
                    continue
                action = (c.get("spec") or {}).get("enforcementAction", "deny")
                for v in found:
                    msg = f"[{name}] {v.get('msg', '')}"
                    if action == "deny":
                        denies.append(msg)
                    elif action == "warn":
                        a.warnings.append(msg)
        if denies:
            raise StatusError(403, "Forbidden", f'admission webhook "{WEBHOOK}" denied the request: ' + "\n".join(denies))

    def _check_template(self, t: dict) -> None:
        if gatekeeper.validate_template(t):
            return  # object validation reports these
        try:
            compile_template(t)
        except RegoError as e:
            raise StatusError(400, "", f'admission webhook "{WEBHOOK}" denied the request: invalid Rego in '
                                       f'ConstraintTemplate {t["metadata"].get("name", "")!r}: {e}')

    @staticmethod
    def _review(a: Attributes, lister: Lister) -> gatekeeper.Review:
        obj = a.object or {}
        gv = obj.get("apiVersion", "")
        labels = None
        if a.namespace:
            ns = lister.get("", "namespaces", None, a.namespace)
            labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
        user = a.user
        return gatekeeper.Review(a.operation, a.group, gv.rsplit("/", 1)[-1], obj.get("kind", ""), a.resource, a.subresource,
                                 a.namespace, a.name or obj.get("metadata", {}).get("name", ""), a.object, a.old_object,
                                 getattr(user, "name", "") or "", list(getattr(user, "groups", ()) or ()), a.dry_run, labels)
