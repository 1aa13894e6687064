"""Service account tokens (kube-apiserver's --service-account-signing-key-file / --service-account-issuer):
RS256 JWTs signed by a key kept in the data dir's pki (made once, 0600), the TokenRequest subresource
(`serviceaccounts/token`, `kubectl create token`), the authenticator that accepts those tokens as
`system:serviceaccount:<ns>:<name>` while the account (and the Pod, Secret or Node the token is bound to)
still exists with the same uid, and the OIDC discovery documents (/.well-known/openid-configuration,
/openid/v1/jwks). PyJWT signs and verifies; the claims are upstream's (api/serviceaccounts.py)."""
from __future__ import annotations

import base64
import hashlib
import os
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..api import errors, registry, serviceaccounts as sa_api
from .auth import User


def _b64url_uint(n: int) -> str:
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, key_path: str, issuer: str = sa_api.ISSUER, audiences: list[str] | None = None,
                 jwks_uri: str = ""):
        self.issuer = issuer
        self.audiences = audiences or [issuer]
        self.jwks_uri = jwks_uri
        self.key = self._load_or_create(key_path)
        self.public = self.key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @staticmethod
    def _load_or_create(path: str):
        if os.path.exists(path):
            with open(path, "rb") as f:
                return serialization.load_pem_private_key(f.read(), None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str) -> dict | None:
        try:
            return jwt.decode(token, self.public, algorithms=["RS256"], audience=self.audiences, issuer=self.issuer,
                              options={"require": ["exp", "iat", "iss", "sub", "aud"]}, leeway=60)
        except jwt.PyJWTError:
            return None

    def jwks(self) -> dict:
        n = self.public.public_numbers()
        return {"keys": [{"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256", "n": _b64url_uint(n.n), "e": _b64url_uint(n.e)}]}

    def openid_configuration(self) -> dict:
        return {"issuer": self.issuer, "jwks_uri": self.jwks_uri, "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}


def _get(store, plural: str, namespace: str | None, name: str) -> dict | None:
    res = registry.STORAGE.get(("", plural))
    if res is None or not name:
        return None
    e = store.get(res.key(namespace, name))
    return e.obj if e is not None else None


class ServiceAccountAuthenticator:
    """Bearer tokens that are our JWTs: the service account they name, while it and the bound object live."""

    def __init__(self, issuer: TokenIssuer, store):
        self.issuer, self.store = issuer, store

    def authenticate(self, token: str) -> User | None:
        if token.count(".") != 2:
            return None
        c = self.issuer.verify(token)
        if c is None:
            return None
        k8s = c.get("kubernetes.io") or {}
        ns, ref = k8s.get("namespace", ""), k8s.get("serviceaccount") or {}
        if c.get("sub") != sa_api.username(ns, ref.get("name", "")):
            return None
        sa = _get(self.store, "serviceaccounts", ns, ref.get("name", ""))
        if sa is None or sa["metadata"].get("uid") != ref.get("uid"):
            return None
        extra: dict[str, tuple[str, ...]] = {}
        for kind, plural, namespaced in (("pod", "pods", True), ("secret", "secrets", True), ("node", "nodes", False)):
            bound = k8s.get(kind)
            if not bound:
                continue
            obj = _get(self.store, plural, ns if namespaced else None, bound.get("name", ""))
            if kind != "node" and (obj is None or obj["metadata"].get("uid") != bound.get("uid")):
                return None   # the token died with what it was bound to
            if kind == "pod":
                extra[sa_api.EXTRA_POD_NAME] = (bound["name"],)
                extra[sa_api.EXTRA_POD_UID] = (bound["uid"],)
            elif kind == "node":
                extra[sa_api.EXTRA_NODE_NAME] = (bound["name"],)
                if bound.get("uid"):
                    extra[sa_api.EXTRA_NODE_UID] = (bound["uid"],)
        if c.get("jti"):
            extra[sa_api.EXTRA_CREDENTIAL_ID] = (f"JTI={c['jti']}",)
        return User(sa_api.username(ns, sa["metadata"]["name"]), sa["metadata"]["uid"],
                    sa_api.groups(ns) + ("system:authenticated",), tuple(sorted(extra.items())))


def token_request(issuer: TokenIssuer, store, namespace: str, name: str, body, dry_run: bool = False) -> dict:
    """POST .../serviceaccounts/NAME/token: a TokenRequest answered with a signed token."""
    if not isinstance(body, dict) or body.get("kind") not in (None, "TokenRequest"):
        raise errors.bad_request("the body must be an authentication.k8s.io/v1 TokenRequest")
    sa = _get(store, "serviceaccounts", namespace, name)
    if sa is None:
        raise errors.not_found("serviceaccounts", "", name)
    tr = sa_api.token_request_defaults({"spec": dict(body.get("spec") or {})}, issuer.audiences)
    errs = sa_api.validate_token_request(tr)
    if errs:
        raise errors.invalid_object("TokenRequest", "authentication.k8s.io", name, errs)
    spec = tr["spec"]
    pod = secret = node = None
    ref = spec.get("boundObjectRef")
    if ref:
        kind = ref.get("kind")
        plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[kind]
        obj = _get(store, plural, None if kind == "Node" else namespace, ref.get("name", ""))
        if obj is None:
            raise errors.not_found(plural, "", ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != obj["metadata"].get("uid"):
            raise errors.conflict(plural, "", ref.get("name", ""),
                                  f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                                  "The object might have been deleted and then recreated")
        if kind == "Pod":
            pod = obj
            uses = (obj.get("spec") or {}).get("serviceAccountName") or "default"
            if uses != name:
                raise errors.bad_request(f'cannot bind token for serviceaccount "{name}" to pod "{ref.get("name")}"'
                                         f' which is bound to serviceaccount "{uses}"')
            nn = (obj.get("spec") or {}).get("nodeName")
            if nn:
                node = _get(store, "nodes", None, nn) or {"metadata": {"name": nn, "uid": ""}}
        elif kind == "Secret":
            secret = obj
        else:
            node = obj
        spec["boundObjectRef"] = {"kind": kind, "apiVersion": ref.get("apiVersion") or "v1", "name": obj["metadata"]["name"],
                                  "uid": obj["metadata"]["uid"]}
    now = int(time.time())
    claims, exp = sa_api.claims(namespace, sa, spec["audiences"], spec["expirationSeconds"], now, pod, secret, node, issuer.issuer)
    token = "" if dry_run else issuer.sign(claims)
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}}
