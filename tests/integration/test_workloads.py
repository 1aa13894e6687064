"""Deployments and ReplicaSets that run Pods (issue 12): `kubeclass up` runs the controller manager; the real
scheduler places the Pods on simulated nodes, which run them. Real kubectl (apply, rollout status / history
/ undo / pause / resume / restart, set image, scale, delete --cascade) and the official client's watch."""
from __future__ import annotations

import functools
import json
import threading
import time

import pytest
import yaml

import seeds
from conftest import Cluster, wait_for

TEMPLATE = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": {"type": "kwok"}},
            "status": {"capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                       "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                       "runtimeHandlers": [{"name": h, "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}
                                           for h in ("runc", "runsc", "kata-qemu", "")]}}


wait = functools.partial(wait_for, timeout=60)   # the shared helper, with this module's longer default


@pytest.fixture(scope="module")
def wc(tmp_path_factory):
    d = tmp_path_factory.mktemp("workloads")
    tpl = d / "node.yaml"
    tpl.write_text(yaml.safe_dump(TEMPLATE))
    c = Cluster(str(d / "data"), extra=["--no-node", "--simulated-nodes", "4", "--simulated-node-template", str(tpl)]).start()
    wait(lambda: len(json.loads(c.ok("get", "nodes", "-o", "json"))["items"]) == 4, what="4 nodes")
    c.ok("label", "nodes", "kwok-node-0", "kwok-node-1", "runtime.kubernetes.io/kata=true")
    yield c
    c.stop()


def get(c, *what):
    return json.loads(c.ok("get", *what, "-o", "json"))


def deployment(name, replicas=3, image="registry.k8s.io/pause:3.10", strategy=None, extra_spec=None, template_spec=None):
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}], **(template_spec or {})}}}
    if strategy:
        spec["strategy"] = strategy
    spec.update(extra_spec or {})
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec})


def owned_rs(c, name):
    """The Deployment's ReplicaSets, oldest revision first."""
    return sorted([rs for rs in get(c, "rs")["items"] if rs["metadata"]["name"].startswith(name + "-")],
                  key=lambda rs: int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0")))


def test_seed001_secure_api_deployment_runs_on_kata_nodes(wc):
    kata = next(t for _, _, t, d in seeds.documents("RuntimeClass")
                if d["metadata"]["name"] == "kata" and (d.get("overhead") and d.get("scheduling")))
    wc.ok("apply", "-f", "-", input=kata)
    block = next(t for _, _, t, d in seeds.documents("Deployment") if d["metadata"]["name"] == "secure-api")
    assert wc.ok("apply", "-f", "-", input=block).strip() == "deployment.apps/secure-api created"
    out = wc.kubectl("rollout", "status", "deploy/secure-api", "--timeout=60s", timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('deployment "secure-api" successfully rolled out')
    d = get(wc, "deploy", "secure-api")
    assert d["status"]["availableReplicas"] == 3 and d["status"]["readyReplicas"] == 3
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    rs = owned_rs(wc, "secure-api")[0]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"secure-api-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "secure-api", "pod-template-hash": h}
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = get(wc, "pods", "-l", "app=secure-api")["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["spec"]["overhead"] == {"cpu": "250m", "memory": "160Mi"}
        assert p["spec"]["nodeSelector"] == {"runtime.kubernetes.io/kata": "true"}
        assert p["spec"]["nodeName"] in ("kwok-node-0", "kwok-node-1")
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == ("ReplicaSet", rs["metadata"]["name"], True, True)
        assert p["metadata"]["generateName"] == rs["metadata"]["name"] + "-"
    table = wc.ok("get", "deploy", "secure-api")
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.split("\n")[1].split()[:4] == ["secure-api", "3/3", "3", "3"]
    desc = wc.ok("describe", "deploy", "secure-api")
    assert f"NewReplicaSet:   secure-api-{h} (3/3 replicas created)" in desc
    assert f"Scaled up replica set secure-api-{h} from 0 to 3" in desc
    wc.ok("delete", "deploy", "secure-api")


def _watch(wc, plural, group_fn, stop, seen):
    from kubernetes import client, config, watch
    api = client.ApiClient(config.load_kube_config(config_file=wc.kubeconfig) or None)
    w = watch.Watch()
    fn = getattr(client.AppsV1Api(api), group_fn)
    for ev in w.stream(fn, "default", timeout_seconds=120, _request_timeout=130):
        seen.append((ev["type"], ev["raw_object"]))
        if stop.is_set():
            w.stop()
            break


def test_rolling_update_respects_max_surge_and_max_unavailable(wc):
    wc.ok("apply", "-f", "-", input=deployment("roll", 4, image="registry.k8s.io/pause:3.9",
                                                 strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}))
    assert wc.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90).returncode == 0
    stop, rs_events, d_events = threading.Event(), [], []
    threads = [threading.Thread(target=_watch, args=(wc, "replicasets", "list_namespaced_replica_set", stop, rs_events), daemon=True),
               threading.Thread(target=_watch, args=(wc, "deployments", "list_namespaced_deployment", stop, d_events), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1)
    assert wc.ok("set", "image", "deploy/roll", "app=registry.k8s.io/pause:3.10").strip() == "deployment.apps/roll image updated"
    out = wc.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90)
    assert out.returncode == 0 and 'deployment "roll" successfully rolled out' in out.stdout
    time.sleep(1)
    stop.set()
    wc.ok("annotate", "deploy", "roll", "poke=1")   # one more event so the watches notice the stop
    for t in threads:
        t.join(10)
    sizes: dict[str, int] = {}
    worst = 0
    for typ, rs in rs_events:
        if not rs["metadata"]["name"].startswith("roll-"):
            continue
        if typ == "DELETED":
            sizes.pop(rs["metadata"]["name"], None)
        else:
            sizes[rs["metadata"]["name"]] = rs["spec"]["replicas"]
        worst = max(worst, sum(sizes.values()))
    assert worst <= 5, f"maxSurge 1 over 4 replicas: at most 5 Pods wanted at once, saw {worst}"
    assert len(sizes) == 2
    for typ, d in d_events:
        if d["metadata"]["name"] == "roll" and d["status"].get("observedGeneration", 0) >= 2:
            assert d["status"].get("availableReplicas", 0) >= 3, d["status"]
    rs_new, rs_old = sorted(owned_rs(wc, "roll"), key=lambda r: r["metadata"]["annotations"]["deployment.kubernetes.io/revision"], reverse=True)
    assert rs_new["spec"]["replicas"] == 4 and rs_old["spec"]["replicas"] == 0
    assert rs_new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    hist = wc.ok("rollout", "history", "deploy/roll")
    assert [line.split()[0] for line in hist.strip().split("\n")[2:]] == ["1", "2"]
    # undo: the first template comes back, as revision 3, in the old ReplicaSet
    assert wc.ok("rollout", "undo", "deploy/roll").strip() == "deployment.apps/roll rolled back"
    assert wc.kubectl("rollout", "status", "deploy/roll", "--timeout=60s", timeout=90).returncode == 0
    d = get(wc, "deploy", "roll")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/pause:3.9"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    back = get(wc, "rs", rs_old["metadata"]["name"])
    assert back["spec"]["replicas"] == 4
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert len(owned_rs(wc, "roll")) == 2
    wc.ok("delete", "deploy", "roll")


def test_recreate_stops_old_pods_before_new_ones(wc):
    wc.ok("apply", "-f", "-", input=deployment("recreate", 3, image="registry.k8s.io/pause:3.9", strategy={"type": "Recreate"}))
    assert wc.kubectl("rollout", "status", "deploy/recreate", "--timeout=60s", timeout=90).returncode == 0
    stop, events = threading.Event(), []
    t = threading.Thread(target=_watch, args=(wc, "replicasets", "list_namespaced_replica_set", stop, events), daemon=True)
    t.start()
    time.sleep(1)
    wc.ok("set", "image", "deploy/recreate", "app=registry.k8s.io/pause:3.10")
    assert wc.kubectl("rollout", "status", "deploy/recreate", "--timeout=60s", timeout=90).returncode == 0
    stop.set()
    wc.ok("annotate", "deploy", "recreate", "poke=1")
    t.join(10)
    sizes: dict[str, int] = {}
    for typ, rs in events:
        if rs["metadata"]["name"].startswith("recreate-") and typ != "DELETED":
            sizes[rs["metadata"]["name"]] = rs["spec"]["replicas"]
            assert sum(1 for v in sizes.values() if v) <= 1, f"two ReplicaSets scaled up at once: {sizes}"
    wc.ok("delete", "deploy", "recreate")


def test_missing_runtimeclass_shows_in_replicaset_events_and_deployment_condition(wc):
    wc.ok("apply", "-f", "-", input=deployment("noclass", 2, template_spec={"runtimeClassName": "no-such-class"}))
    rs = wait(lambda: owned_rs(wc, "noclass"), what="the ReplicaSet")[0]
    name = rs["metadata"]["name"]
    msg = f'pods "{name}-" is forbidden: pod rejected: RuntimeClass "no-such-class" not found'

    def failure():
        conds = {c["type"]: c for c in get(wc, "deploy", "noclass")["status"].get("conditions", [])}
        return conds.get("ReplicaFailure")
    cond = wait(failure, what="ReplicaFailure")
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", "FailedCreate", msg)
    desc = wc.ok("describe", "rs", name)
    assert f"Error creating: {msg}" in desc
    assert "FailedCreate" in desc and "replicaset-controller" in desc
    rsc = {c["type"]: c for c in get(wc, "rs", name)["status"]["conditions"]}
    assert rsc["ReplicaFailure"]["message"] == msg
    # the class appears: the Pods are created and the failure condition goes
    wc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: no-such-class\nhandler: runc\n")
    assert wc.kubectl("rollout", "status", "deploy/noclass", "--timeout=90s", timeout=120).returncode == 0
    assert failure() is None
    wc.ok("delete", "deploy", "noclass")
    wc.ok("delete", "runtimeclass", "no-such-class")


def test_pause_resume_restart_and_scale(wc):
    wc.ok("apply", "-f", "-", input=deployment("ops", 2))
    assert wc.kubectl("rollout", "status", "deploy/ops", "--timeout=60s", timeout=90).returncode == 0
    assert wc.ok("rollout", "pause", "deploy/ops").strip() == "deployment.apps/ops paused"
    wc.ok("set", "image", "deploy/ops", "app=registry.k8s.io/pause:3.9")
    cond = wait(lambda: {c["type"]: c for c in get(wc, "deploy", "ops")["status"]["conditions"]}["Progressing"]["reason"] == "DeploymentPaused" or None,
                what="DeploymentPaused")
    assert cond
    time.sleep(1)
    assert len(owned_rs(wc, "ops")) == 1, "a paused Deployment does not roll out"
    wc.ok("scale", "deploy/ops", "--replicas=4")   # scaling still applies while paused
    wait(lambda: get(wc, "deploy", "ops")["status"].get("availableReplicas") == 4, what="4 available while paused")
    assert wc.ok("rollout", "resume", "deploy/ops").strip() == "deployment.apps/ops resumed"
    assert wc.kubectl("rollout", "status", "deploy/ops", "--timeout=60s", timeout=90).returncode == 0
    assert len(owned_rs(wc, "ops")) == 2
    assert wc.ok("rollout", "restart", "deploy/ops").strip() == "deployment.apps/ops restarted"
    assert wc.kubectl("rollout", "status", "deploy/ops", "--timeout=60s", timeout=90).returncode == 0
    rss = owned_rs(wc, "ops")
    assert len(rss) == 3
    assert "kubectl.kubernetes.io/restartedAt" in rss[-1]["spec"]["template"]["metadata"]["annotations"]
    assert [r["spec"]["replicas"] for r in rss] == [0, 0, 4]
    # revisionHistoryLimit: old ReplicaSets beyond it go
    wc.ok("patch", "deploy", "ops", "-p", '{"spec":{"revisionHistoryLimit":1}}')
    wait(lambda: len(owned_rs(wc, "ops")) == 2, what="history trimmed to 1 old ReplicaSet")
    wc.ok("delete", "deploy", "ops")


def test_replicaset_adopts_orphans_and_releases_relabelled_pods(wc):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "adopt"}},
           "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}
    wc.ok("apply", "-f", "-", input=yaml.safe_dump(pod))
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "adopt"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "adopt"}},
                   "template": {"metadata": {"labels": {"app": "adopt"}},
                                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}}
    wc.ok("apply", "-f", "-", input=yaml.safe_dump(rs))
    wait(lambda: get(wc, "rs", "adopt")["status"].get("readyReplicas") == 2, what="2 ready")
    pods = get(wc, "pods", "-l", "app=adopt")["items"]
    assert len(pods) == 2 and "stray" in [p["metadata"]["name"] for p in pods]
    stray = get(wc, "pod", "stray")
    assert stray["metadata"]["ownerReferences"][0]["name"] == "adopt"
    assert get(wc, "rs", "adopt")["status"]["fullyLabeledReplicas"] == 2
    wc.ok("label", "pod", "stray", "app=gone", "--overwrite")
    wait(lambda: not get(wc, "pod", "stray")["metadata"].get("ownerReferences"), what="released")
    wait(lambda: len(get(wc, "pods", "-l", "app=adopt")["items"]) == 2, what="a replacement")
    table = wc.ok("get", "rs", "adopt")
    assert table.split("\n")[1].split()[:4] == ["adopt", "2", "2", "2"]
    wc.ok("scale", "rs", "adopt", "--replicas=0")
    wait(lambda: not get(wc, "pods", "-l", "app=adopt")["items"], what="scaled to 0")
    ev = wc.ok("get", "events", "--field-selector", "involvedObject.name=adopt", "-o", "json")
    reasons = {e["reason"] for e in json.loads(ev)["items"]}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
    wc.ok("delete", "rs", "adopt")
    wc.ok("delete", "pod", "stray")


def test_cascading_deletion_background_orphan_foreground(wc):
    def start(name):
        wc.ok("apply", "-f", "-", input=deployment(name, 2))
        assert wc.kubectl("rollout", "status", f"deploy/{name}", "--timeout=60s", timeout=90).returncode == 0
    start("bg")
    wc.ok("delete", "deploy", "bg")
    wait(lambda: not owned_rs(wc, "bg") and not get(wc, "pods", "-l", "app=bg")["items"], what="background cascade")

    start("orph")
    rs_name = owned_rs(wc, "orph")[0]["metadata"]["name"]
    wc.ok("delete", "deploy", "orph", "--cascade=orphan")
    rs = get(wc, "rs", rs_name)
    assert "ownerReferences" not in rs["metadata"]
    assert len(get(wc, "pods", "-l", "app=orph")["items"]) == 2
    wc.ok("delete", "rs", rs_name, "--cascade=orphan")
    pods = get(wc, "pods", "-l", "app=orph")["items"]
    assert len(pods) == 2 and all("ownerReferences" not in p["metadata"] for p in pods)
    wc.ok("delete", "pods", "-l", "app=orph")

    start("fg")
    rs_name = owned_rs(wc, "fg")[0]["metadata"]["name"]
    # foreground: the Deployment stays (with the foregroundDeletion finalizer) until its dependents are gone;
    # kubectl's --wait returns once it is gone, by then nothing of it is left
    wc.ok("delete", "deploy", "fg", "--cascade=foreground", "--timeout=60s")
    assert not owned_rs(wc, "fg") and not get(wc, "pods", "-l", "app=fg")["items"]
    code, _, body = wc.request("DELETE", "/apis/apps/v1/namespaces/default/deployments/x", {"propagationPolicy": "Sideways"})
    assert code == 422
    assert body["message"] == ('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": '
                               'supported values: "Foreground", "Background", "Orphan", "nil"')


def test_foreground_owner_waits_for_blocking_dependents(wc):
    """A ConfigMap owned (blockOwnerDeletion) by another carrying a finalizer: the owner deleted in the
    foreground stays, marked, until the dependent is really gone."""
    wc.ok("create", "configmap", "owner")
    uid = get(wc, "cm", "owner")["metadata"]["uid"]
    dep = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "dependent", "finalizers": ["example.com/hold"],
                        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "blockOwnerDeletion": True}]}}
    wc.ok("apply", "-f", "-", input=yaml.safe_dump(dep))
    wc.ok("delete", "cm", "owner", "--cascade=foreground", "--wait=false")
    owner = wait(lambda: (lambda o: o if o["metadata"].get("deletionTimestamp") else None)(get(wc, "cm", "owner")), what="owner marked")
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait(lambda: get(wc, "cm", "dependent")["metadata"].get("deletionTimestamp"), what="dependent deleted")
    time.sleep(1)
    assert get(wc, "cm", "owner")["metadata"]["finalizers"] == ["foregroundDeletion"]
    wc.ok("patch", "cm", "dependent", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait(lambda: wc.kubectl("get", "cm", "owner").returncode != 0, what="owner gone")


def test_dangling_owner_reference_is_collected(wc):
    dep = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "dangling", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "never",
                                                                 "uid": "00000000-0000-0000-0000-000000000001"}]}}
    wc.ok("apply", "-f", "-", input=yaml.safe_dump(dep))
    wait(lambda: wc.kubectl("get", "cm", "dangling").returncode != 0, what="dangling dependent collected")
    # an owner kind the API does not serve is never taken for gone
    dep["metadata"]["name"] = "unknown-kind"
    dep["metadata"]["ownerReferences"][0].update({"apiVersion": "example.com/v1", "kind": "Widget"})
    wc.ok("apply", "-f", "-", input=yaml.safe_dump(dep))
    time.sleep(2)
    assert wc.kubectl("get", "cm", "unknown-kind").returncode == 0
    wc.ok("delete", "cm", "unknown-kind")


def test_deployment_validation_texts(wc):
    bad = deployment("bad", strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    r = wc.kubectl("apply", "-f", "-", input=bad)
    assert r.returncode != 0
    assert ('The Deployment "bad" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: '
            'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0') in r.stderr
    r = wc.kubectl("apply", "-f", "-", input=deployment("bad", strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}))
    assert "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'" in r.stderr
    r = wc.kubectl("apply", "-f", "-", input=deployment("bad", strategy={"rollingUpdate": {"maxSurge": "150%"}}))
    assert r.returncode == 0, r.stderr   # maxSurge may exceed 100%, maxUnavailable may not
    wc.ok("delete", "deploy", "bad")
    r = wc.kubectl("apply", "-f", "-", input=deployment("bad", strategy={"rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "1"}}))
    assert ('The Deployment "bad" is invalid: \n* spec.strategy.rollingUpdate.maxSurge: Invalid value: '
            'intstr.IntOrString{Type:1, IntVal:0, StrVal:"1"}: a valid percent string must be a numeric string followed by an ending '
            "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')\n"
            '* spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%') in r.stderr, r.stderr
    r = wc.kubectl("apply", "-f", "-", input=deployment("bad2", template_spec={"restartPolicy": "Never"}))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in r.stderr
    wc.ok("apply", "-f", "-", input=deployment("immut", 0))
    d = get(wc, "deploy", "immut")
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (d["spec"]["revisionHistoryLimit"], d["spec"]["progressDeadlineSeconds"]) == (10, 600)
    r = wc.kubectl("patch", "deploy", "immut", "-p", '{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}')
    assert ('spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"other"}, '
            'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable') in r.stderr
    wc.ok("delete", "deploy", "immut")


def test_controller_manager_holds_its_lease(wc):
    lease = get(wc, "lease", "-n", "kube-system", "kube-controller-manager")
    assert lease["spec"]["holderIdentity"]
    assert lease["spec"]["leaseDurationSeconds"] == 15


def test_controllers_as_their_own_command(tmp_path):
    """`kubeclass up --no-controllers` runs nothing; `kubeclass controllers --kubeconfig` (two of them: one
    leads) makes the Deployment run."""
    import subprocess
    import sys

    from conftest import ROOT
    tpl = tmp_path / "node.yaml"
    tpl.write_text(yaml.safe_dump(TEMPLATE))
    c = Cluster(str(tmp_path / "data"), extra=["--no-node", "--no-controllers", "--simulated-nodes", "1",
                                                "--simulated-node-template", str(tpl)]).start()
    procs = []
    try:
        c.ok("apply", "-f", "-", input=deployment("solo", 2))
        time.sleep(2)
        assert not owned_rs(c, "solo"), "no controller manager: nothing runs"
        for i in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "controllers", "--kubeconfig", c.kubeconfig],
                                          stdout=open(tmp_path / f"cm{i}.log", "wb"), stderr=subprocess.STDOUT, cwd=ROOT))
        assert c.kubectl("rollout", "status", "deploy/solo", "--timeout=60s", timeout=90).returncode == 0
        lease = get(c, "lease", "-n", "kube-system", "kube-controller-manager")
        logs = [(tmp_path / f"cm{i}.log").read_text() for i in range(2)]
        assert sum("became leader" in log for log in logs) == 1, logs
        assert lease["spec"]["holderIdentity"]
        bad = subprocess.run([sys.executable, "-m", "kubeclass.cli", "controllers", "--kubeconfig", c.kubeconfig,
                              "--controllers", "*,-nope"], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert bad.returncode == 1 and "unknown controllers nope" in bad.stderr
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        c.stop()


def job(name, completions=None, parallelism=None, extra=None, restart="Never"):
    spec = {"template": {"spec": {"restartPolicy": restart, "containers": [{"name": "work", "image": "registry.k8s.io/pause:3.10"}]}}}
    if completions is not None:
        spec["completions"] = completions
    if parallelism is not None:
        spec["parallelism"] = parallelism
    spec.update(extra or {})
    return yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})


def test_job_runs_to_completion_with_parallelism(wc):
    """Simulated nodes complete a Job's Pods once running (KWOK's pod-complete stage)."""
    wc.ok("apply", "-f", "-", input=job("five", 5, 2))
    out = wc.kubectl("wait", "--for=condition=complete", "job/five", "--timeout=60s", timeout=90)
    assert out.returncode == 0 and out.stdout.strip() == "job.batch/five condition met", out.stderr
    j = get(wc, "job", "five")
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert j["spec"]["template"]["metadata"]["labels"] == {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "five",
                                                           "controller-uid": uid, "job-name": "five"}
    assert (j["spec"]["backoffLimit"], j["spec"]["completionMode"], j["spec"]["suspend"], j["spec"]["podReplacementPolicy"]) == \
        (6, "NonIndexed", False, "TerminatingOrFailed")
    st = j["status"]
    assert st["succeeded"] == 5 and "failed" not in st and st["uncountedTerminatedPods"] == {}
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert all(c["reason"] == "CompletionsReached" and c["message"] == "Reached expected number of succeeded pods" for c in st["conditions"])
    assert st["completionTime"] and st["startTime"]
    pods = get(wc, "pods", "-l", "job-name=five")["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all("finalizers" not in p["metadata"] for p in pods), "the tracking finalizer is released once counted"
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Job" for p in pods)
    table = wc.ok("get", "job", "five").split("\n")
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == ["five", "Complete", "5/5"]
    desc = wc.ok("describe", "job", "five")
    assert "Pods Statuses:    0 Active (0 Ready) / 5 Succeeded / 0 Failed" in desc
    assert "Completions:      5" in desc and "Parallelism:      2" in desc
    events = json.loads(wc.ok("get", "events", "--field-selector", "involvedObject.name=five", "-o", "json"))["items"]
    assert sum(1 for e in events if e["reason"] == "SuccessfulCreate") == 5
    assert any(e["reason"] == "Completed" and e["message"] == "Job completed" for e in events)
    wc.ok("delete", "job", "five")
    wait(lambda: not get(wc, "pods", "-l", "job-name=five")["items"], what="the Job's Pods collected")


def test_indexed_job_and_ttl_after_finished(wc):
    wc.ok("apply", "-f", "-", input=job("idx", 3, 3, {"completionMode": "Indexed", "ttlSecondsAfterFinished": 2}))
    assert wc.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=60s", timeout=90).returncode == 0
    j = get(wc, "job", "idx")
    assert j["status"]["completedIndexes"] == "0-2"
    pods = get(wc, "pods", "-l", "job-name=idx")["items"]
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2"]
    p0 = next(p for p in pods if p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "0")
    assert p0["spec"]["hostname"] == "idx-0" and p0["metadata"]["generateName"] == "idx-0-"
    assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in p0["spec"]["containers"][0]["env"]
    # ttlSecondsAfterFinished: the Job and its Pods go 2 s after it completed
    wait(lambda: wc.kubectl("get", "job", "idx").returncode != 0, timeout=30, what="the finished Job removed")
    wait(lambda: not get(wc, "pods", "-l", "job-name=idx")["items"], what="its Pods removed")


def test_job_validation_texts(wc):
    r = wc.kubectl("apply", "-f", "-", input=job("always", restart="Always"))
    assert 'The Job "always" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' in r.stderr
    r = wc.kubectl("apply", "-f", "-", input=job("noidx", extra={"completionMode": "Indexed"}, parallelism=2))
    assert "spec.completions: Required value: when completion mode is Indexed" in r.stderr


def test_suspended_job_creates_nothing_until_resumed(wc):
    wc.ok("apply", "-f", "-", input=job("later", 2, 2, {"suspend": True}))
    cond = wait(lambda: next((c for c in get(wc, "job", "later")["status"].get("conditions", []) if c["type"] == "Suspended"), None),
                what="Suspended")
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", "JobSuspended", "Job suspended")
    assert not get(wc, "pods", "-l", "job-name=later")["items"]
    assert wc.ok("get", "job", "later").split("\n")[1].split()[1] == "Suspended"
    wc.ok("patch", "job", "later", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    assert wc.kubectl("wait", "--for=condition=complete", "job/later", "--timeout=60s", timeout=90).returncode == 0
    c = next(c for c in get(wc, "job", "later")["status"]["conditions"] if c["type"] == "Suspended")
    assert (c["status"], c["reason"], c["message"]) == ("False", "JobResumed", "Job resumed")
    wc.ok("delete", "job", "later")


def test_daemonset_covers_nodes_with_its_handler(wc):
    wc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: ds-gvisor\nhandler: runsc\n---\n"
                                    "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: ds-fc\nhandler: kata-fc\n")

    def ds(name, rc, image="registry.k8s.io/pause:3.9"):
        return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
                               "spec": {"selector": {"matchLabels": {"app": name}},
                                        "template": {"metadata": {"labels": {"app": name}},
                                                     "spec": {"runtimeClassName": rc, "containers": [{"name": "agent", "image": image}]}}}})
    wc.ok("apply", "-f", "-", input=ds("everywhere", "ds-gvisor"))
    out = wc.kubectl("rollout", "status", "ds/everywhere", "--timeout=60s", timeout=90)
    assert out.returncode == 0 and 'daemon set "everywhere" successfully rolled out' in out.stdout, out.stderr
    d = get(wc, "ds", "everywhere")
    assert (d["status"]["desiredNumberScheduled"], d["status"]["numberReady"], d["status"]["numberAvailable"]) == (4, 4, 4)
    pods = get(wc, "pods", "-l", "app=everywhere")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == [f"kwok-node-{i}" for i in range(4)]
    for p in pods:
        terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [p["spec"]["nodeName"]]}]}]
        keys = {(t["key"], t["effect"]) for t in p["spec"]["tolerations"]}
        assert ("node.kubernetes.io/unreachable", "NoExecute") in keys and ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    table = wc.ok("get", "ds", "everywhere").split("\n")
    assert table[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert table[1].split()[:7] == ["everywhere", "4", "4", "4", "4", "4", "<none>"]
    # a new template rolls out node by node, history in ControllerRevisions
    wc.ok("set", "image", "ds/everywhere", "agent=registry.k8s.io/pause:3.10")
    assert wc.kubectl("rollout", "status", "ds/everywhere", "--timeout=60s", timeout=90).returncode == 0
    wait(lambda: sorted(p["spec"]["containers"][0]["image"] for p in get(wc, "pods", "-l", "app=everywhere")["items"]) ==
         ["registry.k8s.io/pause:3.10"] * 4, what="every node on the new template")
    # maxSurge: the new Pod starts beside the old one, which goes once the new one is available
    wc.ok("patch", "ds", "everywhere", "--type=merge", "-p",
          '{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}},"template":{"metadata":{"annotations":{"v":"3"}}}}}')
    assert wc.kubectl("rollout", "status", "ds/everywhere", "--timeout=60s", timeout=90).returncode == 0
    pods = wait(lambda: (lambda ps: ps if len(ps) == 4 and all(p["metadata"].get("annotations", {}).get("v") == "3" for p in ps) else None)(
        get(wc, "pods", "-l", "app=everywhere")["items"]), what="every node on the surged template")
    assert sorted(p["spec"]["nodeName"] for p in pods) == [f"kwok-node-{i}" for i in range(4)]
    wc.ok("patch", "ds", "everywhere", "--type=merge", "-p", '{"spec":{"template":{"metadata":{"annotations":{"v":null}}}}}')
    assert wc.kubectl("rollout", "status", "ds/everywhere", "--timeout=60s", timeout=90).returncode == 0
    hist = wc.ok("rollout", "history", "ds/everywhere")
    assert [line.split()[0] for line in hist.strip().split("\n")[2:]] == ["1", "3", "4"]   # revision 2 came back as 4
    # a class whose handler no node has: nothing scheduled, and the DaemonSet says why
    wc.ok("apply", "-f", "-", input=ds("nowhere", "ds-fc"))
    wait(lambda: [e for e in json.loads(wc.ok("get", "events", "--field-selector", "involvedObject.name=nowhere", "-o", "json"))["items"]
                  if e["reason"] == "FailedPlacement"], what="FailedPlacement")
    ev = json.loads(wc.ok("get", "events", "--field-selector", "involvedObject.name=nowhere", "-o", "json"))["items"]
    assert any(e["message"] == 'failed to place pod on "kwok-node-0": node(s) didn\'t have the runtime handler "kata-fc"' for e in ev)
    assert get(wc, "ds", "nowhere")["status"]["desiredNumberScheduled"] == 0
    assert not get(wc, "pods", "-l", "app=nowhere")["items"]
    wc.ok("delete", "ds", "everywhere", "nowhere")
    wait(lambda: not get(wc, "pods", "-l", "app=everywhere")["items"], what="daemon Pods collected")
    assert not [cr for cr in get(wc, "controllerrevisions")["items"] if cr["metadata"]["name"].startswith("everywhere-")]
