"""Shared fixtures: a real `kubeclass up` on a free 127.0.0.1 port with a temporary data directory,
driven by the real `kubectl` and the official clients."""
from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# KUBECLASS_TEST_STORAGE=etcd runs every cluster of the suite on etcd (a local member each) instead of SQLite
STORAGE = os.environ.get("KUBECLASS_TEST_STORAGE", "sqlite")
# tests of the SQLite file itself (its compaction, damage, a full disk): nothing to test on an etcd run
sqlite_only = pytest.mark.skipif(STORAGE != "sqlite", reason="tests the embedded SQLite store's file")
SEEDS = os.path.join(os.path.dirname(ROOT), "shared", "seeds")


def wait_for(fn, timeout: float = 30.0, step: float = 0.1, what: str = ""):
    """fn's first truthy result, retried (exceptions included) until the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what or fn}; last: {last!r}")


def pids_running(program: str, arg: str) -> list[int]:
    """Processes whose program ends with `program` and whose command line holds `arg` exactly."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(program.encode()) and arg.encode() in argv:
            out.append(int(p))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, data_dir: str, port: int | None = None, extra: list[str] | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.kubeconfig = os.path.join(data_dir, "kubeconfig")
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = os.path.join(data_dir, "server.log")

    def _etcd_port(self) -> int:
        """A free client port whose next port (the peer port) is free too; kept across restarts of the cluster."""
        while True:
            p = free_port()
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
            self.etcd_port = p
            return p

    def start(self, timeout: float = 15.0) -> "Cluster":
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        extra = list(self.extra)
        for flag in ("--scheduler-secure-port", "--controllers-secure-port"):   # several clusters at once: no fixed ports
            if flag not in extra:
                extra += [flag, "0"]
        if STORAGE == "etcd" and "--storage" not in extra:   # the suite on etcd: each cluster its own local member
            extra += ["--storage", "etcd", "--etcd-port", str(getattr(self, "etcd_port", None) or self._etcd_port())]
        self.proc = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "up", "--data-dir", self.data_dir,
                                      "--port", str(self.port), *extra], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        self.started = time.monotonic()
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kubeclass exited:\n" + open(self.log_path).read())
            try:
                with urllib.request.urlopen(self.url + "/readyz", context=ctx, timeout=1) as r:
                    if r.status == 200 and os.path.exists(self.kubeconfig):
                        self.ready_after = time.monotonic() - self.started
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("kubeclass did not become ready:\n" + open(self.log_path).read())

    def stop(self, sig=signal.SIGTERM) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGUSR1)   # its stacks into the log, for the failure's report
                time.sleep(1)
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def env(self) -> dict:
        return {**os.environ, "KUBECONFIG": self.kubeconfig, "KUBECACHEDIR": os.path.join(self.data_dir, "kcache")}

    def kubectl(self, *args: str, input: str | None = None, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        cp = subprocess.run(["kubectl", "--cache-dir", os.path.join(self.data_dir, "kcache"), *args], input=input,
                            capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        return cp

    def ok(self, *args: str, input: str | None = None) -> str:
        return self.kubectl(*args, input=input, check=True).stdout

    def token(self) -> str:
        import yaml
        return yaml.safe_load(open(self.kubeconfig))["users"][0]["user"]["token"]

    def ca(self) -> str:
        return os.path.join(self.data_dir, "pki", "ca.crt")

    def request(self, method: str, path: str, body: bytes | str | dict | None = None, headers: dict | None = None,
                token: str | None = "admin", timeout: float = 30):
        """Raw HTTPS request; returns (status, headers, parsed JSON or bytes)."""
        import http.client
        import json as _json
        ctx = ssl.create_default_context(cafile=self.ca())
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout)
        hdrs = dict(headers or {})
        if token == "admin":
            token = self.token()
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = _json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        try:
            parsed = _json.loads(data)
        except ValueError:
            parsed = data
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed


@pytest.fixture(scope="session")
def cluster():
    d = tempfile.mkdtemp(prefix="kubeclass-test-")
    # the control plane alone: scheduler tests bring their own cluster (tests/integration/test_scheduler.py)
    c = Cluster(d, extra=["--bookmark-interval", "1", "--no-scheduler", "--no-node"]).start()
    yield c
    c.stop()


@pytest.fixture
def fresh_cluster(tmp_path):
    c = Cluster(str(tmp_path / "data"), extra=["--no-scheduler", "--no-node"]).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def k8s_client(cluster):
    from kubernetes import client, config
    cfg = client.Configuration()
    config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=cfg)
    return client.ApiClient(cfg)
