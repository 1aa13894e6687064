"""Cascading deletion, pure (upstream's apiserver deletion rules and garbagecollector's classification):
which finalizer a DeleteOptions propagationPolicy puts on the object (`orphan`, `foregroundDeletion`), and
what the garbage collector does with an object given the state of its owners."""
from __future__ import annotations

from .errors import FieldError, invalid, not_supported

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
POLICIES = ["Foreground", "Background", "Orphan"]


def validate_delete_options(opts: dict) -> list[FieldError]:
    errs = []
    policy = opts.get("propagationPolicy")
    if opts.get("orphanDependents") is not None and policy is not None:
        errs.append(invalid("propagationPolicy", policy, "orphanDependents and deletionPropagation cannot be both set"))
    if policy is not None and policy not in POLICIES:
        errs.append(not_supported("propagationPolicy", policy, POLICIES + ["nil"]))
    return errs


def propagation_policy(opts: dict) -> str | None:
    """The policy a delete asks for; None: the resource's default (Background for every kind served here)."""
    if opts.get("propagationPolicy"):
        return opts["propagationPolicy"]
    if opts.get("orphanDependents") is True:
        return "Orphan"
    if opts.get("orphanDependents") is False:
        return "Background"
    return None


def apply_propagation(md: dict, policy: str | None) -> bool:
    """Put the finalizer the policy asks for on an object being deleted (and take the other one off), as
    upstream's deletionFinalizersForGarbageCollection. Returns whether the finalizers changed."""
    fins = list(md.get("finalizers") or [])
    before = list(fins)
    if policy == "Orphan":
        fins = [f for f in fins if f != FOREGROUND]
        if ORPHAN not in fins:
            fins.append(ORPHAN)
    elif policy == "Foreground":
        fins = [f for f in fins if f != ORPHAN]
        if FOREGROUND not in fins:
            fins.append(FOREGROUND)
    elif policy == "Background":
        fins = [f for f in fins if f not in (ORPHAN, FOREGROUND)]
    if fins == before:
        return False
    if fins:
        md["finalizers"] = fins
    else:
        md.pop("finalizers", None)
    return True


def deleting_with(md: dict, finalizer: str) -> bool:
    return bool(md.get("deletionTimestamp")) and finalizer in (md.get("finalizers") or [])


def classify(refs: list[dict], owner_state) -> tuple[list[dict], list[dict], list[dict]]:
    """Split ownerReferences into (solid, dangling, waiting for dependents' deletion); owner_state(ref)
    answers 'present', 'absent' or 'foreground' (present, deleting with foregroundDeletion)."""
    solid, dangling, waiting = [], [], []
    for r in refs:
        state = owner_state(r)
        (solid if state == "present" else dangling if state == "absent" else waiting).append(r)
    return solid, dangling, waiting


def delete_policy_for(md: dict, has_dependents: bool, waiting: bool) -> str:
    """How the collector deletes an object whose owners are all gone (or deleting in the foreground):
    its own finalizers first, then Foreground when an owner waits on it and it has dependents itself."""
    fins = md.get("finalizers") or []
    if ORPHAN in fins:
        return "Orphan"
    if FOREGROUND in fins:
        return "Foreground"
    if waiting and has_dependents:
        return "Foreground"
    return "Background"
