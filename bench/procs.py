"""Helpers the benchmarks share."""
from __future__ import annotations

import asyncio
import os
import shutil
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


async def client_for(data: str, user_agent: str):
    """An API client for the cluster in data, once `kubeclass up` has written its kubeconfig."""
    from kubeclass.client import Client, Config
    kc = os.path.join(data, "kubeconfig")
    for _ in range(300):
        try:
            return Client(Config.from_kubeconfig(kc), user_agent=user_agent)
        except (OSError, AttributeError, KeyError, StopIteration, TypeError):
            await asyncio.sleep(0.05)
    raise RuntimeError(f"no kubeconfig at {kc}")


def cleanup(server: subprocess.Popen, work: str) -> None:
    """Stop the cluster and remove its work directory (its mounts first)."""
    stop(server, 20)
    subprocess.run(["sh", "-c", f"grep {work} /proc/mounts | cut -d' ' -f2 | xargs -r umount -l"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
