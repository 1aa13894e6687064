"""batch/v1 CronJob: defaults, validation, the table row (upstream pkg/apis/batch) and the schedule
arithmetic of the CronJob controller: standard 5-field cron syntax and the @yearly ... @hourly macros,
in `spec.timeZone` (an IANA name) or UTC. cronsim evaluates the expressions."""
from __future__ import annotations

import datetime
import zoneinfo

from cronsim import CronSim, CronSimError

from . import jobs, meta, names, pod
from .errors import FieldError, invalid, not_supported, required
from .meta import parse_time

CONCURRENCY = ["Allow", "Forbid", "Replace"]
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MAX_MISSED = 100


def expression(schedule: str) -> str:
    s = schedule.strip()
    return MACROS.get(s, s)


def schedule_error(schedule: str) -> str | None:
    s = expression(schedule)
    if s.startswith("@"):
        return f"unrecognized descriptor: {schedule}"
    fields = s.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    try:
        CronSim(s, datetime.datetime(2000, 1, 1))
    except CronSimError as e:
        return str(e)
    return None


def timezone(name: str | None) -> datetime.tzinfo:
    if not name:
        return datetime.timezone.utc
    return zoneinfo.ZoneInfo(name)


def times_between(schedule: str, tz: str | None, after: datetime.datetime, until: datetime.datetime,
                  limit: int = MAX_MISSED + 1) -> list[datetime.datetime]:
    """Scheduled times t with after < t <= until (at most `limit`, the latest kept), in UTC."""
    zone = timezone(tz)
    it = CronSim(expression(schedule), after.astimezone(zone).replace(second=0, microsecond=0))
    out: list[datetime.datetime] = []
    for t in it:
        tu = t.astimezone(datetime.timezone.utc)
        if tu <= after:
            continue
        if tu > until:
            break
        out.append(tu)
        if len(out) > limit:
            out.pop(0)
    return out


def next_time(schedule: str, tz: str | None, after: datetime.datetime) -> datetime.datetime:
    zone = timezone(tz)
    for t in CronSim(expression(schedule), after.astimezone(zone).replace(second=0, microsecond=0)):
        tu = t.astimezone(datetime.timezone.utc)
        if tu > after:
            return tu
    raise ValueError("no next time")


def job_name(cronjob: str, scheduled: datetime.datetime) -> str:
    """`<cronjob>-<minutes since the epoch>`, as upstream (so one scheduled time makes one Job)."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


# ---- API

def defaults(cj: dict) -> None:
    spec = cj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        jt = spec["jobTemplate"] = {}
    js = jt.get("spec")
    if not isinstance(js, dict):
        js = jt["spec"] = {}
    tmpl = js.get("template")
    if not isinstance(tmpl, dict):
        tmpl = js["template"] = {}
    if not isinstance(tmpl.get("spec"), dict):
        tmpl["spec"] = {}
    pod.set_defaults({"spec": tmpl["spec"]})


def prepare_create(cj: dict) -> None:
    cj["status"] = {}


def validate(cj: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(cj.get("metadata", {}), True, names.dns1123_subdomain)
    name = cj.get("metadata", {}).get("name") or ""
    if len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    spec = cj.get("spec") or {}
    sched = spec.get("schedule")
    if not sched:
        errs.append(required("spec.schedule"))
    else:
        if "TZ" in sched:
            errs.append(invalid("spec.schedule", sched, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        else:
            why = schedule_error(sched)
            if why:
                errs.append(invalid("spec.schedule", sched, why))
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            timezone(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errs.append(invalid("spec.timeZone", tz, f"unknown time zone {tz}"))
    cp = spec.get("concurrencyPolicy", "Allow")
    if cp not in CONCURRENCY:
        errs.append(not_supported("spec.concurrencyPolicy", cp, CONCURRENCY))
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        v = spec.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            errs.append(invalid(f"spec.{f}", v, "must be greater than or equal to 0"))
    js = (spec.get("jobTemplate") or {}).get("spec") or {}
    tspec = (js.get("template") or {}).get("spec") or {}
    errs += pod.validate_spec(tspec, "spec.jobTemplate.spec.template.spec")
    rp = tspec.get("restartPolicy")
    if rp not in jobs.JOB_RESTART_POLICIES:
        errs.append(not_supported("spec.jobTemplate.spec.template.spec.restartPolicy", rp or "", jobs.JOB_RESTART_POLICIES))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))


def row(cj: dict) -> list:
    spec, st = cj.get("spec") or {}, cj.get("status") or {}
    last = parse_time(st.get("lastScheduleTime") or "")
    last_s = meta.human_duration((datetime.datetime.now(datetime.timezone.utc) - last).total_seconds()) if last else "<none>"
    cs = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    sel = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("selector")
    from .selectors import LabelSelector
    return [cj["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "True" if spec.get("suspend") else "False", str(len(st.get("active") or [])), last_s,
            meta.age(cj["metadata"].get("creationTimestamp")),
            ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
            LabelSelector.from_object(sel).to_string() if sel else "<none>"]
