"""API machinery against a real server: auth, limits, malformed input, conflicts, selectors, paging,
watch resume / 410 / bookmarks, namespaces, pods and tables, protobuf bodies from kubectl 1.32."""
from __future__ import annotations

import json
import threading
import time


RC_PATH = "/apis/node.k8s.io/v1/runtimeclasses"


def rc(name: str, handler: str = "runc", **labels) -> dict:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name, "labels": labels}, "handler": handler}


def test_anonymous_and_bad_token_get_401(cluster):
    for token in (None, "not-a-token"):
        st, _, body = cluster.request("GET", RC_PATH, token=token)
        assert st == 401 and body["reason"] == "Unauthorized" and body["kind"] == "Status"
    st, _, body = cluster.request("GET", "/readyz", token=None)
    assert st == 200 and body == b"ok"
    st, _, body = cluster.request("GET", "/version")
    assert st == 200 and body["major"] == "1" and body["minor"] == "32"


def test_bad_input_gets_clear_errors(cluster):
    st, _, body = cluster.request("POST", RC_PATH, b"{not json", {"Content-Type": "application/json"})
    assert st == 400 and body["reason"] == "BadRequest" and "json parse error" in body["message"]
    st, _, body = cluster.request("POST", RC_PATH, b"a: [unclosed", {"Content-Type": "application/yaml"})
    assert st == 400 and body["reason"] == "BadRequest"
    big = b'{"metadata":{"name":"big"},"handler":"runc","x":"' + b"a" * (3 * 1024 * 1024 + 10) + b'"}'
    st, _, body = cluster.request("POST", RC_PATH, big, {"Content-Type": "application/json"})
    assert st == 413 and body["reason"] == "RequestEntityTooLarge"
    st, _, body = cluster.request("POST", RC_PATH, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
    assert st == 400 and "does not match the expected API version" in body["message"]
    st, _, body = cluster.request("POST", RC_PATH, {"metadata": {"name": "typed"}, "handler": 5})
    assert st == 400 and body["message"] == ('RuntimeClass in version "v1" cannot be handled as a RuntimeClass: json: cannot '
                                             'unmarshal number into Go struct field RuntimeClass.handler of type string')
    st, _, body = cluster.request("POST", RC_PATH, {"metadata": {"name": "q"}, "handler": "runc", "overhead": {"podFixed": {"cpu": "lots"}}})
    assert st == 400 and "quantities must match the regular expression" in body["message"]
    st, _, body = cluster.request("GET", "/apis/nothing.example.com/v1/widgets")
    assert st == 404 and body["reason"] == "NotFound"
    st, _, body = cluster.request("POST", "/api/v1/namespaces/default/pods", b"x", {"Content-Type": "text/plain"})
    assert st == 415 and body["reason"] == "UnsupportedMediaType"
    # nothing of the above was stored
    st, _, body = cluster.request("GET", RC_PATH)
    assert not [i for i in body["items"] if i["metadata"]["name"] in ("big", "typed", "q", "x")]


def test_no_content_type_defaults_to_json_and_field_validation(cluster):
    st, hdrs, body = cluster.request("POST", RC_PATH, json.dumps({**rc("fv"), "bogus": 1}))
    try:
        assert st == 201 and "bogus" not in body
        assert 'unknown field \\"bogus\\"' in hdrs.get("warning", "") or 'unknown field "bogus"' in hdrs.get("warning", "")
        st, _, body = cluster.request("POST", RC_PATH + "?fieldValidation=Strict", {**rc("fv2"), "bogus": 1})
        assert st == 400 and body["message"].endswith('strict decoding error: unknown field "bogus"')
        st, hdrs, _ = cluster.request("POST", RC_PATH + "?fieldValidation=Ignore", {**rc("fv3"), "bogus": 1})
        assert st == 201 and "warning" not in hdrs
    finally:
        for n in ("fv", "fv3"):
            cluster.request("DELETE", f"{RC_PATH}/{n}")


def test_optimistic_concurrency_and_dry_run(cluster):
    st, _, created = cluster.request("POST", RC_PATH, rc("occ"))
    assert st == 201
    stale = dict(created)
    st, _, updated = cluster.request("PUT", f"{RC_PATH}/occ", {**created, "metadata": {**created["metadata"], "labels": {"a": "1"}}})
    assert st == 200 and int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    st, _, body = cluster.request("PUT", f"{RC_PATH}/occ", {**stale, "metadata": {**stale["metadata"], "labels": {"b": "2"}}})
    assert st == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on runtimeclasses.node.k8s.io "occ": the object has been modified; '
                               'please apply your changes to the latest version and try again')
    no_rv = {**created, "metadata": {"name": "occ"}}
    st, _, body = cluster.request("PUT", f"{RC_PATH}/occ", no_rv)
    assert st == 422 and "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update" in body["message"]
    st, _, body = cluster.request("POST", RC_PATH + "?dryRun=All", rc("dry"))
    assert st == 201 and body["metadata"]["name"] == "dry"
    assert cluster.request("GET", f"{RC_PATH}/dry")[0] == 404
    st, _, body = cluster.request("DELETE", f"{RC_PATH}/occ?dryRun=All")
    assert st == 200 and cluster.request("GET", f"{RC_PATH}/occ")[0] == 200
    st, _, body = cluster.request("DELETE", f"{RC_PATH}/occ")
    assert st == 200 and body["status"] == "Success" and body["details"]["name"] == "occ"


def test_selectors_and_pagination(cluster):
    for i in range(7):
        cluster.request("POST", RC_PATH, rc(f"page-{i}", tier="gold" if i % 2 else "silver", paged="yes"))
    try:
        names = []
        cont = ""
        while True:
            st, _, body = cluster.request("GET", f"{RC_PATH}?labelSelector=paged%3Dyes&limit=3" + (f"&continue={cont}" if cont else ""))
            assert st == 200
            names += [i["metadata"]["name"] for i in body["items"]]
            cont = body["metadata"].get("continue")
            if not cont:
                break
        assert names == [f"page-{i}" for i in range(7)]
        st, _, body = cluster.request("GET", f"{RC_PATH}?labelSelector=tier%20in%20(gold),paged")
        assert [i["metadata"]["name"] for i in body["items"]] == ["page-1", "page-3", "page-5"]
        st, _, body = cluster.request("GET", f"{RC_PATH}?labelSelector=tier!%3Dgold,paged%3Dyes")
        assert len(body["items"]) == 4
        st, _, body = cluster.request("GET", f"{RC_PATH}?fieldSelector=metadata.name%3Dpage-2")
        assert [i["metadata"]["name"] for i in body["items"]] == ["page-2"]
        st, _, body = cluster.request("GET", f"{RC_PATH}?labelSelector=in%20in")
        assert st == 400
    finally:
        st, _, body = cluster.request("DELETE", f"{RC_PATH}?labelSelector=paged%3Dyes")
        assert st == 200 and len(body["items"]) == 7


def _stream(cluster, path: str, out: list, stop_after: int, timeout: float = 15):
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=cluster.ca())
    conn = http.client.HTTPSConnection("127.0.0.1", cluster.port, context=ctx, timeout=timeout)
    conn.request("GET", path, headers={"Authorization": f"Bearer {cluster.token()}"})
    r = conn.getresponse()
    buf = b""
    try:
        while len(out) < stop_after:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    out.append(json.loads(line))
    finally:
        conn.close()


def test_watch_resume_bookmark_and_410(cluster):
    st, _, lst = cluster.request("GET", RC_PATH)
    rv = lst["metadata"]["resourceVersion"]
    cluster.request("POST", RC_PATH, rc("w1", w="x"))
    cluster.request("PATCH", f"{RC_PATH}/w1", b'{"metadata":{"labels":{"w":"y"}}}', {"Content-Type": "application/merge-patch+json"})
    cluster.request("DELETE", f"{RC_PATH}/w1")
    events: list = []
    _stream(cluster, f"{RC_PATH}?watch=1&resourceVersion={rv}", events, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(events[1]["object"]["metadata"]["resourceVersion"])
    # label-selector watch: an object leaving the selector is seen as DELETED
    events = []
    _stream(cluster, f"{RC_PATH}?watch=true&resourceVersion={rv}&labelSelector=w%3Dx", events, 2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    # synthetic ADDED for existing objects with no resourceVersion, then timeoutSeconds ends the stream
    cluster.request("POST", RC_PATH, rc("w2"))
    events = []
    t0 = time.monotonic()
    _stream(cluster, f"{RC_PATH}?watch=True&timeoutSeconds=2&fieldSelector=metadata.name%3Dw2", events, 10)
    assert [e["type"] for e in events] == ["ADDED"] and time.monotonic() - t0 < 10
    cluster.request("DELETE", f"{RC_PATH}/w2")
    # bookmarks (the server under test sends them every second)
    events = []
    _stream(cluster, f"{RC_PATH}?watch=true&allowWatchBookmarks=true&resourceVersion={cluster.request('GET', RC_PATH)[2]['metadata']['resourceVersion']}&timeoutSeconds=3", events, 1)
    assert events and events[0]["type"] == "BOOKMARK" and events[0]["object"]["metadata"]["resourceVersion"]


def test_watch_from_compacted_revision_gets_410(fresh_cluster):
    c = fresh_cluster
    for i in range(3):
        c.request("POST", RC_PATH, rc(f"old-{i}"))
    c.stop()
    c.extra = ["--compact-interval", "0.5"]
    c.start()
    time.sleep(2.5)
    for i in range(3):
        c.request("POST", RC_PATH, rc(f"new-{i}"))
    time.sleep(1.5)
    events: list = []
    _stream(c, f"{RC_PATH}?watch=true&resourceVersion=1", events, 1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    assert events[0]["object"]["message"].startswith("too old resource version: 1 (")


def test_namespaces_lifecycle(cluster):
    cp = cluster.kubectl("run", "p", "--image=busybox", "-n", "missing-ns")
    assert cp.returncode == 1 and 'namespaces "missing-ns" not found' in cp.stderr
    cluster.ok("create", "namespace", "doomed")
    cluster.ok("create", "serviceaccount", "sa1", "-n", "doomed")
    cluster.ok("delete", "namespace", "doomed", "--timeout=20s")
    assert cluster.kubectl("get", "namespace", "doomed").returncode == 1
    assert cluster.kubectl("get", "sa", "sa1", "-n", "doomed").returncode == 1


POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: gvisor
  containers:
  - name: app
    image: nginx:alpine
    resources:
      requests:
        cpu: 100m
        memory: 128Mi
"""


def test_pods_tables_and_update_rules(cluster):
    cluster.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")
    cluster.ok("apply", "-f", "-", input=POD.format(name="tbl"))
    try:
        out = cluster.ok("get", "pods")
        assert out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        row = [l for l in out.splitlines() if l.startswith("tbl ")][0].split()
        assert row[1:4] == ["0/1", "Pending", "0"]
        wide = cluster.ok("get", "pods", "-o", "wide").splitlines()[0]
        assert wide.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
        pod = json.loads(cluster.ok("get", "pod", "tbl", "-o", "json"))
        assert pod["spec"]["restartPolicy"] == "Always" and pod["spec"]["schedulerName"] == "default-scheduler"
        assert pod["status"]["phase"] == "Pending" and pod["status"]["qosClass"] == "Burstable"
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        cp = cluster.kubectl("patch", "pod", "tbl", "-p", '{"spec":{"runtimeClassName":"other"}}')
        assert cp.returncode == 1
        assert "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`," in cp.stderr
        # then go-cmp's diff of the internal core.PodSpec, as kube-apiserver 1.32 appends it
        assert cp.stderr.split("negative)\n", 1)[1] == (
            "  core.PodSpec{\n"
            "  \t... // 24 identical fields\n"
            "  \tDNSConfig:          nil,\n"
            "  \tReadinessGates:     nil,\n"
            '- \tRuntimeClassName:   &"gvisor",\n'
            '+ \tRuntimeClassName:   &"other",\n'
            "  \tOverhead:           nil,\n"
            "  \tEnableServiceLinks: &true,\n"
            "  \t... // 5 identical fields\n"
            "  }\n\n")
        cluster.ok("patch", "pod", "tbl", "-p", '{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}')
        cluster.ok("label", "pod", "tbl", "app=web")
        assert "tbl" in cluster.ok("get", "pods", "-l", "app=web")
        # binding subresource, as a scheduler uses it
        cluster.ok("create", "-f", "-", input='{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"}}')
        st, _, _ = cluster.request("POST", "/api/v1/namespaces/default/pods/tbl/binding",
                                   {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "tbl"}, "target": {"kind": "Node", "name": "node-1"}})
        assert st == 201
        st, _, body = cluster.request("POST", "/api/v1/namespaces/default/pods/tbl/binding",
                                      {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "tbl"}, "target": {"kind": "Node", "name": "node-2"}})
        assert st == 409 and 'is already assigned to node "node-1"' in body["message"]
        assert json.loads(cluster.ok("get", "pod", "tbl", "-o", "json"))["spec"]["nodeName"] == "node-1"
        assert "node-1" in cluster.ok("get", "nodes")
    finally:
        cluster.kubectl("delete", "pod", "tbl", "--grace-period=0", "--force")
        cluster.kubectl("delete", "node", "node-1")
        cluster.kubectl("delete", "runtimeclass", "gvisor")
    assert cluster.kubectl("get", "pod", "tbl").returncode == 1


def test_kubectl_132_protobuf_generators(cluster):
    """kubectl 1.32 sends protobuf bodies for these (kubectl-compat.md section 0.2)."""
    assert cluster.ok("create", "namespace", "team-a").strip() == "namespace/team-a created"
    cluster.ok("create", "quota", "q1", "--hard=pods=5,requests.cpu=1", "-n", "team-a")
    cluster.ok("create", "role", "r1", "--verb=get,list", "--resource=pods", "-n", "team-a")
    cluster.ok("create", "rolebinding", "rb1", "--role=r1", "--user=dev", "-n", "team-a")
    cluster.ok("create", "deployment", "d1", "--image=busybox", "--replicas=2", "-n", "team-a")
    assert cluster.ok("auth", "can-i", "create", "runtimeclasses").strip() == "yes"
    q = json.loads(cluster.ok("get", "quota", "q1", "-n", "team-a", "-o", "json"))
    assert q["spec"]["hard"] == {"pods": "5", "requests.cpu": "1"}
    r = json.loads(cluster.ok("get", "role", "r1", "-n", "team-a", "-o", "json"))
    assert r["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    d = json.loads(cluster.ok("get", "deployment", "d1", "-n", "team-a", "-o", "json"))
    assert d["spec"]["replicas"] == 2 and d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    assert "d1" in cluster.ok("get", "deploy", "-n", "team-a")
    cluster.ok("scale", "deployment", "d1", "--replicas=3", "-n", "team-a")
    assert json.loads(cluster.ok("get", "deployment", "d1", "-n", "team-a", "-o", "json"))["spec"]["replicas"] == 3
    cluster.ok("delete", "namespace", "team-a", "--timeout=20s")


def test_malformed_protobuf_is_400(cluster):
    st, _, body = cluster.request("POST", "/api/v1/namespaces", b"k8s\x00\x0a\xff\xff", {"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert st == 400 and body["reason"] == "BadRequest"


def test_concurrent_writes_keep_one_winner(cluster):
    cluster.request("POST", RC_PATH, rc("race"))
    cur = cluster.request("GET", f"{RC_PATH}/race")[2]
    results = []

    def put(i):
        body = {**cur, "metadata": {**cur["metadata"], "labels": {"w": str(i)}}}
        results.append(cluster.request("PUT", f"{RC_PATH}/race", body)[0])
    ts = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    cluster.request("DELETE", f"{RC_PATH}/race")
    assert sorted(results).count(200) == 1 and results.count(409) == 7


def test_verbs_enforced_and_system_namespaces_immortal(cluster):
    st, _, body = cluster.request("DELETE", "/api/v1/namespaces", b"{}", {"Content-Type": "application/json"})
    assert st == 405 and body["reason"] == "MethodNotAllowed"
    cp = cluster.kubectl("delete", "namespace", "default")
    assert cp.returncode == 1
    assert cp.stderr.strip() == 'Error from server (Forbidden): namespaces "default" is forbidden: this namespace may not be deleted'
    assert cluster.kubectl("get", "namespace", "default").returncode == 0


def test_json_is_pretty_for_curl_and_pretty_true_as_upstream(cluster):
    """apimachinery's isPrettyPrint: ?pretty= (strconv.ParseBool) when given, else user agents starting with
    curl, Wget or Mozilla/5.0 get JSON indented by two spaces."""
    url = "/api/v1/namespaces/default"
    _, _, raw = cluster.request("GET", url, headers={"User-Agent": "kubectl/v1.32.0"})
    for ua, q, pretty in (("curl/7.88.1", "", True), ("Wget/1.21", "", True), ("Mozilla/5.0 (X11)", "", True),
                          ("kubectl/v1.32.0", "", False), ("kubectl/v1.32.0", "?pretty=true", True),
                          ("curl/7.88.1", "?pretty=false", False), ("curl/7.88.1", "?pretty=nonsense", False)):
        import http.client
        import ssl
        conn = http.client.HTTPSConnection("127.0.0.1", cluster.port, context=ssl.create_default_context(cafile=cluster.ca()))
        conn.request("GET", url + q, headers={"Authorization": f"Bearer {cluster.token()}", "User-Agent": ua})
        body = conn.getresponse().read().decode()
        conn.close()
        assert body.startswith('{\n  "kind": "Namespace",\n  "apiVersion": "v1",') == pretty, (ua, q, body[:80])
        assert json.loads(body) == raw


def test_list_items_carry_no_type_fields_for_builtin_kinds(cluster, k8s_client):
    """As upstream's typed lists (issue 16 item 7): a built-in kind's list items have no kind / apiVersion, whatever
    order the object was written in; a custom kind's (a Kyverno policy, a CRD upstream) keep them. Watch events and
    single GETs keep them too; kubectl and the official client read lists as before."""
    cluster.ok("create", "namespace", "typed-lists")
    try:
        # type fields last in the body: stored first anyway, so the list drops them by slicing
        _, _, _ = cluster.request("POST", "/api/v1/namespaces/typed-lists/configmaps",
                                  {"metadata": {"name": "late-type"}, "data": {"a": "b"}, "apiVersion": "v1", "kind": "ConfigMap"})
        cluster.ok("create", "configmap", "plain", "-n", "typed-lists", "--from-literal=x=y")
        status, _, lst = cluster.request("GET", "/api/v1/namespaces/typed-lists/configmaps")
        assert status == 200 and lst["kind"] == "ConfigMapList" and lst["apiVersion"] == "v1"
        names = {i["metadata"]["name"]: i for i in lst["items"]}
        assert {"late-type", "plain"} <= set(names)
        assert all("kind" not in i and "apiVersion" not in i for i in lst["items"])
        assert names["late-type"]["data"] == {"a": "b"}
        _, _, one = cluster.request("GET", "/api/v1/namespaces/typed-lists/configmaps/late-type")
        assert one["kind"] == "ConfigMap" and one["apiVersion"] == "v1"
        out = json.loads(cluster.ok("get", "configmaps", "-n", "typed-lists", "-o", "json"))
        assert {i["kind"] for i in out["items"]} == {"ConfigMap"}          # kubectl fills them in, as with upstream
        from kubernetes import client
        cms = client.CoreV1Api(k8s_client).list_namespaced_config_map("typed-lists")
        assert {c.metadata.name for c in cms.items} >= {"late-type", "plain"}
        cluster.ok("apply", "-f", "-", input=(
            "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: typed-list-probe\nspec:\n"
            "  validationFailureAction: Audit\n  rules:\n  - name: probe\n    match:\n      any:\n      - resources:\n"
            "          kinds: [ConfigMap]\n          namespaces: [nowhere]\n    validate:\n      message: probe\n"
            "      pattern:\n        metadata:\n          name: \"?*\"\n"))
        _, _, pols = cluster.request("GET", "/apis/kyverno.io/v1/clusterpolicies")
        assert all(i.get("kind") == "ClusterPolicy" for i in pols["items"])
    finally:
        cluster.kubectl("delete", "clusterpolicy", "typed-list-probe", "--ignore-not-found")
        cluster.kubectl("delete", "namespace", "typed-lists", "--timeout=30s")
