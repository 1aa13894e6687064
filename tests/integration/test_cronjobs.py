"""CronJobs (issue 12): `kubectl create cronjob`, the table, the Job made at the next scheduled minute
(`<cronjob>-<minutes since the epoch>`, its scheduled-timestamp annotation, status.active and
lastScheduleTime), `kubectl create job --from=cronjob/x`, suspend, and upstream's validation texts."""
from __future__ import annotations

import json
import time

from conftest import wait_for as wait



def test_cronjob_makes_a_job_each_minute(cluster):
    cluster.ok("create", "namespace", "cron")
    out = cluster.ok("create", "cronjob", "tick", "-n", "cron", "--image=busybox", "--schedule=* * * * *", "--", "echo", "hi")
    assert out.strip() == "cronjob.batch/tick created"
    cj = json.loads(cluster.ok("get", "cronjob", "tick", "-n", "cron", "-o", "json"))
    s = cj["spec"]
    assert (s["concurrencyPolicy"], s["suspend"], s["successfulJobsHistoryLimit"], s["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    table = cluster.ok("get", "cronjob", "tick", "-n", "cron").split("\n")
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert table[1].split()[:7] == ["tick", "*", "*", "*", "*", "*", "<none>"]
    # a Job by hand from the template (client-side, as upstream)
    assert cluster.ok("create", "job", "by-hand", "--from=cronjob/tick", "-n", "cron").strip() == "job.batch/by-hand created"
    manual = json.loads(cluster.ok("get", "job", "by-hand", "-n", "cron", "-o", "json"))
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    # the scheduled one, at the next minute
    def scheduled():
        js = [j for j in json.loads(cluster.ok("get", "jobs", "-n", "cron", "-o", "json"))["items"] if j["metadata"]["name"] != "by-hand"]
        return js or None
    job = wait(scheduled, timeout=75, what="the scheduled Job")[0]
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    minutes = int(time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone) // 60
    assert job["metadata"]["name"] == f"tick-{minutes}"
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("CronJob", "tick", True)
    st = wait(lambda: (lambda c: c["status"] if c["status"].get("active") else None)(
        json.loads(cluster.ok("get", "cronjob", "tick", "-n", "cron", "-o", "json"))), what="status.active")
    assert st["lastScheduleTime"] == stamp and st["active"][0]["name"] == job["metadata"]["name"]
    events = json.loads(cluster.ok("get", "events", "-n", "cron", "--field-selector", "involvedObject.name=tick", "-o", "json"))["items"]
    assert any(e["reason"] == "SuccessfulCreate" and e["message"] == f"Created job {job['metadata']['name']}" for e in events)
    cluster.ok("patch", "cronjob", "tick", "-n", "cron", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    assert cluster.ok("get", "cronjob", "tick", "-n", "cron").split("\n")[1].split()[7] == "True"
    cluster.ok("delete", "namespace", "cron", "--wait=false")


def test_cronjob_validation_texts(cluster):
    r = cluster.kubectl("create", "cronjob", "bad", "--image=busybox", "--schedule=bad")
    assert r.stderr.strip() == ('error: failed to create cronjob: CronJob.batch "bad" is invalid: spec.schedule: Invalid value: "bad": '
                                'expected exactly 5 fields, found 1: [bad]')
    r = cluster.kubectl("create", "cronjob", "tz", "--image=busybox", "--schedule=CRON_TZ=UTC 0 * * * *")
    assert "cannot use TZ or CRON_TZ in schedule, use timeZone field instead" in r.stderr


def test_job_from_cronjob_keeps_security_context_and_zero_values(cluster):
    """`kubectl create job --from=cronjob/x` sends protobuf: pointer fields set to 0 / false and the security
    contexts arrive intact (a dropped `allowPrivilegeEscalation: false` would change what the Pod may do)."""
    import yaml
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "secure", "namespace": "default"},
          "spec": {"schedule": "0 0 1 1 *", "suspend": True, "successfulJobsHistoryLimit": 0,
                   "jobTemplate": {"spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 0, "template": {"spec": {
                       "restartPolicy": "Never", "automountServiceAccountToken": False,
                       "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "fsGroup": 2000, "supplementalGroups": [3000, 4000],
                                           "seccompProfile": {"type": "RuntimeDefault"}},
                       "containers": [{"name": "c", "image": "busybox",
                                       "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                           "capabilities": {"drop": ["ALL"]}, "runAsUser": 1000}}]}}}}}}
    cluster.ok("apply", "-f", "-", input=yaml.safe_dump(cj))
    cluster.ok("create", "job", "secure-now", "--from=cronjob/secure")
    job = json.loads(cluster.ok("get", "job", "secure-now", "-o", "json"))
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (0, 0)
    ps = job["spec"]["template"]["spec"]
    assert ps["automountServiceAccountToken"] is False
    assert ps["securityContext"] == {"runAsUser": 0, "runAsNonRoot": False, "fsGroup": 2000, "supplementalGroups": [3000, 4000],
                                     "seccompProfile": {"type": "RuntimeDefault"}}
    assert ps["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                      "capabilities": {"drop": ["ALL"]}, "runAsUser": 1000}
    cluster.ok("delete", "job", "secure-now")
    cluster.ok("delete", "cronjob", "secure")
