"""The Deployment controller's decisions, pure (upstream's pkg/controller/deployment/util and the rolling,
recreate, sync and progress files of its controller): the pod-template hash, which ReplicaSet is new,
maxSurge / maxUnavailable, how far to scale each ReplicaSet, proportional scaling, revisions, the status
and its conditions with upstream's reasons and messages. The controller (kubeclass/controllers/deployment.py)
applies them through the API."""
from __future__ import annotations

import copy
import datetime

import orjson

from . import workloads
from .meta import parse_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
# annotations a Deployment does not pass on to its ReplicaSets (util.skipCopyAnnotation)
_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
MAX_INT32 = 2 ** 31 - 1

# condition reasons (deployment/util)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# ---- the pod-template hash

def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: no vowels, no 0/1/3 (no bad words, no look-alikes)."""
    return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in s.encode())


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """controller.ComputeHash's shape: FNV-32a of the template (here its canonical JSON; upstream hashes Go's
    spew dump, which no other language reproduces) and the collision count, decimal, safe-encoded."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += collision_count.to_bytes(4, "little", signed=False)
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    return t


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return _without_hash(a) == _without_hash(b)


# ---- replica arithmetic

def replicas(obj: dict | None) -> int:
    if obj is None:
        return 0
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else r


def status_of(obj: dict | None, field: str) -> int:
    return ((obj or {}).get("status") or {}).get(field, 0) or 0


def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge, max_unavailable, desired: int) -> tuple[int, int]:
    surge = workloads.scaled_value(max_surge, desired, True)
    unavailable = workloads.scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1   # a rollout must be able to make progress
    return surge, unavailable


def _fenceposts(d: dict) -> tuple[int, int]:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), replicas(d))


def max_surge(d: dict) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], replicas(d))


def new_rs_replicas(d: dict, all_rs: list[dict], new_rs: dict) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    if is_rolling(d):
        if replicas(new_rs) == replicas(d):
            return replicas(new_rs)
        current = sum(replicas(rs) for rs in all_rs)
        max_total = replicas(d) + max_surge(d)
        if current >= max_total:
            return replicas(new_rs)
        up = min(max_total - current, max(0, replicas(d) - replicas(new_rs)))
        return replicas(new_rs) + up
    return replicas(d)


def _annotation_int(rs: dict, key: str) -> int | None:
    v = (rs["metadata"].get("annotations") or {}).get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def revision(rs: dict) -> int:
    return _annotation_int(rs, REVISION) or 0


def max_revision(rs_list: list[dict]) -> int:
    return max([revision(rs) for rs in rs_list] or [0])


def _created(rs: dict) -> tuple:
    return (rs["metadata"].get("creationTimestamp") or "", rs["metadata"].get("name", ""))


def find_new_rs(d: dict, rs_list: list[dict]) -> dict | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    tmpl = (d.get("spec") or {}).get("template") or {}
    for rs in sorted(rs_list, key=_created):
        if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, tmpl):
            return rs
    return None


def find_old_rs(new_rs: dict | None, rs_list: list[dict]) -> list[dict]:
    uid = new_rs["metadata"]["uid"] if new_rs else None
    return [rs for rs in rs_list if rs["metadata"].get("uid") != uid]


def active(rs_list: list[dict]) -> list[dict]:
    return [rs for rs in rs_list if rs is not None and replicas(rs) > 0]


def find_active_or_latest(new_rs: dict | None, old: list[dict]) -> dict | None:
    if new_rs is None and not old:
        return None
    old = sorted(old, key=_created, reverse=True)
    alive = active(old + ([new_rs] if new_rs else []))
    if not alive:
        return new_rs if new_rs is not None else old[0]
    return alive[0] if len(alive) == 1 else None


def is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    return _annotation_int(rs, DESIRED_REPLICAS) == replicas(d) and replicas(rs) == replicas(d) and \
        status_of(rs, "availableReplicas") == replicas(d)


def is_scaling_event(d: dict, rs_list: list[dict]) -> bool:
    for rs in active(rs_list):
        want = _annotation_int(rs, DESIRED_REPLICAS)
        if want is not None and want != replicas(d):
            return True
    return False


def replicas_annotations_need_update(rs: dict, desired: int, max_repl: int) -> bool:
    a = rs["metadata"].get("annotations") or {}
    return a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(max_repl)


def set_replicas_annotations(rs: dict, desired: int, max_repl: int) -> bool:
    a = rs["metadata"].setdefault("annotations", {})
    changed = a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(max_repl)
    a[DESIRED_REPLICAS], a[MAX_REPLICAS] = str(desired), str(max_repl)
    return changed


def _rs_fraction(rs: dict, d: dict) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = _annotation_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_of(d, "replicas")
    if not annotated:
        return 0
    return int(round_half_away(replicas(rs) * deployment_replicas / annotated)) - replicas(rs)


def round_half_away(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def proportional_sizes(d: dict, new_rs: dict | None, old: list[dict]) -> dict[str, int] | None:
    """sync.scale for a rolling Deployment whose replicas changed mid-rollout: the new size of every active
    ReplicaSet (bigger ones take a bigger share; leftovers to the first), or None when nothing changes."""
    all_rs = active(old + ([new_rs] if new_rs else []))
    total = sum(replicas(rs) for rs in all_rs)
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total
    if to_add != 0:
        # bigger first; among equals the newer first when growing (ReplicaSetsBySizeNewer), older when shrinking
        all_rs.sort(key=_created, reverse=to_add > 0)
        all_rs.sort(key=lambda rs: -replicas(rs))
    sizes: dict[str, int] = {}
    added = 0
    for rs in all_rs:
        if to_add != 0:
            frac = _rs_fraction(rs, d)
            allowed_now = to_add - added
            prop = min(frac, allowed_now) if to_add > 0 else max(frac, allowed_now)
            sizes[rs["metadata"]["name"]] = replicas(rs) + prop
            added += prop
        else:
            sizes[rs["metadata"]["name"]] = replicas(rs)
    if all_rs and to_add != added:
        first = all_rs[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


# ---- rolling update steps

def old_scale_down_budget(d: dict, all_rs: list[dict], new_rs: dict | None) -> int:
    """reconcileOldReplicaSets: how many old Pods may go now without breaking maxUnavailable."""
    all_pods = sum(replicas(rs) for rs in all_rs)
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = replicas(new_rs) - status_of(new_rs, "availableReplicas") if new_rs else 0
    return all_pods - min_available - new_unavailable


def cleanup_unhealthy(old: list[dict], budget: int) -> dict[str, int]:
    """Scale old ReplicaSets down by their unavailable Pods first (oldest first), within the budget."""
    out, total = {}, 0
    for rs in sorted(old, key=_created):
        if total >= budget:
            break
        if replicas(rs) == 0:
            continue
        unhealthy = replicas(rs) - status_of(rs, "availableReplicas")
        if unhealthy <= 0:
            continue
        down = min(budget - total, unhealthy)
        out[rs["metadata"]["name"]] = replicas(rs) - down
        total += down
    return out


def scale_down_old_for_rolling(d: dict, all_rs: list[dict], old: list[dict]) -> dict[str, int]:
    """scaleDownOldReplicaSetsForRollingUpdate: available Pods above minAvailable may go, oldest RS first."""
    min_available = replicas(d) - max_unavailable(d)
    available = sum(status_of(rs, "availableReplicas") for rs in all_rs)
    if available <= min_available:
        return {}
    budget, total, out = available - min_available, 0, {}
    for rs in sorted(old, key=_created):
        if total >= budget:
            break
        if replicas(rs) == 0:
            continue
        down = min(replicas(rs), budget - total)
        out[rs["metadata"]["name"]] = replicas(rs) - down
        total += down
    return out


# ---- new ReplicaSet and annotations

def new_rs_annotations(d: dict, rs: dict, new_revision: int, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copy the Deployment's annotations, raise the revision (keeping the old
    one in revision-history), and on creation the desired / max replicas. Returns whether anything changed."""
    a = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k in _SKIP_COPY or a.get(k) == v:
            continue
        a[k] = v
        changed = True
    old_rev = a.get(REVISION)
    try:
        old_n = int(old_rev) if old_rev is not None else 0
    except ValueError:
        old_n = 0
    if old_n < new_revision:
        a[REVISION] = str(new_revision)
        changed = True
        if old_rev is not None and exists:
            hist = a.get(REVISION_HISTORY)
            a[REVISION_HISTORY] = f"{hist},{old_rev}" if hist else old_rev
    if not exists:
        set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d))
        changed = True
    return changed


def build_new_rs(d: dict, new_revision: int, replicas_now: int) -> dict:
    md = d["metadata"]
    tmpl = copy.deepcopy((d.get("spec") or {}).get("template") or {})
    h = template_hash(tmpl, (d.get("status") or {}).get("collisionCount"))
    tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
    sel = copy.deepcopy((d.get("spec") or {}).get("selector") or {})
    sel.setdefault("matchLabels", {})[HASH_LABEL] = h
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": f"{md['name']}-{h}", "namespace": md["namespace"],
                       "labels": dict(tmpl["metadata"]["labels"]),
                       "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": md["name"], "uid": md["uid"],
                                            "controller": True, "blockOwnerDeletion": True}]},
          "spec": {"replicas": replicas_now, "minReadySeconds": (d.get("spec") or {}).get("minReadySeconds", 0),
                   "selector": sel, "template": tmpl}}
    new_rs_annotations(d, rs, new_revision, False)
    return rs


def cleanup_candidates(d: dict, old: list[dict]) -> list[dict]:
    """Old ReplicaSets beyond revisionHistoryLimit that are scaled to zero, lowest revision first."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in old if not rs["metadata"].get("deletionTimestamp")]
    diff = len(alive) - limit
    if diff <= 0:
        return []
    out = []
    for rs in sorted(alive, key=lambda r: (revision(r), _created(r)))[:diff]:
        if status_of(rs, "replicas") != 0 or replicas(rs) != 0 or \
                (rs["metadata"].get("generation") or 0) > status_of(rs, "observedGeneration"):
            continue
        out.append(rs)
    return out


# ---- status and conditions

def condition(status: dict, typ: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def set_condition(status: dict, typ: str, cstatus: str, reason: str, message: str, now: str) -> None:
    """util.SetDeploymentCondition: no change for the same status and reason; the transition time stays
    while the status does not change; the condition moves to the end."""
    cur = condition(status, typ)
    if cur is not None and cur.get("status") == cstatus and cur.get("reason") == reason:
        return
    new = {"type": typ, "status": cstatus, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message}
    if cur is not None and cur.get("status") == cstatus:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", now)
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != typ] + [new]


def remove_condition(status: dict, typ: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != typ]
        if not status["conditions"]:
            del status["conditions"]


def has_progress_deadline(d: dict) -> bool:
    pds = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return pds is not None and pds != MAX_INT32


def calculate_status(d: dict, all_rs: list[dict], new_rs: dict | None, now: str) -> dict:
    available = sum(status_of(rs, "availableReplicas") for rs in all_rs)
    total = sum(replicas(rs) for rs in all_rs)
    old = d.get("status") or {}
    st = {"observedGeneration": d["metadata"].get("generation", 1),
          "replicas": sum(status_of(rs, "replicas") for rs in all_rs),
          "updatedReplicas": status_of(new_rs, "replicas") if new_rs else 0,
          "readyReplicas": sum(status_of(rs, "readyReplicas") for rs in all_rs),
          "availableReplicas": available,
          "unavailableReplicas": max(total - available, 0)}
    st = {k: v for k, v in st.items() if v}   # every count is omitempty in apps/v1 DeploymentStatus
    if old.get("collisionCount") is not None:
        st["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        st["conditions"] = copy.deepcopy(old["conditions"])
    if available >= replicas(d) - max_unavailable(d):
        set_condition(st, "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now)
    else:
        set_condition(st, "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.", now)
    return st


def complete(d: dict, st: dict) -> bool:
    r = replicas(d)
    return st.get("updatedReplicas", 0) == r and st.get("replicas", 0) == r and st.get("availableReplicas", 0) == r and \
        st.get("observedGeneration", 0) >= d["metadata"].get("generation", 1)


def progressing(d: dict, st: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = st.get("replicas", 0) - st.get("updatedReplicas", 0)
    return st.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old or \
        st.get("readyReplicas", 0) > old.get("readyReplicas", 0) or st.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def timed_out(d: dict, st: dict, now: datetime.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    c = condition(st, "Progressing")
    if c is None or c.get("reason") == NEW_RS_AVAILABLE:
        return False
    if c.get("reason") == TIMED_OUT:
        return True
    since = parse_time(c.get("lastUpdateTime") or "")
    return since is not None and since + datetime.timedelta(seconds=d["spec"]["progressDeadlineSeconds"]) < now


def rollout_status(d: dict, all_rs: list[dict], new_rs: dict | None, now: datetime.datetime, now_s: str) -> dict:
    """syncRolloutStatus: the new status with Progressing (and ReplicaFailure from the ReplicaSets)."""
    st = calculate_status(d, all_rs, new_rs, now_s)
    if not has_progress_deadline(d):
        remove_condition(st, "Progressing")
    cur = condition(st, "Progressing")
    done = st.get("replicas", 0) == st.get("updatedReplicas", 0) and cur is not None and cur.get("reason") == NEW_RS_AVAILABLE
    if has_progress_deadline(d) and not done:
        name = new_rs["metadata"]["name"] if new_rs else None
        if complete(d, st):
            msg = f'ReplicaSet "{name}" has successfully progressed.' if name else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
            set_condition(st, "Progressing", "True", NEW_RS_AVAILABLE, msg, now_s)
        elif progressing(d, st):
            msg = f'ReplicaSet "{name}" is progressing.' if name else f'Deployment "{d["metadata"]["name"]}" is progressing.'
            keep = cur["lastTransitionTime"] if cur is not None and cur.get("status") == "True" else None
            remove_condition(st, "Progressing")
            set_condition(st, "Progressing", "True", RS_UPDATED, msg, now_s)
            if keep:
                condition(st, "Progressing")["lastTransitionTime"] = keep
        elif timed_out(d, st, now):
            msg = f'ReplicaSet "{name}" has timed out progressing.' if name else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
            set_condition(st, "Progressing", "False", TIMED_OUT, msg, now_s)
    failures = [c for rs in ([new_rs] if new_rs else []) + [r for r in all_rs if r is not new_rs]
                for c in (rs.get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure" and c.get("status") == "True"]
    if failures:
        f = failures[0]
        set_condition(st, "ReplicaFailure", f["status"], f.get("reason", ""), f.get("message", ""), now_s)
    else:
        remove_condition(st, "ReplicaFailure")
    return st


def requeue_after(d: dict, st: dict, now: datetime.datetime) -> float | None:
    """requeueStuckDeployment: when to look again so that a stuck rollout times out on time."""
    c = condition(st, "Progressing")
    if c is None or not has_progress_deadline(d) or complete(d, st) or c.get("reason") == TIMED_OUT:
        return None
    since = parse_time(c.get("lastUpdateTime") or "")
    if since is None:
        return None
    after = (since + datetime.timedelta(seconds=d["spec"]["progressDeadlineSeconds"]) - now).total_seconds()
    return 0.0 if after < 1 else after + 1
