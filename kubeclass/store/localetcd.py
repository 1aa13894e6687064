"""`kubeclass up --storage etcd`: one etcd member of Debian's etcd-server in the data directory (DATA/etcd),
listening on 127.0.0.1 only, started with the cluster and stopped with it (it dies with `kubeclass up`, even
after a kill -9: the parent-death signal). For users who want etcd on one machine; several machines run their own
etcd cluster and pass `kubeclass server --storage etcd --etcd-servers ...`."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start(data_dir: str, client_port: int, peer_port: int) -> subprocess.Popen:
    """Start the member (its data in data_dir/etcd, its log in data_dir/etcd.log); raises OSError with the reason."""
    if shutil.which("etcd") is None:
        raise OSError("etcd is not installed (apt-get install etcd-server; scripts/install.sh does)")
    d = os.path.join(data_dir, "etcd")
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)   # etcd refuses a data directory others can read
    log = open(os.path.join(data_dir, "etcd.log"), "ab")
    return subprocess.Popen(
        ["etcd", "--name", "kubeclass", "--data-dir", d,
         "--listen-client-urls", f"http://127.0.0.1:{client_port}", "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"kubeclass=http://127.0.0.1:{peer_port}", "--logger", "zap", "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM (etcd flushes and exits), SIGKILL after timeout."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
