"""The diff upstream's validation prints when it refuses a Pod update: go-cmp's report of two internal Go values.

kube-apiserver appends `cmp.Diff(oldPod.Spec, mungedPodSpec)` (github.com/google/go-cmp v0.6.0, the version
1.32 vendors) to `pod updates may not change fields other than ...`, and the same for a changed ephemeral
container. Scripts match that text, so it is rendered here from what go-cmp's reporter does, reimplemented for
the values this system holds: JSON objects, converted to the internal `core` types' field names, order and
nesting (e.g. `hostNetwork` lives in `core.PodSecurityContext` there).

Checked against go-cmp itself (a Go program with the same types; see tests/unit/test_godiff.py). Known limits:
element moves inside lists are paired position by position (go-cmp's edit script may pick another pairing,
and picks at random between two search directions anyway), and strings of 32+ characters that differ are
shown whole instead of as a line diff.
"""
from __future__ import annotations

import json
import re

# ---- Go types ----------------------------------------------------------------------------------------------


class T:
    """A Go type: kind is struct, ptr, slice, map, string, int, bool or quantity."""
    __slots__ = ("kind", "name", "fields", "elem", "key", "generic")

    def __init__(self, kind, name=None, fields=None, elem=None, key=None, generic=False):
        self.kind, self.name, self.fields, self.elem, self.key, self.generic = kind, name, fields, elem, key, generic

    def type_string(self) -> str:
        if self.name:
            return self.name
        if self.kind == "ptr":
            return "*" + self.elem.type_string()
        if self.kind == "slice":
            return "[]" + self.elem.type_string()
        if self.kind == "map":
            return f"map[{self.key.type_string()}]{self.elem.type_string()}"
        return {"int": "int64"}.get(self.kind, self.kind)


STRING, INT, BOOL = T("string"), T("int"), T("bool")


def named(kind: str, name: str) -> T:
    return T(kind, name)


def ptr(t: T) -> T:
    return T("ptr", elem=t)


def slice_of(t: T) -> T:
    return T("slice", elem=t)


def struct(name: str, *fields) -> T:
    """fields: (GoName, jsonName, type) or (GoName, None, type) for an embedded struct flattened in JSON."""
    return T("struct", name, list(fields))


def generic(name: str) -> T:
    """A struct this module does not list field by field: its fields are the JSON keys, in order."""
    return T("struct", name, None, generic=True)


QUANTITY = T("quantity", "resource.Quantity")
INT64_AMOUNT = struct("resource.int64Amount", ("value", "", INT), ("scale", "", named("int", "resource.Scale")))
QUANTITY_FORMAT = named("string", "resource.Format")
RESOURCE_LIST = T("map", "core.ResourceList", key=named("string", "core.ResourceName"), elem=QUANTITY)
STR_MAP = T("map", key=STRING, elem=STRING)
STR_LIST = slice_of(STRING)

RESOURCE_REQUIREMENTS = struct(
    "core.ResourceRequirements", ("Limits", "limits", RESOURCE_LIST), ("Requests", "requests", RESOURCE_LIST),
    ("Claims", "claims", slice_of(struct("core.ResourceClaim", ("Name", "name", STRING), ("Request", "request", STRING)))))
SECCOMP = struct("core.SeccompProfile", ("Type", "type", named("string", "core.SeccompProfileType")),
                 ("LocalhostProfile", "localhostProfile", ptr(STRING)))
APPARMOR = struct("core.AppArmorProfile", ("Type", "type", named("string", "core.AppArmorProfileType")),
                  ("LocalhostProfile", "localhostProfile", ptr(STRING)))
SELINUX = struct("core.SELinuxOptions", ("User", "user", STRING), ("Role", "role", STRING), ("Type", "type", STRING),
                 ("Level", "level", STRING))
SECURITY_CONTEXT = struct(
    "core.SecurityContext",
    ("Capabilities", "capabilities", ptr(struct("core.Capabilities", ("Add", "add", slice_of(named("string", "core.Capability"))),
                                                ("Drop", "drop", slice_of(named("string", "core.Capability")))))),
    ("Privileged", "privileged", ptr(BOOL)), ("SELinuxOptions", "seLinuxOptions", ptr(SELINUX)),
    ("WindowsOptions", "windowsOptions", ptr(generic("core.WindowsSecurityContextOptions"))),
    ("RunAsUser", "runAsUser", ptr(INT)), ("RunAsGroup", "runAsGroup", ptr(INT)), ("RunAsNonRoot", "runAsNonRoot", ptr(BOOL)),
    ("ReadOnlyRootFilesystem", "readOnlyRootFilesystem", ptr(BOOL)),
    ("AllowPrivilegeEscalation", "allowPrivilegeEscalation", ptr(BOOL)),
    ("ProcMount", "procMount", ptr(named("string", "core.ProcMountType"))), ("SeccompProfile", "seccompProfile", ptr(SECCOMP)),
    ("AppArmorProfile", "appArmorProfile", ptr(APPARMOR)))
PROBE = generic("core.Probe")
_CONTAINER_FIELDS = [
    ("Name", "name", STRING), ("Image", "image", STRING), ("Command", "command", STR_LIST), ("Args", "args", STR_LIST),
    ("WorkingDir", "workingDir", STRING),
    ("Ports", "ports", slice_of(struct("core.ContainerPort", ("Name", "name", STRING), ("HostPort", "hostPort", INT),
                                       ("ContainerPort", "containerPort", INT), ("Protocol", "protocol", named("string", "core.Protocol")),
                                       ("HostIP", "hostIP", STRING)))),
    ("EnvFrom", "envFrom", slice_of(generic("core.EnvFromSource"))),
    ("Env", "env", slice_of(struct("core.EnvVar", ("Name", "name", STRING), ("Value", "value", STRING),
                                   ("ValueFrom", "valueFrom", ptr(generic("core.EnvVarSource")))))),
    ("Resources", "resources", RESOURCE_REQUIREMENTS),
    ("ResizePolicy", "resizePolicy", slice_of(struct("core.ContainerResizePolicy", ("ResourceName", "resourceName", named("string", "core.ResourceName")),
                                                     ("RestartPolicy", "restartPolicy", named("string", "core.ResourceResizeRestartPolicy"))))),
    ("RestartPolicy", "restartPolicy", ptr(named("string", "core.ContainerRestartPolicy"))),
    ("VolumeMounts", "volumeMounts", slice_of(struct(
        "core.VolumeMount", ("Name", "name", STRING), ("ReadOnly", "readOnly", BOOL),
        ("RecursiveReadOnly", "recursiveReadOnly", ptr(named("string", "core.RecursiveReadOnlyMode"))),
        ("MountPath", "mountPath", STRING), ("SubPath", "subPath", STRING),
        ("MountPropagation", "mountPropagation", ptr(named("string", "core.MountPropagationMode"))),
        ("SubPathExpr", "subPathExpr", STRING)))),
    ("VolumeDevices", "volumeDevices", slice_of(struct("core.VolumeDevice", ("Name", "name", STRING), ("DevicePath", "devicePath", STRING)))),
    ("LivenessProbe", "livenessProbe", ptr(PROBE)), ("ReadinessProbe", "readinessProbe", ptr(PROBE)),
    ("StartupProbe", "startupProbe", ptr(PROBE)), ("Lifecycle", "lifecycle", ptr(generic("core.Lifecycle"))),
    ("TerminationMessagePath", "terminationMessagePath", STRING),
    ("TerminationMessagePolicy", "terminationMessagePolicy", named("string", "core.TerminationMessagePolicy")),
    ("ImagePullPolicy", "imagePullPolicy", named("string", "core.PullPolicy")),
    ("SecurityContext", "securityContext", ptr(SECURITY_CONTEXT)),
    ("Stdin", "stdin", BOOL), ("StdinOnce", "stdinOnce", BOOL), ("TTY", "tty", BOOL),
]
CONTAINER = struct("core.Container", *_CONTAINER_FIELDS)
EPHEMERAL_CONTAINER = struct("core.EphemeralContainer",
                             ("EphemeralContainerCommon", None, struct("core.EphemeralContainerCommon", *_CONTAINER_FIELDS)),
                             ("TargetContainerName", "targetContainerName", STRING))
# upstream's VolumeSource, in its order (each source a pointer to its own struct)
_VOLUME_SOURCES = ["hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
                   "glusterfs", "persistentVolumeClaim", "rbd", "quobyte", "flexVolume", "cinder", "cephfs", "flocker",
                   "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "azureDisk", "photonPersistentDisk",
                   "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image"]
_SOURCE_GO = {"hostPath": "HostPath", "emptyDir": "EmptyDir", "gcePersistentDisk": "GCEPersistentDisk",
              "awsElasticBlockStore": "AWSElasticBlockStore", "gitRepo": "GitRepo", "secret": "Secret", "nfs": "NFS",
              "iscsi": "ISCSI", "glusterfs": "Glusterfs", "persistentVolumeClaim": "PersistentVolumeClaim", "rbd": "RBD",
              "quobyte": "Quobyte", "flexVolume": "FlexVolume", "cinder": "Cinder", "cephfs": "CephFS", "flocker": "Flocker",
              "downwardAPI": "DownwardAPI", "fc": "FC", "azureFile": "AzureFile", "configMap": "ConfigMap",
              "vsphereVolume": "VsphereVolume", "azureDisk": "AzureDisk", "photonPersistentDisk": "PhotonPersistentDisk",
              "projected": "Projected", "portworxVolume": "PortworxVolume", "scaleIO": "ScaleIO", "storageos": "StorageOS",
              "csi": "CSI", "ephemeral": "Ephemeral", "image": "Image"}
_SOURCE_TYPE = {"iscsi": "ISCSIVolumeSource", "rbd": "RBDVolumeSource", "fc": "FCVolumeSource", "csi": "CSIVolumeSource",
                "downwardAPI": "DownwardAPIVolumeSource", "scaleIO": "ScaleIOVolumeSource", "storageos": "StorageOSVolumeSource",
                "vsphereVolume": "VsphereVirtualDiskVolumeSource", "photonPersistentDisk": "PhotonPersistentDiskVolumeSource",
                "cephfs": "CephFSVolumeSource", "nfs": "NFSVolumeSource", "gcePersistentDisk": "GCEPersistentDiskVolumeSource",
                "awsElasticBlockStore": "AWSElasticBlockStoreVolumeSource", "image": "ImageVolumeSource"}
VOLUME = struct("core.Volume", ("Name", "name", STRING), ("VolumeSource", None, struct(
    "core.VolumeSource", *[(_SOURCE_GO[j], j, ptr(generic("core." + _SOURCE_TYPE.get(j, _SOURCE_GO[j] + "VolumeSource"))))
                           for j in _VOLUME_SOURCES])))
TOLERATION = struct("core.Toleration", ("Key", "key", STRING), ("Operator", "operator", named("string", "core.TolerationOperator")),
                    ("Value", "value", STRING), ("Effect", "effect", named("string", "core.TaintEffect")),
                    ("TolerationSeconds", "tolerationSeconds", ptr(INT)))
NODE_SELECTOR_REQUIREMENT = struct("core.NodeSelectorRequirement", ("Key", "key", STRING),
                                   ("Operator", "operator", named("string", "core.NodeSelectorOperator")), ("Values", "values", STR_LIST))
NODE_SELECTOR_TERM = struct("core.NodeSelectorTerm", ("MatchExpressions", "matchExpressions", slice_of(NODE_SELECTOR_REQUIREMENT)),
                            ("MatchFields", "matchFields", slice_of(NODE_SELECTOR_REQUIREMENT)))
AFFINITY = struct(
    "core.Affinity",
    ("NodeAffinity", "nodeAffinity", ptr(struct(
        "core.NodeAffinity",
        ("RequiredDuringSchedulingIgnoredDuringExecution", "requiredDuringSchedulingIgnoredDuringExecution",
         ptr(struct("core.NodeSelector", ("NodeSelectorTerms", "nodeSelectorTerms", slice_of(NODE_SELECTOR_TERM))))),
        ("PreferredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution",
         slice_of(struct("core.PreferredSchedulingTerm", ("Weight", "weight", INT), ("Preference", "preference", NODE_SELECTOR_TERM))))))),
    ("PodAffinity", "podAffinity", ptr(generic("core.PodAffinity"))),
    ("PodAntiAffinity", "podAntiAffinity", ptr(generic("core.PodAntiAffinity"))))
POD_SECURITY_CONTEXT = struct(
    "core.PodSecurityContext", ("HostNetwork", "hostNetwork", BOOL), ("HostPID", "hostPID", BOOL), ("HostIPC", "hostIPC", BOOL),
    ("ShareProcessNamespace", "shareProcessNamespace", ptr(BOOL)), ("HostUsers", "hostUsers", ptr(BOOL)),
    ("SELinuxOptions", "seLinuxOptions", ptr(SELINUX)),
    ("WindowsOptions", "windowsOptions", ptr(generic("core.WindowsSecurityContextOptions"))),
    ("RunAsUser", "runAsUser", ptr(INT)), ("RunAsGroup", "runAsGroup", ptr(INT)), ("RunAsNonRoot", "runAsNonRoot", ptr(BOOL)),
    ("SupplementalGroups", "supplementalGroups", slice_of(INT)),
    ("SupplementalGroupsPolicy", "supplementalGroupsPolicy", ptr(named("string", "core.SupplementalGroupsPolicy"))),
    ("FSGroup", "fsGroup", ptr(INT)), ("FSGroupChangePolicy", "fsGroupChangePolicy", ptr(named("string", "core.PodFSGroupChangePolicy"))),
    ("Sysctls", "sysctls", slice_of(struct("core.Sysctl", ("Name", "name", STRING), ("Value", "value", STRING)))),
    ("SeccompProfile", "seccompProfile", ptr(SECCOMP)), ("AppArmorProfile", "appArmorProfile", ptr(APPARMOR)),
    ("SELinuxChangePolicy", "seLinuxChangePolicy", ptr(named("string", "core.PodSELinuxChangePolicy"))))
POD_SPEC = struct(
    "core.PodSpec",
    ("Volumes", "volumes", slice_of(VOLUME)), ("InitContainers", "initContainers", slice_of(CONTAINER)),
    ("Containers", "containers", slice_of(CONTAINER)),
    ("EphemeralContainers", "ephemeralContainers", slice_of(EPHEMERAL_CONTAINER)),
    ("RestartPolicy", "restartPolicy", named("string", "core.RestartPolicy")),
    ("TerminationGracePeriodSeconds", "terminationGracePeriodSeconds", ptr(INT)),
    ("ActiveDeadlineSeconds", "activeDeadlineSeconds", ptr(INT)), ("DNSPolicy", "dnsPolicy", named("string", "core.DNSPolicy")),
    ("NodeSelector", "nodeSelector", STR_MAP), ("ServiceAccountName", "serviceAccountName", STRING),
    ("AutomountServiceAccountToken", "automountServiceAccountToken", ptr(BOOL)), ("NodeName", "nodeName", STRING),
    ("SecurityContext", "securityContext", ptr(POD_SECURITY_CONTEXT)),
    ("ImagePullSecrets", "imagePullSecrets", slice_of(struct("core.LocalObjectReference", ("Name", "name", STRING)))),
    ("Hostname", "hostname", STRING), ("Subdomain", "subdomain", STRING), ("SetHostnameAsFQDN", "setHostnameAsFQDN", ptr(BOOL)),
    ("Affinity", "affinity", ptr(AFFINITY)), ("SchedulerName", "schedulerName", STRING),
    ("Tolerations", "tolerations", slice_of(TOLERATION)),
    ("HostAliases", "hostAliases", slice_of(struct("core.HostAlias", ("IP", "ip", STRING), ("Hostnames", "hostnames", STR_LIST)))),
    ("PriorityClassName", "priorityClassName", STRING), ("Priority", "priority", ptr(INT)),
    ("PreemptionPolicy", "preemptionPolicy", ptr(named("string", "core.PreemptionPolicy"))),
    ("DNSConfig", "dnsConfig", ptr(struct("core.PodDNSConfig", ("Nameservers", "nameservers", STR_LIST), ("Searches", "searches", STR_LIST),
                                          ("Options", "options", slice_of(struct("core.PodDNSConfigOption", ("Name", "name", STRING),
                                                                                 ("Value", "value", ptr(STRING)))))))),
    ("ReadinessGates", "readinessGates", slice_of(struct("core.PodReadinessGate", ("ConditionType", "conditionType", named("string", "core.PodConditionType"))))),
    ("RuntimeClassName", "runtimeClassName", ptr(STRING)), ("Overhead", "overhead", RESOURCE_LIST),
    ("EnableServiceLinks", "enableServiceLinks", ptr(BOOL)),
    ("TopologySpreadConstraints", "topologySpreadConstraints", slice_of(generic("core.TopologySpreadConstraint"))),
    ("OS", "os", ptr(struct("core.PodOS", ("Name", "name", named("string", "core.OSName"))))),
    ("SchedulingGates", "schedulingGates", slice_of(struct("core.PodSchedulingGate", ("Name", "name", STRING)))),
    ("ResourceClaims", "resourceClaims", slice_of(struct("core.PodResourceClaim", ("Name", "name", STRING),
                                                         ("ResourceClaimName", "resourceClaimName", ptr(STRING)),
                                                         ("ResourceClaimTemplateName", "resourceClaimTemplateName", ptr(STRING))))),
    ("Resources", "resources", ptr(RESOURCE_REQUIREMENTS)))
_HOST_FIELDS = ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "hostUsers")

# ---- JSON -> Go values ---------------------------------------------------------------------------------------
# struct: dict GoName -> value (every field); ptr: None or the value; slice / map: None (nil) or a non-empty
# list / dict (upstream's storage decodes empty lists and maps as nil); quantity: (value, scale, s, format).

_ACRONYMS = {"ip": "IP", "id": "ID", "uid": "UID", "url": "URL", "tls": "TLS", "dns": "DNS", "api": "API", "os": "OS",
             "fs": "FS", "wwids": "WWIDs", "lun": "Lun", "tcp": "TCP", "grpc": "GRPC", "http": "HTTP"}


def go_name(json_name: str) -> str:
    parts = re.findall(r"[a-z]+|[A-Z][a-z]*|\d+|[A-Z]+(?![a-z])", json_name)
    return "".join(_ACRONYMS.get(p.lower(), p[:1].upper() + p[1:]) if i == 0 else
                   _ACRONYMS.get(p.lower(), p) for i, p in enumerate(parts)) or json_name


def _generic_type(v, json_name: str = "") -> T:
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return INT
    if isinstance(v, str):
        return STRING
    if isinstance(v, list):
        return slice_of(_generic_type(v[0], json_name) if v else STRING)
    if isinstance(v, dict):   # named after its field, as most of core's types are (nodeAffinity: core.NodeAffinity)
        return generic("core." + go_name(json_name)) if json_name else generic("")
    return STRING


_QTY = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?([a-zA-Z]*)$")
_DEC_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_EXP = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def go_quantity(s) -> tuple:
    """apimachinery's ParseQuantity fast path: (value, scale, s kept when canonical, Format)."""
    s = str(s)
    q = _parse_fast(s)
    try:
        from . import quantity
        text = quantity.canonical(s)
    except ValueError:
        text = s
    return q + (text,)


def _parse_fast(s: str) -> tuple:
    if s == "0":
        return (0, 0, "0", "DecimalSI")
    m = _QTY.match(s.strip())
    if not m:
        return (0, 0, s, "DecimalSI")
    sign, num, denom, suf = m.group(1), m.group(2) or "", m.group(3) or "", m.group(4)
    positive = sign != "-"
    if suf in _BIN_EXP:
        fmt, exp = "BinarySI", _BIN_EXP[suf]
        if denom or not num:
            return (0, 0, "", fmt)   # the slow path (inf.Dec): shown without its value
        value = int(num)
        result = (value << exp) * (1 if positive else -1)
        keep = exp % 10 == 0 and (value & 7) != 0
        return (result, 0, s if keep else "", fmt)
    if suf in _DEC_EXP:
        fmt, scale = "DecimalSI", _DEC_EXP[suf]
    else:
        em = re.match(r"^[eE]([+-]?\d+)$", suf)
        if not em:
            return (0, 0, "", "DecimalSI")
        fmt, scale = "DecimalExponent", int(em.group(1))
    scale -= len(denom)
    shifted = (num + denom).lstrip("+") or "0"
    if scale < -9 or len(shifted.lstrip("0")) > 18:
        return (0, 0, "", fmt)
    value = int(shifted) * (1 if positive else -1)
    keep = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
    return (value, scale, s if keep else "", fmt)


ZERO_Q = (0, 0, "", "", "0")


def _q_numeric(q: tuple):
    from fractions import Fraction
    return Fraction(q[0]) * (Fraction(10) ** q[1])


def from_json(t: T, v):
    """The Go value of JSON v as type t (None / missing -> the zero value)."""
    k = t.kind
    if k == "struct":
        v = v if isinstance(v, dict) else {}
        if t.generic:
            fields = [(go_name(j), j, _generic_type(x, j)) for j, x in v.items() if x not in (None, "", [], {}, 0, False)]
            return _GenericStruct(fields, {g: from_json(ft, v.get(j)) for g, j, ft in fields})
        return {g: from_json(ft, v if j is None else v.get(j)) for g, j, ft in t.fields}
    if k == "ptr":
        return None if v is None else from_json(t.elem, v)
    if k == "slice":
        return [from_json(t.elem, x) for x in v] if isinstance(v, list) and v else None
    if k == "map":
        return {str(kk): from_json(t.elem, x) for kk, x in v.items()} if isinstance(v, dict) and v else None
    if k == "quantity":
        return go_quantity(v) if v is not None else ZERO_Q
    if k == "int":
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0
    if k == "bool":
        return bool(v) if isinstance(v, bool) else False
    return v if isinstance(v, str) else ("" if v is None else json.dumps(v))


class _GenericStruct(dict):
    """A generic struct's value carries its own field list (its JSON keys)."""

    def __init__(self, fields, values):
        super().__init__(values)
        self.fields = fields


def pod_spec(spec: dict) -> dict:
    """A v1 PodSpec as the internal core.PodSpec: host namespaces move into the security context."""
    spec = dict(spec or {})
    host = {k: spec.pop(k) for k in _HOST_FIELDS if k in spec}
    spec.pop("serviceAccount", None)
    if any(v not in (None, False) for v in host.values()):
        spec["securityContext"] = {**(spec.get("securityContext") or {}), **host}
    return from_json(POD_SPEC, spec)


# ---- comparing: go-cmp's value tree --------------------------------------------------------------------------

MISSING = object()


class Node:
    __slots__ = ("t", "x", "y", "same", "diff", "compared", "children", "depth", "records", "value")

    def __init__(self, t, x, y):
        self.t, self.x, self.y = t, x, y
        self.same = self.diff = self.compared = self.children = self.depth = 0
        self.records = None    # [(key, Node)]
        self.value = None      # the pointee's Node

    def add(self, key, child, as_value=False):
        if as_value:
            self.value = child
        else:
            self.records.append((key, child))
        self.same += child.same
        self.diff += child.diff
        self.compared += child.compared
        self.children += child.children + 1
        self.depth = max(self.depth, child.depth + 1)


def _fields(t: T, x, y):
    if not t.generic:
        return [(g, ft) for g, _, ft in t.fields]
    seen, out = set(), []
    for v in (x, y):
        for g, _, ft in getattr(v, "fields", []):
            if g not in seen:
                seen.add(g)
                out.append((g, ft))
    return out


def compare(t: T, x, y) -> Node:
    n = Node(t, x, y)
    if x is MISSING or y is MISSING:
        _leaf(n, (x is MISSING) == (y is MISSING))
    elif t.kind == "quantity":
        _leaf(n, _q_numeric(x) == _q_numeric(y))
        n.compared = 1
    elif t.kind == "ptr":
        if x is None or y is None:
            _leaf(n, x is None and y is None)
        else:
            n.add(None, compare(t.elem, x, y), as_value=True)
    elif t.kind == "struct":
        n.records = []
        for g, ft in _fields(t, x, y):
            n.add(g, compare(ft, x.get(g, _zero(ft)), y.get(g, _zero(ft))))
    elif t.kind == "slice":
        if x is None or y is None:
            _leaf(n, x is None and y is None)
        else:
            n.records = []
            for child in _pairs(t.elem, x, y):
                n.add(None, child)
    elif t.kind == "map":
        if x is None or y is None:
            _leaf(n, x is None and y is None)
        else:
            n.records = []
            for k in sorted(set(x) | set(y)):
                n.add(k, compare(t.elem, x.get(k, MISSING), y.get(k, MISSING)))
    else:
        _leaf(n, x == y)
    return n


def _leaf(n: Node, equal: bool) -> None:
    if equal:
        n.same = 1
    else:
        n.diff = 1


def _zero(t: T):
    return {"struct": {}, "quantity": ZERO_Q, "int": 0, "bool": False, "string": ""}.get(t.kind)


def _pairs(t: T, xs: list, ys: list) -> list[Node]:
    """The edit script's nodes: equal elements kept in order; others paired by position (modified) when similar,
    else removed / inserted."""
    i = j = 0
    out = []
    while i < len(xs) or j < len(ys):
        if i < len(xs) and j < len(ys):
            r = compare(t, xs[i], ys[j])
            if r.diff == 0 or r.same + 1 >= r.diff or len(xs) - i == len(ys) - j:
                out.append(r)
                i, j = i + 1, j + 1
                continue
        if i < len(xs) and (len(xs) - i > len(ys) - j or j >= len(ys)):
            out.append(compare(t, xs[i], MISSING))
            i += 1
        else:
            out.append(compare(t, MISSING, ys[j]))
            j += 1
    return out


def _is_zero(t: T, v) -> bool:
    if v is MISSING:
        return False
    if t.kind == "struct":
        return all(_is_zero(ft, v.get(g, _zero(ft))) for g, ft in _fields(t, v, v))
    if t.kind == "quantity":
        return v[:4] == ZERO_Q[:4]
    return v in (None, 0, "", False) and not (v is True)


# ---- text nodes (go-cmp's textLine / textWrap / textList) ----------------------------------------------------

UNKNOWN, IDENTICAL, REMOVED, INSERTED = 0, 1, 2, 3
_MARK = {UNKNOWN: "  ", IDENTICAL: "  ", REMOVED: "- ", INSERTED: "+ "}
MAX_COLUMN = 80
ELLIPSIS = "..."


class Line(str):
    pass


class Wrap:
    __slots__ = ("prefix", "value", "suffix")

    def __init__(self, prefix, value, suffix=""):
        self.prefix, self.value, self.suffix = prefix, value, suffix

    def length(self):
        return len(self.prefix) + length(self.value) + len(self.suffix)


class Rec:
    __slots__ = ("diff", "key", "value", "elide_comma", "comment")

    def __init__(self, value, key="", diff=UNKNOWN, elide_comma=False, comment=None):
        self.diff, self.key, self.value, self.elide_comma, self.comment = diff, key, value, elide_comma, comment


class Stats:
    __slots__ = ("name", "ignored", "identical", "removed", "inserted", "modified")

    def __init__(self, name, identical=0, removed=0, inserted=0, modified=0):
        self.name, self.ignored, self.identical = name, 0, identical
        self.removed, self.inserted, self.modified = removed, inserted, modified

    def ndiff(self):
        return self.removed + self.inserted + self.modified

    def __str__(self):
        labels = ("ignored", "identical", "removed", "inserted", "modified")
        counts = (self.ignored, self.identical, self.removed, self.inserted, self.modified)
        parts = [f"{n} {label}" for n, label in zip(counts, labels) if n]
        name = self.name
        if sum(counts) > 1:
            name += "s"
            if name.endswith("ys"):
                name = name[:-2] + "ies"
        if not parts:
            return ""
        if len(parts) <= 2:
            return " and ".join(parts) + " " + name
        return ", ".join(parts[:-1]) + ", and " + parts[-1] + " " + name


def length(n) -> int:
    if isinstance(n, Line):
        return len(n)
    if isinstance(n, Wrap):
        return n.length()
    total = 0
    for i, r in enumerate(n):
        total += len(r.key) + (2 if r.key else 0) + length(r.value) + (2 if i < len(n) - 1 else 0)
    return total


def equal(a, b) -> bool:
    if isinstance(a, Line) or isinstance(b, Line):
        return isinstance(a, Line) and isinstance(b, Line) and str(a) == str(b)
    if isinstance(a, Wrap) or isinstance(b, Wrap):
        return (isinstance(a, Wrap) and isinstance(b, Wrap) and a.prefix == b.prefix and a.suffix == b.suffix
                and equal(a.value, b.value))
    return len(a) == len(b) and all(r1.diff == r2.diff and r1.key == r2.key and equal(r1.value, r2.value)
                                    and str(r1.comment or "") == str(r2.comment or "") for r1, r2 in zip(a, b))


def append_ellipsis(lst: list, stats: Stats | None = None) -> None:
    if not lst or not (isinstance(lst[-1].value, Line) and lst[-1].value == ELLIPSIS):
        lst.append(Rec(Line(ELLIPSIS), elide_comma=True, comment=stats))
    elif stats is not None and isinstance(lst[-1].comment, Stats):
        c = lst[-1].comment
        c.identical += stats.identical
        c.removed += stats.removed
        c.inserted += stats.inserted
        c.modified += stats.modified


def _compact(n, d):
    """formatCompactTo: (text, node) with lists that fit on one line replaced by a Line."""
    if isinstance(n, Line):
        return str(n), n
    if isinstance(n, Wrap):
        text, inner = _compact(n.value, d)
        n.value = inner
        out = n.prefix + text + n.suffix
        return out, (Line(out) if isinstance(inner, Line) else n)
    lst = list(n)
    parts, multi = [], False
    for i, r in enumerate(lst):
        if r.diff in (REMOVED, INSERTED):
            multi = True
        text, node = _compact(r.value, d if r.diff == UNKNOWN else r.diff)
        lst[i] = Rec(node, r.key, r.diff, r.elide_comma, r.comment)
        parts.append((r.key + ": " if r.key else "") + text)
        if not isinstance(node, Line) or r.comment is not None:
            multi = True
    out = ", ".join(parts)
    if d in (REMOVED, INSERTED) and len(out) > MAX_COLUMN:
        multi = True
    return out, (lst if multi else Line(out))


def _align(lst, skip, size):
    pads = [0] * len(lst)
    start = end = width = 0
    for i, r in enumerate(lst):
        if skip(r):
            for j in range(start, end):
                pads[j] = width - size(lst[j])
            start = end = i + 1
            width = 0
        else:
            width = max(width, size(r))
            end = i + 1
    for j in range(start, end):
        pads[j] = width - size(lst[j])
    return pads


def _indent(n: int, d: int) -> str:
    return _MARK[d] + "\t" * n


def _expanded(n, d: int, level: int) -> str:
    if isinstance(n, Line):
        return str(n)
    if isinstance(n, Wrap):
        return n.prefix + _expanded(n.value, d, level) + n.suffix
    keys = _align(n, lambda r: r.key == "" or not isinstance(r.value, Line), lambda r: len(r.key))
    vals = _align(n, lambda r: not isinstance(r.value, Line) or r.value == ELLIPSIS or r.comment is None,
                  lambda r: len(r.value))
    if all(r.diff == UNKNOWN and r.key == "" and isinstance(r.value, Line) and r.comment is None for r in n) and n:
        out, batch = [], ""
        for r in n:
            if len(batch) + len(r.value) + 2 > MAX_COLUMN and batch:
                out.append("\n" + _indent(level + 1, d) + batch.rstrip(" "))
                batch = ""
            batch += r.value + ", "
        if batch:
            out.append("\n" + _indent(level + 1, d) + batch.rstrip(" "))
        return "".join(out) + "\n" + _indent(level, d)
    out = []
    for i, r in enumerate(n):
        dd = r.diff if d in (UNKNOWN, IDENTICAL) else d
        s = "\n" + _indent(level + 1, dd) + (r.key + ": " if r.key else "") + " " * keys[i]
        s += _expanded(r.value, dd, level + 1)
        if not r.elide_comma:
            s += ","
        s += " " * vals[i]
        if r.comment is not None:
            s += " // " + str(r.comment)
        out.append(s)
    return "".join(out) + "\n" + _indent(level, d)


def render(node) -> str:
    _, node = _compact(node, UNKNOWN)
    return _indent(0, UNKNOWN) + _expanded(node, UNKNOWN, 0) + "\n"


# ---- formatting (go-cmp's FormatDiff / FormatValue) ----------------------------------------------------------

AUTO, ELIDE, EMIT = 0, 1, 2


class Opts:
    __slots__ = ("mode", "types", "verbosity", "limit", "avoid_stringer")

    def __init__(self, mode=UNKNOWN, types=EMIT, verbosity=0, limit=False, avoid_stringer=False):
        self.mode, self.types, self.verbosity, self.limit, self.avoid_stringer = mode, types, verbosity, limit, avoid_stringer

    def but(self, **kw):
        o = Opts(self.mode, self.types, self.verbosity, self.limit, self.avoid_stringer)
        for k, v in kw.items():
            setattr(o, k, v)
        return o

    def level(self) -> int:
        return max(0, min(16, self.verbosity))


def _format_type(o: Opts, t: T, s):
    if o.types == AUTO:
        if t.kind not in ("struct", "slice", "map", "quantity"):
            return s
        if isinstance(s, Line) and s == "nil":
            return s
        if o.mode == IDENTICAL:
            return s
    elif o.types == ELIDE:
        return s
    name = t.type_string()
    if t.kind == "ptr" and not t.name:
        name = "(" + name + ")"
    return Wrap(name, _wrap_parens(s))


def _wrap_parens(s):
    if isinstance(s, Wrap) and ((s.prefix.startswith("(") and s.suffix.endswith(")")) or
                                (s.prefix.startswith("{") and s.suffix.endswith("}"))):
        return s
    return Wrap("(", s, ")")


def _go_string(s: str) -> str:
    q = json.dumps(s, ensure_ascii=False)
    if len(q) == len(s) + 2:
        return q
    if "`" not in s and "\n" not in s and all(c.isprintable() or c == "\t" for c in s):
        return "`" + s + "`"
    return q


def _format_string(o: Opts, s: str) -> Line:
    max_len = len(s)
    if o.limit:
        max_len = (1 << o.level()) << 5
    if len(s) > max_len + 3:
        return Line(_go_string(s[:max_len]) + ELLIPSIS)
    return Line(_go_string(s))


def format_value(o: Opts, t: T, v):
    if v is MISSING:
        return None
    out = _value(o, t, v)
    if out is None or getattr(out, "_skip_type", False):
        return out
    return _format_type(o, t, out)


class _NoType(Wrap):
    _skip_type = True


class _Stringer(Line):
    _skip_type = True


def _value(o: Opts, t: T, v):
    k = t.kind
    if k == "bool":
        return Line("true" if v else "false")
    if k == "int":
        return Line(str(v))
    if k == "string":
        return _format_string(o, v)
    if k == "quantity":   # its unexported fields, as go-cmp prints a Quantity (no Stringer on the value)
        return _struct_value(o, [("i", INT64_AMOUNT, {"value": v[0], "scale": v[1]}), ("s", STRING, v[2]),
                                 ("Format", QUANTITY_FORMAT, v[3])])
    if k == "struct":
        return _struct_value(o, [(g, ft, v.get(g, _zero(ft))) for g, ft in _fields(t, v, v)])
    if k in ("slice", "map"):
        if v is None:
            return Line("nil")
        max_len, sub = _value_limit(o, len(v), ELIDE)
        lst = []
        items = [(None, x) for x in v] if k == "slice" else [(kk, v[kk]) for kk in sorted(v)]
        for kk, x in items:
            if len(lst) == max_len:
                append_ellipsis(lst)
                break
            key = "" if kk is None else _go_string(kk)
            lst.append(Rec(format_value(sub, t.elem, x), key))
        return Wrap("{", lst, "}")
    if k == "ptr":
        if v is None:
            return Line("nil")
        if t.elem.kind == "quantity" and not o.avoid_stringer:
            return _Stringer("s" + _go_string(v[4]))   # *Quantity is a fmt.Stringer: go-cmp prints String()
        inner = format_value(o, t.elem, v)
        return _NoType("&", inner) if not t.name else Wrap("&", inner)
    raise ValueError(k)


def _value_limit(o: Opts, n: int, types: int) -> tuple[int, Opts]:
    """FormatValue's bound on a struct's, slice's or map's records under limited verbosity (0, 4, 8, 16, ...) and the
    options for its children (one level less verbose)."""
    sub = o.but(types=types)
    if not o.limit:
        return n, sub
    sub.verbosity -= 1
    return ((1 << o.level()) >> 1) << 2, sub


def _struct_value(o: Opts, fields):
    max_len, sub = _value_limit(o, len(fields), AUTO)
    lst = []
    for name, ft, fv in fields:
        if _is_zero(ft, fv):
            continue
        if len(lst) == max_len:
            append_ellipsis(lst)
            break
        lst.append(Rec(format_value(sub, ft, fv), name))
    return Wrap("{", lst, "}")


def format_diff(o: Opts, n: Node):
    if o.mode == IDENTICAL:
        o = o.but(verbosity=1, limit=True)
    elif o.level() < 3:
        o = o.but(verbosity=3, limit=True)
    if n.depth == 0:
        if o.mode in (UNKNOWN, IDENTICAL):
            if n.diff == 0:
                outx, outy = format_value(o, n.t, n.x), format_value(o, n.t, n.y)
                return outx if length(outx) < length(outy) else outy
            e = o.but(types=ELIDE)
            outx, outy = format_value(e, n.t, n.x), format_value(e, n.t, n.y)
            for preset in range(7):
                if outx is None or outy is None or not equal(outx, outy):
                    break
                ax = e.but(verbosity=e.level() + 2 * preset, avoid_stringer=e.avoid_stringer or preset > 0)
                outx, outy = format_value(ax, n.t, n.x), format_value(ax, n.t, n.y)
            lst = []
            if outx is not None:
                lst.append(Rec(outx, diff=REMOVED))
            if outy is not None:
                lst.append(Rec(outy, diff=INSERTED))
            return _format_type(o.but(types=EMIT), n.t, lst)
        return format_value(o, n.t, n.x if o.mode == REMOVED else n.y)
    k = n.t.kind
    if k in ("struct", "slice", "map"):
        return _format_type(o, n.t, _diff_list(o, n.records, k))
    if k == "ptr":
        return Wrap("&", format_diff(o, n.value))
    raise ValueError(k)


def _diff_list(o: Opts, recs, kind: str):
    name = {"struct": "field", "slice": "element", "map": "entry"}[kind]
    o = o.but(types=AUTO if kind == "struct" else ELIDE)

    def key_of(k):
        return "" if k is None else (k if kind == "struct" else _go_string(k))
    max_len = -1
    if o.limit:
        max_len = (((1 << o.level()) >> 1) << 2) if o.mode == IDENTICAL else ((1 << o.level()) << 1)
        o = o.but(verbosity=o.verbosity - 1)
    if o.mode != UNKNOWN:
        lst, deferred = [], False
        for k, r in recs:
            if len(lst) == max_len:
                deferred = True
                break
            if kind == "struct":
                if o.mode == IDENTICAL:
                    zero = _is_zero(r.t, r.x) or _is_zero(r.t, r.y)
                else:
                    zero = _is_zero(r.t, r.x if o.mode == REMOVED else r.y)
                if zero:
                    continue
            out = format_diff(o, r)
            if out is not None:
                lst.append(Rec(out, key_of(k)))
        if deferred:
            append_ellipsis(lst)
        return Wrap("{", lst, "}")

    groups = []
    prev = 0
    for _k, r in recs:
        case = 1 if r.diff == 0 else 2
        if case != prev:
            groups.append(Stats(name))
            prev = case
        g = groups[-1]
        if r.diff == 0:
            g.identical += 1
        elif r.y is MISSING:
            g.removed += 1
        elif r.x is MISSING:
            g.inserted += 1
        else:
            g.modified += 1
    lst, ndiffs = [], 0
    rest = list(recs)
    over = Stats(name)
    for i, g in enumerate(groups):
        if 0 <= max_len <= ndiffs:
            over.identical += g.identical
            over.removed += g.removed
            over.inserted += g.inserted
            over.modified += g.modified
            continue
        if g.ndiff() == 0:
            n_eq = g.identical
            lo = hi = 0
            while lo < 2 and lo + hi < n_eq and i != 0:
                lo += 1
            while hi < 2 and lo + hi < n_eq and i != len(groups) - 1:
                hi += 1
            if n_eq - (lo + hi) == 1:
                hi += 1
            ident = o.but(mode=IDENTICAL)
            for k, r in rest[:lo]:
                lst.append(Rec(format_diff(ident, r), key_of(k)))
            if n_eq > lo + hi:
                append_ellipsis(lst, Stats(name, identical=n_eq - lo - hi))
            for k, r in rest[n_eq - hi:n_eq]:
                lst.append(Rec(format_diff(ident, r), key_of(k)))
            rest = rest[n_eq:]
            continue
        for k, r in rest[:g.ndiff()]:
            if r.children == r.depth:
                outx = format_diff(o.but(mode=REMOVED), r)
                outy = format_diff(o.but(mode=INSERTED), r)
                for preset in range(7):   # verbosityPreset: more detail until the two sides read differently
                    if outx is None or outy is None or not equal(outx, outy):
                        break
                    ax = o.but(verbosity=o.level() + 2 * preset, avoid_stringer=o.avoid_stringer or preset > 0)
                    outx, outy = format_diff(ax.but(mode=REMOVED), r), format_diff(ax.but(mode=INSERTED), r)
                if outx is not None:
                    lst.append(Rec(outx, key_of(k), REMOVED))
                if outy is not None:
                    lst.append(Rec(outy, key_of(k), INSERTED))
            else:
                lst.append(Rec(format_diff(o, r), key_of(k)))
        rest = rest[g.ndiff():]
        ndiffs += g.ndiff()
    if over.identical or over.ndiff():
        append_ellipsis(lst, over)
    return Wrap("{", lst, "}")


def diff(t: T, old, new) -> str:
    """cmp.Diff(old, new) for Go values of type t ("" when equal)."""
    root = compare(t, old, new)
    if root.diff == 0:
        return ""
    return render(format_diff(Opts(), root))


def pod_spec_diff(old_spec: dict, new_spec: dict) -> str:
    return diff(POD_SPEC, pod_spec(old_spec), pod_spec(new_spec))


def ephemeral_container_diff(old: dict, new: dict) -> str:
    return diff(EPHEMERAL_CONTAINER, from_json(EPHEMERAL_CONTAINER, old), from_json(EPHEMERAL_CONTAINER, new))
