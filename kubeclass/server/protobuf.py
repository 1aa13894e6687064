"""Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which kubectl >= 1.32 sends for
`kubectl create <generator>` and `kubectl auth can-i` and never retries as JSON.

Wire format (upstream's published contract): the 4 magic bytes `k8s\\x00`, then a
`runtime.Unknown{typeMeta{apiVersion, kind}, raw, contentEncoding, contentType}` whose `raw` is the
object's message. Field numbers below are those of upstream's `generated.proto` files for the kinds
this server serves. Decoding is by the wire format (varint / length-delimited), converted to the same
JSON a Go client would send: proto2 zero values are dropped as Go's `omitempty` would. A field number
we do not know is an error, never silently dropped data.
"""
from __future__ import annotations

import base64
import datetime
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


# message name -> {field number: (json name, type)}; types: string, int, bool, bytes, Time, Quantity,
# IntOrString, b64 (bytes, base64 in JSON), map:<type>, []<type>, or another message name. "skip" fields are read and dropped.
M: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"), 4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "Quantity": {1: ("string", "string")},
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")},
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 4: ("selfLink", "string"),
                   5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
                   8: ("creationTimestamp", "Time"), 9: ("deletionTimestamp", "Time"), 10: ("deletionGracePeriodSeconds", "int"),
                   11: ("labels", "map:string"), 12: ("annotations", "map:string"), 13: ("ownerReferences", "[]OwnerReference"),
                   14: ("finalizers", "[]string"), 17: ("managedFields", "skip")},
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"), 5: ("apiVersion", "string"),
                       6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")},
    "LabelSelector": {1: ("matchLabels", "map:string"), 2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                        5: ("apiVersion", "string"), 6: ("resourceVersion", "string"), 7: ("fieldPath", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string"), 2: ("conditions", "skip")},
    "ResourceQuota": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ResourceQuotaSpec"), 3: ("status", "ResourceQuotaStatus")},
    "ResourceQuotaSpec": {1: ("hard", "map:Quantity"), 2: ("scopes", "[]string"), 3: ("scopeSelector", "ScopeSelector")},
    "ScopeSelector": {1: ("matchExpressions", "[]ScopedResourceSelectorRequirement")},
    "ScopedResourceSelectorRequirement": {1: ("scopeName", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "ResourceQuotaStatus": {1: ("hard", "map:Quantity"), 2: ("used", "map:Quantity")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[]ObjectReference"),
                       3: ("imagePullSecrets", "[]LocalObjectReference"), 4: ("automountServiceAccountToken", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:b64"), 3: ("type", "string"), 4: ("stringData", "map:string"),
               5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:string"), 3: ("binaryData", "map:b64"), 4: ("immutable", "bool")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", "skip")},
    "ServiceSpec": {1: ("ports", "[]ServicePort"), 2: ("selector", "map:string"), 3: ("clusterIP", "string"), 18: ("clusterIPs", "[]string"),
                    4: ("type", "string"), 5: ("externalIPs", "[]string"), 7: ("sessionAffinity", "string"),
                    8: ("loadBalancerIP", "string"), 9: ("loadBalancerSourceRanges", "[]string"), 10: ("externalName", "string"),
                    11: ("externalTrafficPolicy", "string"), 12: ("healthCheckNodePort", "int"), 13: ("publishNotReadyAddresses", "bool"),
                    14: ("sessionAffinityConfig", "SessionAffinityConfig"), 19: ("ipFamilies", "[]string"), 17: ("ipFamilyPolicy", "string"),
                    20: ("allocateLoadBalancerNodePorts", "bool"), 21: ("loadBalancerClass", "string"),
                    22: ("internalTrafficPolicy", "string"), 23: ("trafficDistribution", "string")},
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 6: ("appProtocol", "string"), 3: ("port", "int"),
                    4: ("targetPort", "IntOrString"), 5: ("nodePort", "int")},
    "SessionAffinityConfig": {1: ("clientIP", "ClientIPConfig")},
    "ClientIPConfig": {1: ("timeoutSeconds", "int")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "[]Container"), 3: ("restartPolicy", "string"), 4: ("terminationGracePeriodSeconds", "int"),
                5: ("activeDeadlineSeconds", "int"), 6: ("dnsPolicy", "string"), 7: ("nodeSelector", "map:string"),
                8: ("serviceAccountName", "string"), 9: ("serviceAccount", "string"), 10: ("nodeName", "string"),
                11: ("hostNetwork", "bool"), 12: ("hostPID", "bool"), 13: ("hostIPC", "bool"), 20: ("initContainers", "[]Container"),
                14: ("securityContext", "PodSecurityContext"), 15: ("imagePullSecrets", "[]LocalObjectReference"), 16: ("hostname", "string"),
                17: ("subdomain", "string"), 19: ("schedulerName", "string"), 22: ("tolerations", "[]Toleration"),
                21: ("automountServiceAccountToken", "bool"), 24: ("priorityClassName", "string"), 25: ("priority", "int"),
                27: ("shareProcessNamespace", "bool"), 29: ("runtimeClassName", "string"), 30: ("enableServiceLinks", "bool"),
                31: ("preemptionPolicy", "string"), 32: ("overhead", "map:Quantity"), 35: ("setHostnameAsFQDN", "bool"),
                37: ("hostUsers", "bool")},
    "PodSecurityContext": {1: ("seLinuxOptions", "SELinuxOptions"), 2: ("runAsUser", "int"), 3: ("runAsNonRoot", "bool"),
                           4: ("supplementalGroups", "[]int"), 5: ("fsGroup", "int"), 6: ("runAsGroup", "int"),
                           7: ("sysctls", "[]Sysctl"), 8: ("windowsOptions", "WindowsSecurityContextOptions"),
                           9: ("fsGroupChangePolicy", "string"), 10: ("seccompProfile", "SeccompProfile"),
                           11: ("appArmorProfile", "SeccompProfile"), 12: ("supplementalGroupsPolicy", "string")},
    "SecurityContext": {1: ("capabilities", "Capabilities"), 2: ("privileged", "bool"), 3: ("seLinuxOptions", "SELinuxOptions"),
                        4: ("runAsUser", "int"), 5: ("runAsNonRoot", "bool"), 6: ("readOnlyRootFilesystem", "bool"),
                        7: ("allowPrivilegeEscalation", "bool"), 8: ("runAsGroup", "int"), 9: ("procMount", "string"),
                        10: ("windowsOptions", "WindowsSecurityContextOptions"), 11: ("seccompProfile", "SeccompProfile"),
                        12: ("appArmorProfile", "SeccompProfile")},
    "Capabilities": {1: ("add", "[]string"), 2: ("drop", "[]string")},
    "SeccompProfile": {1: ("type", "string"), 2: ("localhostProfile", "string")},   # AppArmorProfile has the same shape
    "SELinuxOptions": {1: ("user", "string"), 2: ("role", "string"), 3: ("type", "string"), 4: ("level", "string")},
    "Sysctl": {1: ("name", "string"), 2: ("value", "string")},
    "WindowsSecurityContextOptions": {1: ("gmsaCredentialSpecName", "string"), 2: ("gmsaCredentialSpec", "string"),
                                      3: ("runAsUserName", "string"), 4: ("hostProcess", "bool")},
    "Toleration": {1: ("key", "string"), 2: ("operator", "string"), 3: ("value", "string"), 4: ("effect", "string"),
                   5: ("tolerationSeconds", "int")},
    "Container": {1: ("name", "string"), 2: ("image", "string"), 3: ("command", "[]string"), 4: ("args", "[]string"),
                  5: ("workingDir", "string"), 6: ("ports", "[]ContainerPort"), 7: ("env", "[]EnvVar"),
                  8: ("resources", "ResourceRequirements"), 13: ("terminationMessagePath", "string"),
                  14: ("imagePullPolicy", "string"), 15: ("securityContext", "SecurityContext"), 16: ("stdin", "bool"),
                  17: ("stdinOnce", "bool"), 18: ("tty", "bool"),
                  20: ("terminationMessagePolicy", "string")},
    "ContainerPort": {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"), 4: ("protocol", "string"),
                      5: ("hostIP", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "map:Quantity"), 2: ("requests", "map:Quantity")},
    # apps/v1
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"), 3: ("status", "skip")},
    "DeploymentSpec": {1: ("replicas", "int"), 2: ("selector", "LabelSelector"), 3: ("template", "PodTemplateSpec"),
                       4: ("strategy", "DeploymentStrategy"), 5: ("minReadySeconds", "int"), 6: ("revisionHistoryLimit", "int"),
                       7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "int")},
    "DeploymentStrategy": {1: ("type", "string"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "IntOrString"), 2: ("maxSurge", "IntOrString")},
    # rbac/v1
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule"), 3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[]LabelSelector")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                   4: ("resourceNames", "[]string"), 5: ("nonResourceURLs", "[]string")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"), 4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # authorization/v1, authentication/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec"), 3: ("status", "skip")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"), 2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"), 4: ("version", "string"),
                           5: ("resource", "string"), 6: ("subresource", "string"), 7: ("name", "string"),
                           8: ("fieldSelector", "skip"), 9: ("labelSelector", "skip")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec"), 3: ("status", "skip")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta"), 2: ("status", "skip")},
    # batch/v1 (kubectl create job), authentication/v1 TokenRequest (kubectl create token)
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "skip")},
    "JobSpec": {1: ("parallelism", "int"), 2: ("completions", "int"), 3: ("activeDeadlineSeconds", "int"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "bool"), 6: ("template", "PodTemplateSpec"), 7: ("backoffLimit", "int"),
                8: ("ttlSecondsAfterFinished", "int"), 9: ("completionMode", "string"), 10: ("suspend", "bool"),
                11: ("podFailurePolicy", "skip"), 12: ("backoffLimitPerIndex", "int"), 13: ("maxFailedIndexes", "int"),
                14: ("podReplacementPolicy", "string"), 15: ("managedBy", "string"), 16: ("successPolicy", "skip")},
    "CronJob": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CronJobSpec"), 3: ("status", "skip")},
    "CronJobSpec": {1: ("schedule", "string"), 2: ("startingDeadlineSeconds", "int"), 3: ("concurrencyPolicy", "string"),
                    4: ("suspend", "bool"), 5: ("jobTemplate", "JobTemplateSpec"), 6: ("successfulJobsHistoryLimit", "int"),
                    7: ("failedJobsHistoryLimit", "int"), 8: ("timeZone", "string")},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec"), 3: ("status", "skip")},
    "TokenRequestSpec": {1: ("audiences", "[]string"), 3: ("boundObjectRef", "BoundObjectReference"), 4: ("expirationSeconds", "int")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"), 3: ("name", "string"), 4: ("uid", "string")},
    # scheduling/v1, coordination/v1
    "PriorityClass": {1: ("metadata", "ObjectMeta"), 2: ("value", "int"), 3: ("globalDefault", "bool"), 4: ("description", "string"),
                      5: ("preemptionPolicy", "string")},
}
M["ClusterRoleBinding"] = M["RoleBinding"]

ROOTS = {"Namespace", "ResourceQuota", "ServiceAccount", "Secret", "ConfigMap", "Deployment", "Role", "ClusterRole", "RoleBinding",
         "ClusterRoleBinding", "SelfSubjectAccessReview", "SelfSubjectRulesReview", "SelfSubjectReview", "PriorityClass", "Job",
         "CronJob", "TokenRequest", "Service"}
# Fields Go writes even when zero and whose zero is meaningful in JSON.
# Pointer fields (Go `*int32` / `*bool`) are written only when set, so a zero or false there was meant:
# `runAsUser: 0`, `allowPrivilegeEscalation: false`, `backoffLimit: 0`, `successfulJobsHistoryLimit: 0` ...
KEEP_ZERO = {"replicas", "containerPort", "value", "runAsUser", "runAsGroup", "fsGroup", "runAsNonRoot", "privileged",
             "readOnlyRootFilesystem", "allowPrivilegeEscalation", "automountServiceAccountToken", "enableServiceLinks",
             "hostUsers", "setHostnameAsFQDN", "shareProcessNamespace", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
             "parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished", "suspend", "manualSelector",
             "startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "expirationSeconds",
             "priority", "backoffLimitPerIndex", "maxFailedIndexes", "minReadySeconds", "revisionHistoryLimit",
             "progressDeadlineSeconds", "paused", "tolerationSeconds", "allocateLoadBalancerNodePorts"}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ProtobufError("varint too long")


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated length-delimited field")
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")
        yield num, wt, v


def _scalar(typ: str, wt: int, v: Any) -> Any:
    if typ == "string":
        if wt != 2:
            raise ProtobufError("expected a string")
        return bytes(v).decode("utf-8")
    if typ == "int":
        if wt != 0:
            raise ProtobufError("expected a varint")
        return v - (1 << 64) if v >= 1 << 63 else v
    if typ == "bool":
        return bool(v)
    if typ == "bytes":
        return bytes(v)
    if typ == "b64":
        return base64.b64encode(bytes(v)).decode()
    return _message(typ, bytes(v))


def _message(name: str, buf: bytes) -> Any:
    spec = M.get(name)
    if spec is None:
        raise ProtobufError(f"no message definition for {name}")
    out: dict[str, Any] = {}
    for num, wt, v in _fields(buf):
        f = spec.get(num)
        if f is None:
            raise ProtobufError(f"unknown field {num} in {name}")
        key, typ = f
        if typ == "skip":
            continue
        if typ.startswith("map:"):
            entry = {}
            for n2, w2, v2 in _fields(bytes(v)):
                entry[n2] = _scalar("string" if n2 == 1 else typ[4:], w2, v2)
            out.setdefault(key, {})[entry.get(1, "")] = entry.get(2, "" if typ in ("map:string", "map:b64") else None)
        elif typ.startswith("[]"):
            if typ == "[]int" and wt == 2:   # a packed repeated varint
                buf2, j = bytes(v), 0
                while j < len(buf2):
                    x, j = _varint(buf2, j)
                    out.setdefault(key, []).append(x - (1 << 64) if x >= 1 << 63 else x)
                continue
            out.setdefault(key, []).append(_scalar(typ[2:], wt, v))
        else:
            out[key] = _scalar(typ, wt, v)
    return _to_json(name, out)


def _to_json(name: str, m: dict) -> Any:
    if name == "Time":
        if not m.get("seconds") and not m.get("nanos"):
            return None
        t = datetime.datetime.fromtimestamp(m.get("seconds", 0), datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == "Quantity":
        return m.get("string", "0")
    if name == "IntOrString":
        return m.get("intVal", 0) if m.get("type", 0) == 0 else m.get("strVal", "")
    out = {}
    for k, v in m.items():
        if v is False and k in KEEP_ZERO:
            out[k] = v
            continue
        if v is None or v == "" or v is False or v == [] or v == {}:
            if k not in ("metadata", "spec", "status", "resources", "template", "selector", "securityContext") or v is None:
                continue
        if v == 0 and not isinstance(v, bool) and k not in KEEP_ZERO:
            continue
        out[k] = v
    return out


def decode(body: bytes) -> dict:
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unk = _message("Unknown", body[4:])
    tm = unk.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in ROOTS:
        raise ProtobufError(f'protobuf bodies of kind "{kind}" are not supported; send JSON')
    if unk.get("contentEncoding"):
        raise ProtobufError("content encodings are not supported")
    obj = _message(kind, unk.get("raw", b""))
    obj["apiVersion"] = tm.get("apiVersion", "")
    obj["kind"] = kind
    return obj
