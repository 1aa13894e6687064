"""Jobs on the real node (issue 12): untrusted work as a gVisor Job of 5 completions, 2 at a time, runs to
completion in runsc sandboxes; a Job whose Pods fail is retried after upstream's back-off and stops at its
backoffLimit with BackoffLimitExceeded; `kubectl logs job/x` reads one of its Pods."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

GVISOR = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n"


def job(name: str, script: str, **spec) -> str:
    return yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                           "spec": {**spec, "template": {"spec": {
                               "runtimeClassName": "gvisor", "restartPolicy": "Never",
                               "containers": [{"name": "work", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                               "command": ["sh", "-c", script]}]}}}})


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=GVISOR)
    return node_cluster


def test_gvisor_job_of_five_completions_two_at_a_time(nc):
    nc.ok("apply", "-f", "-", input=job("crunch", "dmesg | head -1; sleep 1", completions=5, parallelism=2))
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = json.loads(nc.ok("get", "job", "crunch", "-o", "json"))["status"]
        most = max(most, st.get("active", 0))
        if any(c["type"] == "Complete" for c in st.get("conditions", [])):
            break
        time.sleep(0.2)
    assert st["succeeded"] == 5, st
    assert most <= 2, f"parallelism 2, saw {most} active"
    out = nc.kubectl("wait", "--for=condition=complete", "job/crunch", "--timeout=5s")
    assert out.returncode == 0
    assert nc.ok("logs", "job/crunch").strip().endswith("0.000000] Starting gVisor...")
    pods = json.loads(nc.ok("get", "pods", "-l", "job-name=crunch", "-o", "json"))["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    nc.ok("delete", "job", "crunch")


def test_failing_job_stops_at_its_backoff_limit(nc):
    t0 = time.monotonic()
    nc.ok("apply", "-f", "-", input=job("doomed", "echo trying; exit 3", backoffLimit=1))
    cond = wait_for(lambda: next((c for c in json.loads(nc.ok("get", "job", "doomed", "-o", "json"))["status"].get("conditions", [])
                                  if c["type"] == "Failed"), None), 120, what="the Job failed")
    assert (cond["reason"], cond["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    st = json.loads(nc.ok("get", "job", "doomed", "-o", "json"))["status"]
    assert st["failed"] == 2 and "succeeded" not in st
    assert [c["type"] for c in st["conditions"]] == ["FailureTarget", "Failed"]
    assert time.monotonic() - t0 >= 10, "the second Pod waits out the 10 s back-off"
    pods = json.loads(nc.ok("get", "pods", "-l", "job-name=doomed", "-o", "json"))["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert nc.ok("get", "job", "doomed").split("\n")[1].split()[1] == "Failed"
    events = [e for e in json.loads(nc.ok("get", "events", "--field-selector", "involvedObject.name=doomed", "-o", "json"))["items"]]
    assert any(e["reason"] == "BackoffLimitExceeded" and e["type"] == "Warning" for e in events)
    nc.ok("delete", "job", "doomed")


def test_pod_failure_policy_fails_the_job_at_once(nc):
    """A FailJob rule on exit code 42: the first failure ends the Job (no retry, no back-off)."""
    doc = yaml.safe_load(job("fatal", "exit 42", backoffLimit=6))
    doc["spec"]["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In", "values": [42]}}]}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))
    cond = wait_for(lambda: next((c for c in json.loads(nc.ok("get", "job", "fatal", "-o", "json"))["status"].get("conditions", [])
                                  if c["type"] == "Failed"), None), 60, what="the Job failed")
    pod = json.loads(nc.ok("get", "pods", "-l", "job-name=fatal", "-o", "json"))["items"]
    assert len(pod) == 1
    assert (cond["reason"], cond["message"]) == (
        "PodFailurePolicy", f"Container work for pod default/{pod[0]['metadata']['name']} failed with exit code 42 matching FailJob rule at index 0")
    nc.ok("delete", "job", "fatal")
