"""go-cmp's report of a refused Pod update, as kube-apiserver 1.32 prints it (kubeclass/api/godiff.py).

Every expected text below was printed by github.com/google/go-cmp v0.6.0 (the version Kubernetes 1.32 vendors)
for the same two values held in Go structs shaped as the internal core types (a throwaway Go program; go-cmp
prints either spaces or non-breaking spaces after -/+ at random per process: spaces are shown).
"""
import copy

from kubeclass.api import godiff, pod

BASE = {
    "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"}],
    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
    "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {}, "schedulerName": "default-scheduler",
    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
    "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
    "runtimeClassName": "gvisor", "overhead": {"cpu": "250m", "memory": "160Mi"}, "nodeSelector": {"runtime": "gvisor"},
}


def changed(**top):
    new = copy.deepcopy(BASE)
    new.update(top)
    return new

RUNTIME_CLASS = """\
  core.PodSpec{
  \t... // 24 identical fields
  \tDNSConfig:          nil,
  \tReadinessGates:     nil,
- \tRuntimeClassName:   &"gvisor",
+ \tRuntimeClassName:   &"standard",
  \tOverhead:           {"cpu": {i: {...}, s: "250m", Format: "DecimalSI"}, "memory": {i: {...}, Format: "BinarySI"}},
  \tEnableServiceLinks: &true,
  \t... // 5 identical fields
  }
"""

OVERHEAD = """\
  core.PodSpec{
  \t... // 25 identical fields
  \tReadinessGates:   nil,
  \tRuntimeClassName: &"gvisor",
  \tOverhead: core.ResourceList{
- \t\t"cpu":    {i: resource.int64Amount{value: 250, scale: -3}, s: "250m", Format: "DecimalSI"},
+ \t\t"cpu":    {i: resource.int64Amount{value: 50, scale: -3}, s: "50m", Format: "DecimalSI"},
- \t\t"memory": {i: resource.int64Amount{value: 167772160}, Format: "BinarySI"},
+ \t\t"memory": {i: resource.int64Amount{value: 67108864}, Format: "BinarySI"},
  \t},
  \tEnableServiceLinks:        &true,
  \tTopologySpreadConstraints: nil,
  \t... // 4 identical fields
  }
"""

NODE_SELECTOR = """\
  core.PodSpec{
  \t... // 6 identical fields
  \tActiveDeadlineSeconds: nil,
  \tDNSPolicy:             "ClusterFirst",
  \tNodeSelector: map[string]string{
- \t\t"runtime": "gvisor",
+ \t\t"runtime": "kata",
+ \t\t"zone":    "a",
  \t},
  \tServiceAccountName:           "default",
  \tAutomountServiceAccountToken: nil,
  \t... // 23 identical fields
  }
"""

CPU_LIMIT = """\
  core.PodSpec{
  \tVolumes:        nil,
  \tInitContainers: nil,
  \tContainers: []core.Container{
  \t\t{
  \t\t\t... // 6 identical fields
  \t\t\tEnvFrom: nil,
  \t\t\tEnv:     nil,
  \t\t\tResources: core.ResourceRequirements{
  \t\t\t\tLimits: core.ResourceList{
- \t\t\t\t\t"cpu":    {i: resource.int64Amount{value: 500, scale: -3}, s: "500m", Format: "DecimalSI"},
+ \t\t\t\t\t"cpu":    {i: resource.int64Amount{value: 1}, s: "1", Format: "DecimalSI"},
  \t\t\t\t\t"memory": {i: {...}, Format: "BinarySI"},
  \t\t\t\t},
  \t\t\t\tRequests: {"cpu": {i: {...}, s: "250m", Format: "DecimalSI"}, "memory": {i: {...}, Format: "BinarySI"}},
  \t\t\t\tClaims:   nil,
  \t\t\t},
  \t\t\tResizePolicy:  nil,
  \t\t\tRestartPolicy: nil,
  \t\t\t... // 13 identical fields
  \t\t},
  \t},
  \tEphemeralContainers: nil,
  \tRestartPolicy:       "Always",
  \t... // 29 identical fields
  }
"""

HOST_NETWORK = """\
  core.PodSpec{
  \t... // 10 identical fields
  \tAutomountServiceAccountToken: nil,
  \tNodeName:                     "",
  \tSecurityContext: &core.PodSecurityContext{
- \t\tHostNetwork: false,
+ \t\tHostNetwork: true,
  \t\tHostPID:     false,
  \t\tHostIPC:     false,
  \t\t... // 15 identical fields
  \t},
  \tImagePullSecrets: nil,
  \tHostname:         "",
  \t... // 19 identical fields
  }
"""

SECURITY_CONTEXT = """\
  core.PodSpec{
  \tVolumes:        nil,
  \tInitContainers: nil,
  \tContainers: []core.Container{
  \t\t{
  \t\t\t... // 18 identical fields
  \t\t\tTerminationMessagePolicy: "File",
  \t\t\tImagePullPolicy:          "IfNotPresent",
- \t\t\tSecurityContext:          nil,
+ \t\t\tSecurityContext: &core.SecurityContext{
+ \t\t\t\tCapabilities: &core.Capabilities{Drop: []core.Capability{"ALL"}},
+ \t\t\t\tPrivileged:   &true,
+ \t\t\t},
  \t\t\tStdin:     false,
  \t\t\tStdinOnce: false,
  \t\t\tTTY:       false,
  \t\t},
  \t},
  \tEphemeralContainers: nil,
  \tRestartPolicy:       "Always",
  \t... // 29 identical fields
  }
"""

NODE_AFFINITY = """\
  core.PodSpec{
  \t... // 15 identical fields
  \tSubdomain:         "",
  \tSetHostnameAsFQDN: nil,
  \tAffinity: &core.Affinity{
  \t\tNodeAffinity: &core.NodeAffinity{
  \t\t\tRequiredDuringSchedulingIgnoredDuringExecution: &core.NodeSelector{
  \t\t\t\tNodeSelectorTerms: []core.NodeSelectorTerm{
  \t\t\t\t\t{
  \t\t\t\t\t\tMatchExpressions: []core.NodeSelectorRequirement{
  \t\t\t\t\t\t\t{
  \t\t\t\t\t\t\t\tKey:      "k",
  \t\t\t\t\t\t\t\tOperator: "In",
- \t\t\t\t\t\t\t\tValues:   []string{"a"},
+ \t\t\t\t\t\t\t\tValues:   []string{"b"},
  \t\t\t\t\t\t\t},
  \t\t\t\t\t\t},
  \t\t\t\t\t\tMatchFields: nil,
  \t\t\t\t\t},
  \t\t\t\t},
  \t\t\t},
  \t\t\tPreferredDuringSchedulingIgnoredDuringExecution: nil,
  \t\t},
  \t\tPodAffinity:     nil,
  \t\tPodAntiAffinity: nil,
  \t},
  \tSchedulerName: "",
  \tTolerations:   nil,
  \t... // 14 identical fields
  }
"""

EPHEMERAL = """\
  core.EphemeralContainer{
  \tEphemeralContainerCommon: core.EphemeralContainerCommon{
  \t\tName:  "dbg",
  \t\tImage: "busybox",
  \t\tCommand: []string{
  \t\t\t"sh",
+ \t\t\t"-c",
+ \t\t\t"x",
  \t\t},
  \t\tArgs:       nil,
  \t\tWorkingDir: "",
  \t\t... // 14 identical fields
  \t\tImagePullPolicy: "IfNotPresent",
  \t\tSecurityContext: nil,
- \t\tStdin:           true,
+ \t\tStdin:           false,
  \t\tStdinOnce:       false,
  \t\tTTY:             true,
  \t},
  \tTargetContainerName: "app",
  }
"""


def test_runtime_class_change_reads_as_upstreams():
    assert godiff.pod_spec_diff(BASE, changed(runtimeClassName="standard")) == RUNTIME_CLASS


def test_overhead_entries_show_quantities_inside():
    assert godiff.pod_spec_diff(BASE, changed(overhead={"cpu": "50m", "memory": "64Mi"})) == OVERHEAD


def test_node_selector_entries():
    assert godiff.pod_spec_diff(BASE, changed(nodeSelector={"runtime": "kata", "zone": "a"})) == NODE_SELECTOR


def test_container_resources_nested_in_the_container_list():
    new = copy.deepcopy(BASE)
    new["containers"][0]["resources"]["limits"]["cpu"] = "1"
    assert godiff.pod_spec_diff(BASE, new) == CPU_LIMIT


def test_host_network_lives_in_the_internal_security_context():
    assert godiff.pod_spec_diff(BASE, changed(hostNetwork=True)) == HOST_NETWORK


def test_long_inserted_value_goes_multi_line():
    new = copy.deepcopy(BASE)
    new["containers"][0]["securityContext"] = {"privileged": True, "capabilities": {"drop": ["ALL"]}}
    assert godiff.pod_spec_diff(BASE, new) == SECURITY_CONTEXT


def test_ephemeral_container_change():
    ec = {"name": "dbg", "image": "busybox", "command": ["sh"], "targetContainerName": "app",
          "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
          "imagePullPolicy": "IfNotPresent", "resources": {}, "stdin": True, "tty": True}
    assert godiff.ephemeral_container_diff(ec, dict(ec, command=["sh", "-c", "x"], stdin=False)) == EPHEMERAL


def test_equal_values_have_no_diff():
    assert godiff.pod_spec_diff(BASE, copy.deepcopy(BASE)) == ""
    # empty lists and maps are nil once stored; 1000m is 1
    assert godiff.pod_spec_diff(BASE, changed(imagePullSecrets=[], nodeSelector={"runtime": "gvisor"})) == ""
    assert godiff.pod_spec_diff(changed(overhead={"cpu": "1"}), changed(overhead={"cpu": "1000m"})) == ""


def test_quantities_keep_their_string_only_when_canonical():
    assert godiff.go_quantity("250m")[:4] == (250, -3, "250m", "DecimalSI")
    assert godiff.go_quantity("1000m")[:4] == (1000, -3, "", "DecimalSI")
    assert godiff.go_quantity("1Gi")[:4] == (1 << 30, 0, "1Gi", "BinarySI")
    assert godiff.go_quantity("160Mi")[:4] == (160 << 20, 0, "", "BinarySI")   # 160 & 7 == 0: not kept
    assert godiff.go_quantity("0.5")[:4] == (5, -1, "", "DecimalSI")


def test_pod_update_refusal_carries_the_diff():
    old = {"metadata": {"name": "p", "namespace": "d", "resourceVersion": "1"}, "spec": copy.deepcopy(BASE)}
    new = copy.deepcopy(old)
    new["spec"]["runtimeClassName"] = "standard"
    new["spec"]["containers"][0]["image"] = "busybox:1.37"   # the image may change: munged away
    errs = pod.validate_update(new, old)
    assert [str(e) for e in errs] == ["spec: Forbidden: " + pod.UPDATE_FORBIDDEN + "\n" + RUNTIME_CLASS]


def test_adding_a_container_stops_at_the_count():
    old = {"metadata": {"name": "p", "namespace": "d", "resourceVersion": "1"}, "spec": copy.deepcopy(BASE)}
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "side", "image": "busybox"})
    assert [str(e) for e in pod.validate_update(new, old)] == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_scheduling_gates_may_only_go():
    old = {"metadata": {"name": "p", "namespace": "d", "resourceVersion": "1"},
           "spec": dict(copy.deepcopy(BASE), schedulingGates=[{"name": "a"}])}
    gone = copy.deepcopy(old)
    gone["spec"].pop("schedulingGates")
    assert pod.validate_update(gone, old) == []
    more = copy.deepcopy(old)
    more["spec"]["schedulingGates"] = [{"name": "a"}, {"name": "b"}]
    assert [str(e) for e in pod.validate_update(more, old)] == [
        "spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate 'b'"]


def test_node_affinity_nests_as_the_internal_types():
    term = {"matchExpressions": [{"key": "k", "operator": "In", "values": ["a"]}]}
    old = {"containers": [{"name": "a", "image": "x"}],
           "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}}
    new = copy.deepcopy(old)
    new["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = ["b"]
    assert godiff.pod_spec_diff(old, new) == NODE_AFFINITY


def test_existing_tolerations_stay_and_are_left_out_of_the_diff():
    old = {"metadata": {"name": "p", "namespace": "d", "resourceVersion": "1"}, "spec": copy.deepcopy(BASE)}
    changed_effect = copy.deepcopy(old)
    changed_effect["spec"]["tolerations"][0]["key"] = "node.kubernetes.io/other"
    assert [str(e) for e in pod.validate_update(changed_effect, old)] == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
    seconds_and_added = copy.deepcopy(old)
    seconds_and_added["spec"]["tolerations"][0]["tolerationSeconds"] = 60
    seconds_and_added["spec"]["tolerations"].append({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})
    assert pod.validate_update(seconds_and_added, old) == []
