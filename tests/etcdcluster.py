"""Real etcd members for the tests (Debian's etcd-server, installed by scripts/install.sh): one member, or a
cluster of several, each with its own data directory and ports on 127.0.0.1; stopped and removed by stop()."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request

from conftest import free_port


class EtcdMember:
    def __init__(self, name: str, data_dir: str, client_port: int, peer_port: int, initial_cluster: str,
                 state: str = "new", extra: list[str] | None = None):
        self.name, self.data_dir = name, data_dir
        self.extra = list(extra or [])
        self.client_port, self.peer_port = client_port, peer_port
        self.initial_cluster, self.state = initial_cluster, state
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(os.path.join(os.path.dirname(self.data_dir), f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", self.data_dir,
             "--listen-client-urls", f"http://127.0.0.1:{self.client_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{self.client_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-cluster", self.initial_cluster, "--initial-cluster-state", self.state,
             "--initial-cluster-token", "kubeclass-test", "--logger", "zap", "--log-level", "warn", *self.extra],
            stdout=log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)


class EtcdCluster:
    def __init__(self, base: str, members: int = 1, extra: list[str] | None = None):
        self.base = base
        ports = [(free_port(), free_port()) for _ in range(members)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
        self.members = [EtcdMember(f"m{i}", os.path.join(base, f"m{i}.etcd"), c, p, initial, extra=extra)
                        for i, (c, p) in enumerate(ports)]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30) -> "EtcdCluster":
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed (apt-get install etcd-server; scripts/install.sh does)")
        for m in self.members:
            m.start()
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in self.members):
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for m in self.members:
            m.kill(signal.SIGTERM)
        shutil.rmtree(self.base, ignore_errors=True)


def start_haproxy(base: str, ports: list[int], check: str = "inter 500ms") -> tuple[subprocess.Popen, int]:
    """Debian's haproxy in TCP mode on 127.0.0.1 in front of the API servers on `ports` (round robin, health-checked
    with `check`), as upstream puts kube-apiservers behind one URL; returns it and its port once it listens."""
    import socket
    from conftest import wait_for
    if shutil.which("haproxy") is None:
        raise RuntimeError("haproxy is not installed (scripts/test.sh installs it)")
    port = free_port()
    servers = "".join(f"    server s{i} 127.0.0.1:{p} check {check}\n" for i, p in enumerate(ports))
    cfg = os.path.join(base, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n"
                f"frontend api\n    bind 127.0.0.1:{port}\n    default_backend servers\n"
                f"backend servers\n    balance roundrobin\n{servers}")
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(listening, 20, what="haproxy listening")
    return proc, port
