"""Service account identity, pure (upstream pkg/serviceaccount and the ServiceAccount admission plugin):
the user a service account token stands for, the claims of a bound token, TokenRequest defaults and
validation, and the `kube-api-access-*` projected volume every Pod gets."""
from __future__ import annotations

import random
import uuid

from .errors import FieldError, invalid

PREFIX = "system:serviceaccount:"
ALL_GROUP = "system:serviceaccounts"
ISSUER = "https://kubernetes.default.svc.cluster.local"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
                       "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
                       "distributions of Kubernetes clusters.")
KUBELET_EXPIRATION = 3607              # what kubelet asks for; extended to a year, warned after (upstream default)
EXTENDED_EXPIRATION = 365 * 24 * 3600
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def username(namespace: str, name: str) -> str:
    return f"{PREFIX}{namespace}:{name}"


def split_username(user: str) -> tuple[str, str] | None:
    if not user.startswith(PREFIX):
        return None
    ns, _, name = user[len(PREFIX):].partition(":")
    return (ns, name) if ns and name and ":" not in name else None


def groups(namespace: str) -> tuple[str, ...]:
    return (ALL_GROUP, f"{ALL_GROUP}:{namespace}")


# ---- TokenRequest

def token_request_defaults(tr: dict, audiences: list[str]) -> dict:
    spec = tr.setdefault("spec", {})
    if not spec.get("audiences"):
        spec["audiences"] = list(audiences)
    spec.setdefault("expirationSeconds", DEFAULT_EXPIRATION)
    return tr


def validate_token_request(tr: dict, max_seconds: int | None = None) -> list[FieldError]:
    spec = tr.get("spec") or {}
    errs = []
    exp = spec.get("expirationSeconds")
    if not isinstance(exp, int) or isinstance(exp, bool):
        errs.append(invalid("spec.expirationSeconds", exp, "must be an integer"))
    elif exp < MIN_EXPIRATION:
        errs.append(invalid("spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes"))
    elif exp > 1 << 32:
        errs.append(invalid("spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds"))
    ref = spec.get("boundObjectRef")
    if ref is not None and ref.get("kind") not in ("Pod", "Secret", "Node"):
        errs.append(invalid("spec.boundObjectRef.kind", ref.get("kind", ""), "must be one of Pod, Secret, Node"))
    return errs


def claims(namespace: str, sa: dict, audiences: list[str], seconds: int, now: int,
           pod: dict | None = None, secret: dict | None = None, node: dict | None = None,
           issuer: str = ISSUER, extend: bool = True) -> tuple[dict, int]:
    """(JWT claims, expiry) of a token for `sa`, bound to a Pod / Secret / Node when given, as upstream's
    serviceaccount.Claims: a Pod-bound token asked for kubelet's 3607 s lives a year, with `warnafter`."""
    exp = now + seconds
    warn = None
    if extend and pod is not None and seconds == KUBELET_EXPIRATION:
        warn, exp = exp, now + EXTENDED_EXPIRATION
    k8s: dict = {"namespace": namespace, "serviceaccount": {"name": sa["metadata"]["name"], "uid": sa["metadata"]["uid"]}}
    for key, obj in (("pod", pod), ("secret", secret), ("node", node)):
        if obj is not None:
            k8s[key] = {"name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
    if warn is not None:
        k8s["warnafter"] = warn
    return ({"aud": list(audiences), "exp": exp, "iat": now, "iss": issuer, "jti": str(uuid.uuid4()),
             "kubernetes.io": k8s, "nbf": now, "sub": username(namespace, sa["metadata"]["name"])}, exp)


# ---- the ServiceAccount admission plugin's volume

def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_ALPHANUMS) for _ in range(n))


def token_volume(name: str) -> dict:
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": KUBELET_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def wants_token(pod_spec: dict, sa: dict) -> bool:
    if pod_spec.get("automountServiceAccountToken") is not None:
        return bool(pod_spec["automountServiceAccountToken"])
    return sa.get("automountServiceAccountToken") is not False


def mount_token(pod_spec: dict) -> None:
    """Add the kube-api-access volume and mount it in every container that has nothing at the mount path."""
    existing = next((v["name"] for v in pod_spec.get("volumes") or [] if v.get("name", "").startswith("kube-api-access-")
                     and "projected" in v), None)
    containers = (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])
    needs = [c for c in containers if not any(m.get("mountPath") == MOUNT_PATH for m in c.get("volumeMounts") or [])]
    if not needs:
        return
    name = existing or f"kube-api-access-{random_suffix()}"
    if existing is None:
        pod_spec.setdefault("volumes", []).append(token_volume(name))
    for c in needs:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
