"""Service accounts (issue 12): the controller manager's default ServiceAccount and kube-root-ca.crt in
every namespace, the ServiceAccount admission plugin's defaults, volume and refusals with upstream's texts,
TokenRequest (`kubectl create token`), the authenticator and its bound-token rules, OIDC discovery."""
from __future__ import annotations

import base64
import json

import yaml

from conftest import wait_for as wait



def claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_every_namespace_gets_default_account_and_root_ca(cluster):
    cluster.ok("create", "namespace", "sa-one")
    wait(lambda: cluster.kubectl("get", "sa", "default", "-n", "sa-one").returncode == 0, what="default SA")
    cm = wait(lambda: (lambda r: json.loads(r.stdout) if r.returncode == 0 else None)(
        cluster.kubectl("get", "cm", "kube-root-ca.crt", "-n", "sa-one", "-o", "json")), what="kube-root-ca.crt")
    assert cm["data"]["ca.crt"] == open(cluster.ca()).read()
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith("Contains a CA bundle that can be used to verify")
    cluster.ok("delete", "sa", "default", "-n", "sa-one")
    wait(lambda: cluster.kubectl("get", "sa", "default", "-n", "sa-one").returncode == 0, what="default SA made again")
    cluster.ok("delete", "namespace", "sa-one")


def test_pods_get_the_account_and_its_token_volume(cluster):
    cluster.ok("create", "namespace", "sa-two")
    cluster.ok("run", "plain", "--image=busybox", "-n", "sa-two")
    p = json.loads(cluster.ok("get", "pod", "plain", "-n", "sa-two", "-o", "json"))
    assert p["spec"]["serviceAccountName"] == "default" and p["spec"]["serviceAccount"] == "default"
    vol = p["spec"]["volumes"][0]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == len("kube-api-access-") + 5
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    assert p["spec"]["containers"][0]["volumeMounts"] == [
        {"name": vol["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    assert "Service Account:  default" in cluster.ok("describe", "pod", "plain", "-n", "sa-two")
    # automountServiceAccountToken: false on the account (or the Pod) leaves the token out
    cluster.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                                          "metadata": {"name": "quiet", "namespace": "sa-two"},
                                                          "automountServiceAccountToken": False,
                                                          "imagePullSecrets": [{"name": "regcred"}]}))
    cluster.ok("run", "quiet", "--image=busybox", "-n", "sa-two", "--overrides", '{"spec":{"serviceAccountName":"quiet"}}')
    q = json.loads(cluster.ok("get", "pod", "quiet", "-n", "sa-two", "-o", "json"))
    assert "volumes" not in q["spec"] and "volumeMounts" not in q["spec"]["containers"][0]
    assert q["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # a service account that does not exist
    r = cluster.kubectl("run", "lost", "--image=busybox", "-n", "sa-two", "--overrides", '{"spec":{"serviceAccountName":"ghost"}}')
    assert r.returncode != 0
    assert 'Error from server (Forbidden): pods "lost" is forbidden: error looking up service account sa-two/ghost: serviceaccount "ghost" not found' in r.stderr
    cluster.ok("delete", "namespace", "sa-two", "--wait=false")


def test_token_request_and_authentication(cluster):
    cluster.ok("create", "namespace", "sa-three")
    cluster.ok("create", "serviceaccount", "bot", "-n", "sa-three")
    token = cluster.ok("create", "token", "bot", "-n", "sa-three", "--duration=20m").strip()
    c = claims(token)
    sa = json.loads(cluster.ok("get", "sa", "bot", "-n", "sa-three", "-o", "json"))
    assert c["sub"] == "system:serviceaccount:sa-three:bot" and c["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert c["aud"] == ["https://kubernetes.default.svc.cluster.local"] and c["exp"] - c["iat"] == 1200
    assert c["kubernetes.io"] == {"namespace": "sa-three", "serviceaccount": {"name": "bot", "uid": sa["metadata"]["uid"]}}
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["kid"]
    who = cluster.ok("auth", "whoami", "--token", token, "-o", "json")
    info = json.loads(who)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:sa-three:bot" and info["uid"] == sa["metadata"]["uid"]
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:sa-three", "system:authenticated"]
    r = cluster.kubectl("get", "pods", "-n", "sa-three", "--token", token)
    assert 'User "system:serviceaccount:sa-three:bot" cannot list resource "pods" in API group "" in the namespace "sa-three"' in r.stderr
    cluster.ok("create", "rolebinding", "bot-view", "--clusterrole=view", "--serviceaccount=sa-three:bot", "-n", "sa-three")
    assert cluster.kubectl("get", "pods", "-n", "sa-three", "--token", token).returncode == 0
    # OIDC discovery, for service accounts
    conf = json.loads(cluster.ok("get", "--raw", "/.well-known/openid-configuration", "--token", token))
    assert conf["issuer"] == c["iss"] and conf["jwks_uri"].endswith("/openid/v1/jwks")
    jwks = json.loads(cluster.ok("get", "--raw", "/openid/v1/jwks", "--token", token))
    assert jwks["keys"][0]["kid"] == header["kid"] and jwks["keys"][0]["alg"] == "RS256"
    # texts
    r = cluster.kubectl("create", "token", "bot", "-n", "sa-three", "--duration=5m")
    assert ('TokenRequest.authentication.k8s.io "bot" is invalid: spec.expirationSeconds: Invalid value: 300: '
            'may not specify a duration less than 10 minutes') in r.stderr
    assert 'serviceaccounts "ghost" not found' in cluster.kubectl("create", "token", "ghost", "-n", "sa-three").stderr
    # a token bound to a Pod dies with the Pod; any token dies with its account
    cluster.ok("run", "holder", "--image=busybox", "-n", "sa-three", "--overrides", '{"spec":{"serviceAccountName":"bot"}}')
    bound = cluster.ok("create", "token", "bot", "-n", "sa-three", "--bound-object-kind=Pod", "--bound-object-name=holder").strip()
    bc = claims(bound)
    assert bc["kubernetes.io"]["pod"]["name"] == "holder"
    extra = json.loads(cluster.ok("auth", "whoami", "--token", bound, "-o", "json"))["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]
    assert extra["authentication.kubernetes.io/credential-id"] == [f"JTI={bc['jti']}"]
    cluster.ok("delete", "pod", "holder", "-n", "sa-three", "--grace-period=0", "--force")
    assert "Unauthorized" in cluster.kubectl("get", "pods", "-n", "sa-three", "--token", bound).stderr
    cluster.ok("delete", "sa", "bot", "-n", "sa-three")
    assert "Unauthorized" in cluster.kubectl("get", "pods", "-n", "sa-three", "--token", token).stderr
    cluster.ok("delete", "namespace", "sa-three", "--wait=false")


def test_token_subresource_in_discovery(cluster):
    res = json.loads(cluster.ok("get", "--raw", "/api/v1"))["resources"]
    tok = next(r for r in res if r["name"] == "serviceaccounts/token")
    assert (tok["group"], tok["version"], tok["kind"], tok["verbs"]) == ("authentication.k8s.io", "v1", "TokenRequest", ["create"])
