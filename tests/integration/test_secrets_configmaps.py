"""Secrets and ConfigMaps through real kubectl (its create generators send protobuf) and the official
client: stringData folding, per-type validation, immutability, bad base64, kubectl's columns."""
from __future__ import annotations

import base64
import json

import pytest

NS = "default"


def test_kubectl_create_generators_and_columns(cluster):
    cluster.ok("create", "secret", "generic", "gen", "--from-literal=user=admin", "--from-literal=empty=")
    cluster.ok("create", "secret", "docker-registry", "regcred", "--docker-server=127.0.0.1:5000",
               "--docker-username=u", "--docker-password=p")
    cluster.ok("create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=level=3")
    data = json.loads(cluster.ok("get", "secret", "gen", "-o", "json"))["data"]
    assert data == {"user": base64.b64encode(b"admin").decode(), "empty": ""}
    reg = json.loads(cluster.ok("get", "secret", "regcred", "-o", "json"))
    assert reg["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))["auths"]
    assert auths["127.0.0.1:5000"]["username"] == "u"
    rows = {line.split()[0]: line.split() for line in cluster.ok("get", "secrets").splitlines()}
    assert rows["NAME"] == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows["gen"][1:3] == ["Opaque", "2"] and rows["regcred"][1:3] == ["kubernetes.io/dockerconfigjson", "1"]
    rows = {line.split()[0]: line.split() for line in cluster.ok("get", "cm").splitlines()}
    assert rows["NAME"] == ["NAME", "DATA", "AGE"] and rows["settings"][1] == "2"
    desc = cluster.ok("describe", "secret", "gen")
    assert "user:   5 bytes" in desc and "admin" not in desc


def test_string_data_is_folded_into_data(cluster):
    cluster.ok("apply", "-f", "-", input="""
apiVersion: v1
kind: Secret
metadata: {name: folded}
data: {keep: a2VlcA==, over: b2xk}
stringData: {over: new, plain: text}
""")
    s = json.loads(cluster.ok("get", "secret", "folded", "-o", "json"))
    assert "stringData" not in s and s["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == {"keep": "keep", "over": "new", "plain": "text"}


@pytest.mark.parametrize("doc,message", [
    ({"metadata": {"name": "badkey"}, "data": {"a b": "eA=="}},
     "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
     "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
    ({"metadata": {"name": "dots"}, "stringData": {"..x": "1"}}, "data[..x]: Invalid value: \"..x\": must not start with '..'"),
    ({"metadata": {"name": "dcj"}, "type": "kubernetes.io/dockerconfigjson", "data": {"x": "eA=="}},
     "data[.dockerconfigjson]: Required value"),
    ({"metadata": {"name": "dcj2"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "[1]"}},
     "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "),
    ({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "stringData": {"tls.crt": "x"}}, "data[tls.key]: Required value"),
    ({"metadata": {"name": "big"}, "stringData": {"a": "x" * (1024 * 1024 + 1)}}, "data: Too long: must have at most 1048576 bytes"),
])
def test_secret_validation_messages(cluster, doc, message):
    st, _, body = cluster.request("POST", f"/api/v1/namespaces/{NS}/secrets", {"apiVersion": "v1", "kind": "Secret", **doc})
    assert st == 422, body
    assert body["reason"] == "Invalid" and message in body["message"], body["message"]
    st, _, _ = cluster.request("GET", f"/api/v1/namespaces/{NS}/secrets/{doc['metadata']['name']}")
    assert st == 404


def test_bad_base64_is_a_400_and_nothing_is_stored(cluster):
    st, _, body = cluster.request("POST", f"/api/v1/namespaces/{NS}/secrets",
                                  {"metadata": {"name": "b64"}, "data": {"k": "not base64!"}})
    assert st == 400 and body["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                                             'illegal base64 data at input byte 3')
    st, _, body = cluster.request("POST", f"/api/v1/namespaces/{NS}/configmaps",
                                  {"metadata": {"name": "b64"}, "binaryData": {"k": "%%"}})
    assert st == 400 and "illegal base64 data at input byte 0" in body["message"]


def test_immutable_secret_and_type(cluster):
    cluster.ok("apply", "-f", "-", input="""
apiVersion: v1
kind: Secret
metadata: {name: frozen}
immutable: true
stringData: {k: v}
""")
    cp = cluster.kubectl("patch", "secret", "frozen", "-p", '{"stringData":{"k":"changed"}}')
    assert cp.returncode != 0
    assert 'The Secret "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set' in cp.stderr
    cp = cluster.kubectl("patch", "secret", "frozen", "--type=merge", "-p", '{"immutable":false}')
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in cp.stderr
    cp = cluster.kubectl("patch", "secret", "gen", "--type=merge", "-p", '{"type":"other"}')
    assert 'type: Invalid value: "other": field is immutable' in cp.stderr
    # labels may still change on an immutable Secret
    cluster.ok("label", "secret", "frozen", "team=a")
    assert base64.b64decode(json.loads(cluster.ok("get", "secret", "frozen", "-o", "json"))["data"]["k"]) == b"v"


def test_configmap_validation_and_immutability(cluster):
    st, _, body = cluster.request("POST", f"/api/v1/namespaces/{NS}/configmaps",
                                  {"metadata": {"name": "dup"}, "data": {"k": "v"}, "binaryData": {"k": "eA=="}})
    assert st == 422 and body["message"] == ('ConfigMap "dup" is invalid: [data[k]: Invalid value: "k": duplicate of key '
                                             'present in binaryData, binaryData[k]: Invalid value: "k": duplicate of key present in data]')
    cluster.ok("create", "configmap", "fixed", "--from-literal=a=1")
    cluster.ok("patch", "configmap", "fixed", "--type=merge", "-p", '{"immutable":true}')
    cp = cluster.kubectl("patch", "configmap", "fixed", "--type=merge", "-p", '{"data":{"a":"2"}}')
    assert "data: Forbidden: field is immutable when `immutable` is set" in cp.stderr


def test_official_client_round_trip(k8s_client):
    from kubernetes import client
    v1 = client.CoreV1Api(k8s_client)
    v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="py-secret"),
                                                    string_data={"token": "s3cret"}, type="Opaque"))
    got = v1.read_namespaced_secret("py-secret", NS)
    assert base64.b64decode(got.data["token"]) == b"s3cret" and got.string_data is None
    v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"a": "1"}))
    assert v1.read_namespaced_config_map("py-cm", NS).data == {"a": "1"}
    names = [s.metadata.name for s in v1.list_namespaced_secret(NS).items]
    assert "py-secret" in names
    v1.delete_namespaced_secret("py-secret", NS)
    with pytest.raises(client.ApiException) as e:
        v1.read_namespaced_secret("py-secret", NS)
    assert e.value.status == 404
