"""bench/exec: the cost of going into the sandbox through the whole system.

- `kubectl exec POD -- true` (a new kubectl process each time: its start, the Pod GET, the WebSocket upgrade at the
  API server, the relay to the node agent, the runtime's exec) and an in-process exec round trip (one WebSocket
  exec of `true` from this process through the API server: no kubectl start), per handler (runc, runsc), next to
  a bare `<runtime> exec <id> true` of the same running container in the same run;
- port-forward throughput: 64 MiB read from a Pod's HTTP server through `kubectl port-forward` (SPDY in a
  WebSocket, relayed by the API server and the agent), next to the same read straight from the Pod's IP.

Prints p50/p99 and MB/s. Asserts nothing. Needs root, runc, runsc and the CNI plugins (scripts/install.sh)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import procs  # noqa: E402 - bench/procs.py, beside this script

IMAGE = procs.IMAGE
pct = procs.pct
SERVE = "mkdir -p /www; head -c 67108864 /dev/zero > /www/blob; exec httpd -f -p 8080 -h /www"


def kubectl(env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, **kw)


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ws_exec_once(server: str, token: str, ca: str, pod: str) -> None:
    """One exec of `true` over WebSocket (v5), waiting for the error channel's Status."""
    import websocket   # websocket-client, the official Python client's dependency
    url = server.replace("https://", "wss://") + f"/api/v1/namespaces/default/pods/{pod}/exec?command=true&stdout=true"
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], subprotocols=["v5.channel.k8s.io"],
                                     sslopt={"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED, "check_hostname": False})
    try:
        while True:
            op, data = ws.recv_data()
            if data[:1] == b"\x03":
                assert json.loads(data[1:])["status"] == "Success"
                return
    finally:
        ws.close()


def read_all(url: str) -> int:
    n = 0
    with urllib.request.urlopen(url, timeout=120) as r:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                return n
            n += len(chunk)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/exec needs root (it runs containers)")
    n = os.getpid() % 200 + 20
    server, work, data = procs.start_cluster("exec", "--pod-cidr", f"10.246.{n}.0/24", "--cni-bridge", f"kcbench{n}")
    kc = os.path.join(data, "kubeconfig")
    env = {**os.environ, "KUBECONFIG": kc, "KUBECACHEDIR": os.path.join(work, "kcache")}
    print(f"kubeclass bench/exec: {os.cpu_count()} cores, API server + scheduler + node agent + this client on one machine; "
          f"{args.execs} execs per handler")
    try:
        for _ in range(300):
            if os.path.exists(kc) and kubectl(env, "get", "node", "bench-node").returncode == 0:
                break
            time.sleep(0.1)
        classes = "".join(f"---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {h}}}\nhandler: {h}\n"
                          for h in ("runc", "runsc"))
        kubectl(env, "apply", "-f", "-", input=classes, check=True)
        for h in ("runc", "runsc"):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"x-{h}"},
                   "spec": {"runtimeClassName": h, "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                                 "command": ["sh", "-c", SERVE]}]}}
            kubectl(env, "apply", "-f", "-", input=json.dumps(pod), check=True)
        kubectl(env, "wait", "--for=condition=Ready", "pod/x-runc", "pod/x-runsc", "--timeout=120s", check=True)
        import yaml
        cfg = yaml.safe_load(open(kc))
        token, api = cfg["users"][0]["user"]["token"], cfg["clusters"][0]["cluster"]["server"]
        ca = os.path.join(data, "pki", "ca.crt")
        for h in ("runc", "runsc"):
            pod = f"x-{h}"
            uid = json.loads(kubectl(env, "get", "pod", pod, "-o", "json").stdout)["metadata"]["uid"]
            cid = f"kc-{uid}-app-0"
            root = os.path.join(data, "node", "runtime", h)
            flags = ["--root", root] + (["--network=none"] if h == "runsc" else [])
            timed(lambda: kubectl(env, "exec", pod, "--", "true", check=True), 3)     # warm-up
            kube = timed(lambda: kubectl(env, "exec", pod, "--", "true", check=True), args.execs)
            inproc = timed(lambda: ws_exec_once(api, token, ca, pod), args.execs)
            bare = timed(lambda: subprocess.run([shutil.which(h), *flags, "exec", cid, "true"], check=True,
                                                capture_output=True), args.execs)
            b50 = pct(bare, .5) * 1e3
            print(f"  {h:<6} kubectl exec -- true p50 {pct(kube, .5) * 1e3:6.1f} ms p99 {pct(kube, .99) * 1e3:6.1f} | "
                  f"WebSocket exec p50 {pct(inproc, .5) * 1e3:6.1f} ms p99 {pct(inproc, .99) * 1e3:6.1f} | bare `{h} exec` "
                  f"p50 {b50:6.1f} ms p99 {pct(bare, .99) * 1e3:6.1f} | WebSocket exec over bare, p50 "
                  f"{pct(inproc, .5) * 1e3 - b50:+.1f} ms", flush=True)
        for h in ("runc", "runsc"):
            pod = f"x-{h}"
            ip = json.loads(kubectl(env, "get", "pod", pod, "-o", "json").stdout)["status"]["podIP"]
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                local = s.getsockname()[1]
            pf = subprocess.Popen(["kubectl", "port-forward", f"pod/{pod}", f"{local}:8080"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
            pf.stdout.readline()
            try:
                read_all(f"http://127.0.0.1:{local}/blob")        # warm-up
                t0 = time.perf_counter()
                got = read_all(f"http://127.0.0.1:{local}/blob")
                fwd = got / (time.perf_counter() - t0) / 1e6
            finally:
                procs.stop(pf, 5)
            t0 = time.perf_counter()
            got = read_all(f"http://{ip}:8080/blob")
            direct = got / (time.perf_counter() - t0) / 1e6
            print(f"  {h:<6} 64 MiB through kubectl port-forward {fwd:7.1f} MB/s | straight from the Pod IP {direct:7.1f} MB/s "
                  f"| {100 * fwd / direct:5.1f} % of direct", flush=True)
    finally:
        kubectl(env, "delete", "pod", "--all", "--grace-period=1", timeout=60)
        procs.cleanup(server, work)


if __name__ == "__main__":
    main()
