"""batch/v1 Job: defaults, the generated selector, validation and the table row as upstream 1.32
(pkg/apis/batch), and the Job controller's pure decisions (pkg/controller/job): pod failure back-off,
completion indexes, conditions with upstream's reasons and messages."""
from __future__ import annotations

import datetime

from . import meta, names, pod
from .errors import FieldError, forbidden, invalid, not_supported, required
from .meta import parse_time

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_UID, LEGACY_NAME = "controller-uid", "job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_RESTART_POLICIES = ["OnFailure", "Never"]
COMPLETION_MODES = ["NonIndexed", "Indexed"]
MAX_BACKOFF = 360.0           # DefaultJobPodFailureBackOff 10 s, doubling, capped at 6 minutes
BASE_BACKOFF = 10.0


# ---- defaults and creation

def defaults(job: dict) -> None:
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2 ** 31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for c in rule.get("onPodConditions") or []:
            c.setdefault("status", "True")
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        tmpl = spec["template"] = {}
    if not isinstance(tmpl.get("metadata"), dict):
        tmpl["metadata"] = {}
    if not isinstance(tmpl.get("spec"), dict):
        tmpl["spec"] = {}
    pod.set_defaults({"spec": tmpl["spec"]})
    labels = tmpl["metadata"].get("labels")
    if labels and not job.setdefault("metadata", {}).get("labels"):
        job["metadata"]["labels"] = dict(labels)


def prepare_create(job: dict) -> None:
    """generateSelector: the Job's uid labels its Pods and selects them (unless manualSelector)."""
    spec = job["spec"]
    md = job["metadata"]
    if not spec.get("manualSelector"):
        labels = spec["template"]["metadata"].setdefault("labels", {})
        labels.setdefault(CONTROLLER_UID, md["uid"])
        labels.setdefault(JOB_NAME, md.get("name", ""))
        labels.setdefault(LEGACY_UID, md["uid"])
        labels.setdefault(LEGACY_NAME, md.get("name", ""))
        if not spec.get("selector"):
            spec["selector"] = {"matchLabels": {CONTROLLER_UID: md["uid"]}}
    job["status"] = {}


# ---- validation

def _nonneg(spec: dict, f: str) -> list[FieldError]:
    v = spec.get(f)
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        return [invalid(f"spec.{f}", v, "must be greater than or equal to 0")]
    return []


def validate(job: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(job.get("metadata", {}), True, names.dns1123_subdomain)
    name = job.get("metadata", {}).get("name") or ""
    if name and len(name) > 63:
        errs.append(invalid("metadata.name", name, "must be no more than 63 characters"))
    spec = job.get("spec") or {}
    for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        errs += _nonneg(spec, f)
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and ads == 0:
        errs.append(invalid("spec.activeDeadlineSeconds", ads, "must be greater than 0"))
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in COMPLETION_MODES:
        errs.append(not_supported("spec.completionMode", mode, COMPLETION_MODES))
    elif mode == "Indexed" and spec.get("completions") is None:
        errs.append(required("spec.completions", "when completion mode is Indexed"))
    tmpl = spec.get("template") or {}
    tspec = tmpl.get("spec") or {}
    errs += pod.validate_spec(tspec, "spec.template.spec")
    rp = tspec.get("restartPolicy")
    if not rp:
        errs.append(required("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"'))
    elif rp not in JOB_RESTART_POLICIES:
        errs.append(not_supported("spec.template.spec.restartPolicy", rp, JOB_RESTART_POLICIES))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds", "activeDeadlineSeconds in Job is not Supported"))
    pfp = spec.get("podFailurePolicy")
    if pfp is not None:
        if rp and rp != "Never" and rp in JOB_RESTART_POLICIES:
            errs.append(not_supported("spec.template.spec.restartPolicy", rp, ["Never"]))
        for i, rule in enumerate(pfp.get("rules") or []):
            act = rule.get("action", "")
            if act not in ("FailJob", "FailIndex", "Ignore", "Count"):
                errs.append(not_supported(f"spec.podFailurePolicy.rules[{i}].action", act, ["Count", "FailIndex", "FailJob", "Ignore"]))
            if bool(rule.get("onExitCodes")) == bool(rule.get("onPodConditions")):
                errs.append(invalid(f"spec.podFailurePolicy.rules[{i}]", "", "specifying one of OnExitCodes and OnPodConditions is required"))
            oec = rule.get("onExitCodes") or {}
            if oec and oec.get("operator") not in ("In", "NotIn"):
                errs.append(not_supported(f"spec.podFailurePolicy.rules[{i}].onExitCodes.operator", oec.get("operator", ""), ["In", "NotIn"]))
            if oec.get("operator") == "In" and 0 in (oec.get("values") or []):
                errs.append(invalid(f"spec.podFailurePolicy.rules[{i}].onExitCodes.values[{(oec.get('values') or []).index(0)}]", 0,
                                    "must not be 0 for the In operator"))
    sel = spec.get("selector")
    if sel is not None:
        from .selectors import LabelSelector
        try:
            matches = LabelSelector.from_object(sel).matches((tmpl.get("metadata") or {}).get("labels") or {})
        except ValueError as e:
            errs.append(invalid("spec.selector", str(sel), str(e)))
        else:
            if not matches:
                errs.append(invalid("spec.template.metadata.labels", (tmpl.get("metadata") or {}).get("labels") or {},
                                    "`selector` does not match template `labels`"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    for f in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy"):
        if ns.get(f) != os_.get(f):
            errs.append(invalid(f"spec.{f}", str(ns.get(f)), "field is immutable"))
    if ns.get("completions") != os_.get("completions") and not (ns.get("completionMode") == "Indexed" and ns.get("completions") == ns.get("parallelism")):
        errs.append(invalid("spec.completions", ns.get("completions"), "field is immutable"))
    # the template may change only while the Job is suspended and has not started (upstream: a few scheduling fields)
    if ns.get("template") != os_.get("template") and not (os_.get("suspend") and not (old.get("status") or {}).get("startTime")):
        errs.append(invalid("spec.template", "core.PodTemplateSpec{...}", "field is immutable"))
    return errs


# ---- table

def row(job: dict) -> list:
    spec, st = job.get("spec") or {}, job.get("status") or {}
    succeeded = st.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(st.get("startTime") or ""), parse_time(st.get("completionTime") or "")
    if start is None:
        duration = ""
    elif end is None:
        duration = meta.human_duration((datetime.datetime.now(datetime.timezone.utc) - start).total_seconds())
    else:
        duration = meta.human_duration((end - start).total_seconds())
    conds = {c.get("type") for c in st.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds:
        status = "Complete"
    elif "Failed" in conds:
        status = "Failed"
    elif job["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    elif "Suspended" in conds:
        status = "Suspended"
    elif "FailureTarget" in conds:
        status = "FailureTarget"
    else:
        status = "Running"
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    from .selectors import LabelSelector
    return [job["metadata"]["name"], status, completions, duration, meta.age(job["metadata"].get("creationTimestamp")),
            ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
            LabelSelector.from_object(spec.get("selector") or {}).to_string()]


# ---- controller decisions

def finished(job: dict) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def condition(job_status: dict, typ: str) -> dict | None:
    for c in job_status.get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def set_condition(job_status: dict, typ: str, status: str, reason: str, message: str, now: str) -> None:
    cur = condition(job_status, typ)
    if cur is not None and (cur.get("status"), cur.get("reason"), cur.get("message")) == (status, reason, message):
        return
    new = {"type": typ, "status": status, "lastProbeTime": now, "lastTransitionTime": now, "reason": reason, "message": message}
    if cur is not None and cur.get("status") == status:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", now)
    job_status["conditions"] = [c for c in job_status.get("conditions") or [] if c.get("type") != typ] + [new]


def backoff(failures: int) -> float:
    """Seconds before a Pod replaces a failed one: 10 s, doubling per consecutive failure, at most 6 minutes."""
    if failures <= 0:
        return 0.0
    return min(BASE_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)


def pod_index(p: dict) -> int | None:
    md = p["metadata"]
    v = (md.get("annotations") or {}).get(COMPLETION_INDEX) or (md.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def parse_indexes(s: str) -> set[int]:
    out: set[int] = set()
    for part in (s or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        try:
            out.update(range(int(a), int(b or a) + 1))
        except ValueError:
            continue
    return out


def format_indexes(ix: set[int]) -> str:
    """`1,3-5,7`: completedIndexes as upstream writes it."""
    out, run = [], []
    for i in sorted(ix):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def pod_finish_time(p: dict) -> datetime.datetime | None:
    latest = None
    for cs in (p.get("status") or {}).get("containerStatuses") or []:
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt") or "")
        if t is not None and (latest is None or t > latest):
            latest = t
    return latest


def pod_failure_action(policy: dict | None, p: dict) -> tuple[str, str]:
    """The podFailurePolicy action for a failed Pod — FailJob, Ignore or Count (upstream's
    matchPodFailurePolicy: rules in order, exit codes of containers that ended non-zero, Pod conditions) —
    and, for FailJob, the condition message upstream writes."""
    if not policy:
        return "Count", ""
    md, st = p["metadata"], p.get("status") or {}
    statuses = (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action", "")
        oec = rule.get("onExitCodes")
        if oec:
            for cs in statuses:
                term = (cs.get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                if code in (None, 0) or (oec.get("containerName") and oec["containerName"] != cs.get("name")):
                    continue
                inside = code in (oec.get("values") or [])
                if (oec.get("operator") == "In") == inside:
                    return action, (f"Container {cs.get('name')} for pod {md.get('namespace')}/{md.get('name')} failed with exit code "
                                    f"{code} matching {action} rule at index {i}")
        for pc in rule.get("onPodConditions") or []:
            for c in st.get("conditions") or []:
                if c.get("type") == pc.get("type") and c.get("status") == pc.get("status", "True"):
                    return action, f"Pod {md.get('namespace')}/{md.get('name')} has condition {pc.get('type')} matching {action} rule at index {i}"
    return "Count", ""
