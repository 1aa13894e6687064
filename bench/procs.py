"""Helpers the benchmarks share."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "kubeclass.bench/busybox:1"


def pct(xs: list[float], p: float) -> float:
    """The p-quantile (0..1) of xs, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def start_cluster(name: str, *flags: str) -> tuple[subprocess.Popen, str, str]:
    """A `kubeclass up` of its own for a benchmark: a work directory, the busybox test image imported into its data
    directory, a port from the pid, node `bench-node`. Returns (process, work dir, data dir); stop it with stop()."""
    sys.path.insert(0, ROOT)
    from kubeclass.node import images
    work = tempfile.mkdtemp(prefix=f"kubeclass-bench-{name}-")
    data = os.path.join(work, "data")
    archive = os.path.join(work, "busybox.tar")
    images.write_oci_archive(archive, IMAGE, [images.busybox_layer()], {"config": {"Env": ["PATH=/bin"]}})
    subprocess.run([sys.executable, "-m", "kubeclass.cli", "image", "import", archive, "--data-dir", data], check=True,
                   cwd=ROOT, capture_output=True)
    port = 20000 + os.getpid() % 20000
    proc = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "up", "--data-dir", data, "--port", str(port),
                             "--node-port", str(port + 1), "--node-name", "bench-node", *flags],
                            cwd=ROOT, stdout=open(os.path.join(work, "up.log"), "wb"), stderr=subprocess.STDOUT)
    return proc, work, data


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within timeout seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
