"""pkg/util/tolerations MergeTolerations / isSuperset scenarios and the admission plugin's
setScheduling cases (plugin/pkg/admission/runtimeclass/admission_test.go)."""
from __future__ import annotations

import asyncio

import pytest

from kubeclass.admission import Attributes
from kubeclass.admission.runtimeclass import RuntimeClass
from kubeclass.api.errors import StatusError
from kubeclass.api.tolerations import is_superset, merge

FOO = {"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}
FIZZ = {"key": "fizz", "operator": "Equal", "value": "buzz", "effect": "NoSchedule"}


def test_merge_appends_new_class_tolerations():
    assert merge([FOO], [FOO, FIZZ]) == [FOO, FIZZ]


def test_merge_drops_entries_covered_by_a_superset():
    exists_all = {"operator": "Exists"}
    assert merge([FOO], [exists_all]) == [exists_all]
    no_effect = {"key": "foo", "operator": "Exists"}
    assert merge([FOO, FIZZ], [no_effect]) == [FIZZ, no_effect]


def test_superset_rules():
    assert is_superset({"key": "k", "operator": "Exists", "effect": ""}, {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"})
    assert not is_superset({"key": "k", "operator": "Equal", "value": "v"}, {"key": "k", "operator": "", "value": "v"})
    short = {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
    assert is_superset(short, {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5})
    assert not is_superset(short, {"key": "k", "operator": "Exists", "effect": "NoExecute"})


class FakeLister:
    def __init__(self, classes):
        self.classes = {c["metadata"]["name"]: c for c in classes}

    def get(self, group, resource, namespace, name):
        return self.classes.get(name)

    def list(self, group, resource, namespace=None):
        return list(self.classes.values())


def admit(pod, classes):
    a = Attributes("CREATE", "", "pods", None, "default", pod["metadata"].get("name", ""), pod)
    asyncio.run(RuntimeClass().admit(a, FakeLister(classes)))
    asyncio.run(RuntimeClass().validate(a, FakeLister(classes)))
    return pod


def rc(**kw):
    return {"metadata": {"name": "rc"}, "handler": "h", **kw}


@pytest.mark.parametrize("rc_sched,pod_spec,want", [
    (None, {"nodeSelector": {"foo": "bar"}}, {"nodeSelector": {"foo": "bar"}}),
    ({"nodeSelector": {"foo": "bar"}}, {}, {"nodeSelector": {"foo": "bar"}}),
    ({"nodeSelector": {"foo": "bar"}}, {"nodeSelector": {"foo": "bar"}}, {"nodeSelector": {"foo": "bar"}}),
    ({"nodeSelector": {"foo": "bar", "fizz": "buzz"}}, {"nodeSelector": {"foo": "bar"}}, {"nodeSelector": {"foo": "bar", "fizz": "buzz"}}),
    ({"tolerations": [FOO, FIZZ]}, {"tolerations": [FOO]}, {"tolerations": [FOO, FIZZ]}),
])
def test_set_scheduling(rc_sched, pod_spec, want):
    pod = {"metadata": {"name": "p"}, "spec": {"runtimeClassName": "rc", **pod_spec}}
    cls = rc(scheduling=rc_sched) if rc_sched is not None else rc()
    got = admit(pod, [cls])["spec"]
    got.pop("runtimeClassName")
    assert got == want


def test_set_scheduling_conflict():
    pod = {"metadata": {"name": "p"}, "spec": {"runtimeClassName": "rc", "nodeSelector": {"foo": "bar"}}}
    with pytest.raises(StatusError) as e:
        admit(pod, [rc(scheduling={"nodeSelector": {"foo": "conflict"}})])
    assert e.value.message == 'pods "p" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[foo] = conflict; pod.spec.nodeSelector[foo] = bar'


@pytest.mark.parametrize("rc_over,pod_over,ok", [
    ({"cpu": "100m", "memory": "1"}, None, True),
    ({"cpu": "10", "memory": "10G"}, {"cpu": "100m", "memory": "1"}, False),
    ({"cpu": "100m", "memory": "1"}, {"cpu": "100m", "memory": "1"}, True),
    ({"cpu": "1", "memory": "1"}, {"cpu": "1000m", "memory": "1"}, True),
    ({"cpu": "100m"}, {}, True),
])
def test_set_overhead(rc_over, pod_over, ok):
    spec = {"runtimeClassName": "rc"}
    if pod_over is not None:
        spec["overhead"] = pod_over
    pod = {"metadata": {"name": "p"}, "spec": spec}
    if ok:
        assert admit(pod, [rc(overhead={"podFixed": rc_over})])["spec"]["overhead"] == rc_over
    else:
        with pytest.raises(StatusError) as e:
            admit(pod, [rc(overhead={"podFixed": rc_over})])
        assert e.value.code == 403 and "Pod's Overhead doesn't match RuntimeClass's defined Overhead" in e.value.message


def test_validate_overhead_without_class():
    pod = {"metadata": {"name": "p"}, "spec": {"overhead": {"cpu": "1"}}}
    with pytest.raises(StatusError) as e:
        admit(pod, [])
    assert e.value.message == 'pods "p" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead'
    assert admit({"metadata": {"name": "p"}, "spec": {"overhead": {}}}, [])  # empty overhead is fine


def test_podsecurity_messages_for_many_containers():
    from kubeclass.admission.podsecurity import evaluate
    spec = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x", "securityContext": {"runAsUser": 0}}],
            "securityContext": {"runAsNonRoot": False}, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    r = evaluate("restricted", spec)
    assert 'restricted volume types (volume "h" uses restricted volume type "hostPath")' in r
    assert 'runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)' in r
    assert 'runAsUser=0 (container "b" must not set runAsUser=0)' in r
    assert r.startswith('allowPrivilegeEscalation != false (containers "a", "b" must set')
    assert evaluate("baseline", spec) == 'hostPath volumes (volume "h")'
    assert evaluate("privileged", spec) == ""


def test_psa_apparmor_selinux_hostprocess_messages():
    """Texts as pod-security-admission 1.32's check_appArmorProfile / check_seLinuxOptions / check_windowsHostProcess."""
    from kubeclass.admission.podsecurity import evaluate
    spec = {"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
            "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Unconfined"},
                                                            "seLinuxOptions": {"type": "spc_t", "user": "root"}}},
                           {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": True}}}]}
    md = {"annotations": {"container.apparmor.security.beta.kubernetes.io/b": "unconfined",
                          "container.apparmor.security.beta.kubernetes.io/a": "runtime/default"}}
    assert evaluate("baseline", spec, md) == (
        'forbidden AppArmor profiles (pod and container "a" and annotation must not set AppArmor profile type to '
        '"Unconfined", "container.apparmor.security.beta.kubernetes.io/b=\\"unconfined\\""), '
        'seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set), '
        'hostProcess (container "b" must not set securityContext.windowsOptions.hostProcess=true)')
    assert evaluate("baseline", {"containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_t"},
                                                                                  "appArmorProfile": {"type": "RuntimeDefault"}}}]}) == ""


def test_default_toleration_seconds_then_runtimeclass_merge_as_upstream_orders_them():
    """DefaultTolerationSeconds runs before RuntimeClass: the Pod's own tolerations first, the defaults a Pod
    does not already tolerate after them, then the class's merged in (a superset replaces what it covers)."""
    import asyncio

    from kubeclass.admission import Attributes
    from kubeclass.admission.defaulttolerationseconds import DefaultTolerationSeconds
    from kubeclass.api import tolerations

    nr = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ur = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}

    def admitted(tols, cls=()):
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], **({"tolerations": list(tols)} if tols else {})}}
        asyncio.run(DefaultTolerationSeconds().admit(Attributes("CREATE", "", "pods", None, "default", "p", pod), None))
        return tolerations.merge(pod["spec"].get("tolerations") or [], list(cls))

    own = {"key": "a", "operator": "Exists", "effect": "NoSchedule"}
    assert admitted([]) == [nr, ur]
    assert admitted([own]) == [own, nr, ur]
    mine = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
    assert admitted([mine]) == [mine, nr]
    assert admitted([{"operator": "Exists"}]) == [{"operator": "Exists"}]          # tolerates everything already
    cls = {"key": "foo-u", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}
    assert admitted([], [cls]) == [nr, ur, cls]
    assert admitted([own], [cls]) == [own, nr, ur, cls]
    assert admitted([], [{"operator": "Exists"}]) == [{"operator": "Exists"}]     # the class's superset covers them
    secs = DefaultTolerationSeconds(30, 60)
    pod = {"spec": {}}
    asyncio.run(secs.admit(Attributes("CREATE", "", "pods", None, "default", "p", pod), None))
    assert [t["tolerationSeconds"] for t in pod["spec"]["tolerations"]] == [30, 60]
