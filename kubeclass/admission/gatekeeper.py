"""OPA Gatekeeper constraints enforced in the chain, where Gatekeeper's validating webhook would sit.

Each ConstraintTemplate's Rego (v0 syntax as Gatekeeper writes it, or v1) is compiled once per template
version into a bundle by rego-cpp (the `regopy` package: a maintained Rego engine, not ours) and queried
for `data.<package>.violation` with `input.review` (the AdmissionRequest) and `input.parameters` (the
constraint's). Violations deny with `[<constraint>] <msg>` (403, as Gatekeeper's webhook answers),
`warn` constraints return `Warning:` headers, `dryrun` ones only count. Template writes are checked here
too: Rego that does not compile is refused, as Gatekeeper's webhook refuses it.
"""
from __future__ import annotations

import asyncio
import logging
import sys

import orjson
import regopy

from ..api import gatekeeper
from ..api.errors import StatusError
from . import Attributes, Lister, Plugin

WEBHOOK = "validation.gatekeeper.sh"
log = logging.getLogger("kubeclass.gatekeeper")


class RegoError(Exception):
    pass


def _wrapper(template: str, package: str) -> str:
    """Evaluates every matching constraint of one template in one query: each sees its own parameters."""
    return (f"package kubeclass.gatekeeper.{template}\n\n"
            f"results[name] = v {{\n"
            f"  params := input.constraints[{orjson.dumps(template).decode()}][name]\n"
            f"  v := data.{package}.violation with input.parameters as params\n"
            f"}}\n")


class Program:
    """One template's compiled Rego: a bundle plus a runner interpreter reused across queries."""

    def __init__(self, name: str, rego: str, libs: list[str]):
        self.name = name
        self.package = gatekeeper.package_of(rego)
        if not self.package:
            raise RegoError("the Rego has no package declaration")
        build = regopy.Interpreter()
        try:
            build.add_module("template.rego", rego)
            for i, lib in enumerate(libs):
                build.add_module(f"lib{i}.rego", lib)
            build.add_module("kubeclass-wrapper.rego", _wrapper(name, self.package))
            self.bundle = build.build(f"results = data.kubeclass.gatekeeper.{name}.results", [])
        except regopy.RegoError as e:
            raise RegoError(_clean(str(e))) from None
        self.runner = regopy.Interpreter()

    def run(self, input_: "regopy.Input") -> dict[str, list[dict]]:
        """Violations per constraint name, for the constraints listed under input.constraints[<template>]."""
        self.runner.set_input(input_)
        try:
            out = self.runner.query_bundle(self.bundle)
        except regopy.RegoError as e:
            raise RegoError(_clean(str(e))) from None
        if not out.ok():
            raise RegoError(_clean(str(out)))
        results = (orjson.loads(str(out)).get("bindings") or {}).get("results") or {}
        return {k: gatekeeper.violations(v) for k, v in results.items()} if isinstance(results, dict) else {}

    def violations(self, review: dict, parameters: dict) -> list[dict]:
        """One constraint's violations (`input.review`, `input.parameters`)."""
        got = self.run(regopy.Input({"review": review, "constraints": {self.name: {"c": parameters}}}))
        return got.get("c", [])


def _clean(msg: str) -> str:
    lines = [ln.rstrip() for ln in msg.splitlines() if ln.strip()]
    return " ".join(lines)[:2000] or "Rego error"


def compile_template(t: dict) -> Program:
    rego, libs = gatekeeper.rego_sources(t)
    return Program(t["metadata"]["name"], rego, libs)


_CHECK = """
import sys, orjson
from kubeclass.admission.gatekeeper import compile_template, RegoError
try:
    compile_template(orjson.loads(sys.stdin.buffer.read()))
except RegoError as e:
    print(e); sys.exit(3)
"""


async def check_compiles(t: dict, timeout: float = 30.0) -> str | None:
    """Compile a new template in a child process first: the Rego engine is native code, and a template
    it cannot handle must be refused without putting the server at risk. Returns the error, if any."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHECK, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(orjson.dumps(t)), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        return f"compiling the Rego took longer than {timeout:.0f}s"
    if proc.returncode == 0:
        return None
    if proc.returncode == 3:
        return out.decode(errors="replace").strip()
    tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
    return f"the Rego engine failed on this template (exit {proc.returncode}): {tail[0]}"


class GatekeeperConstraints(Plugin):
    name = "GatekeeperConstraints"

    def __init__(self) -> None:
        self._programs: dict[str, tuple[str, Program | None, str]] = {}   # template name -> (rv, program, error)
        self._prefilters: dict[str, tuple[str, gatekeeper.Prefilter]] = {}  # constraint uid -> (rv, prefilter)

    def _prefilter(self, c: dict) -> gatekeeper.Prefilter:
        md = c["metadata"]
        got = self._prefilters.get(md.get("uid", ""))
        if got is None or got[0] != md.get("resourceVersion"):
            if len(self._prefilters) > 10000:
                self._prefilters.clear()
            got = (md.get("resourceVersion"), gatekeeper.Prefilter.of(c))
            self._prefilters[md.get("uid", "")] = got
        return got[1]

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
            await self._check_template(a.object)
            return
        templates = lister.list("templates.gatekeeper.sh", "constrainttemplates")
        if not templates:
            return
        review = None
        work: list[tuple[Program, dict[str, dict]]] = []
        params: dict[str, dict[str, dict]] = {}
        for t in templates:
            kind = gatekeeper.template_kind(t)
            constraints = lister.list(gatekeeper.CONSTRAINT_GROUP, kind.lower()) if kind else []
            matching: dict[str, dict] = {}
            for c in constraints:
                if review is None:
                    review = self._review(a, lister)
                if not self._prefilter(c).rejects(review) and gatekeeper.constraint_matches(c, review):
                    matching[c["metadata"]["name"]] = c
            if not matching:
                continue
            program, error = self._program(t)
            if program is None:
                a.warnings.extend(f"[{n}] not enforced: template {t['metadata']['name']} does not compile: {error}" for n in matching)
                continue
            work.append((program, matching))
            params[program.name] = {n: (c.get("spec") or {}).get("parameters") or {} for n, c in matching.items()}
        if not work:
            return
        input_ = regopy.Input({"review": review.input(), "constraints": params})   # converted once per request
        denies: list[str] = []
        for program, matching in work:
            try:
                results = program.run(input_)
            except RegoError as e:
                log.warning("template %s: evaluation failed: %s", program.name, e)
                a.warnings.extend(f"[{n}] evaluation failed, request admitted: {e}" for n in matching)
                continue
            for name, c in matching.items():
                action = (c.get("spec") or {}).get("enforcementAction", "deny")
                for v in results.get(name, []):
                    msg = f"[{name}] {v.get('msg', '')}"
                    if action == "deny":
                        denies.append(msg)
                    elif action == "warn":
                        a.warnings.append(msg)
        if denies:
            raise StatusError(403, "Forbidden", f'admission webhook "{WEBHOOK}" denied the request: ' + "\n".join(denies))

    async def _check_template(self, t: dict) -> None:
        if gatekeeper.validate_template(t):
            return  # object validation reports these
        error = await check_compiles(t)
        if error:
            raise StatusError(400, "", f'admission webhook "{WEBHOOK}" denied the request: invalid Rego in '
                                       f'ConstraintTemplate {t["metadata"].get("name", "")!r}: {error}')

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
