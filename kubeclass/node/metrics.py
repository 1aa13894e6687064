"""The node agent's Prometheus metrics, with kubelet's names (kubelet_running_pods, kubelet_running_containers,
kubelet_pod_start_duration_seconds) and ours per runtime handler: Pods started, their start latency and each
running Pod's measured sandbox overhead. Served at the agent's /metrics (the API server's client certificate
only, as its other endpoints), so `kubectl get --raw /api/v1/nodes/NODE/proxy/metrics` reads it."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..metricsexport import new_registry

_START_B = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600)


class NodeMetrics:
    def __init__(self, mgr):
        self.registry = reg = new_registry()
        running = lambda: [w for w in list(mgr.workers.values()) if getattr(w, "sandbox_ready", False) and not w.finished]
        Gauge("kubelet_running_pods", "Number of pods that have a running pod sandbox", registry=reg).set_function(
            lambda: len(running()))
        Gauge("kubelet_running_containers", "Number of containers currently running", ("container_state",),
              registry=reg).labels("running").set_function(
            lambda: sum(len(w.sandbox.running_containers()) for w in running() if getattr(w, "sandbox", None) is not None))
        self.start = Histogram("kubelet_pod_start_duration_seconds", "Duration in seconds from kubelet seeing a pod for the "
                               "first time to the pod starting to run", buckets=_START_B, registry=reg)
        self.start_by_handler = Histogram("kubeclass_node_pod_start_duration_seconds", "Seconds from the agent seeing a Pod "
                                          "to its phase Running, by runtime handler", ("runtime_handler",),
                                          buckets=_START_B, registry=reg)
        self.started = Counter("kubeclass_node_pods_started_total", "Pods that reached Running, by runtime handler",
                               ("runtime_handler",), registry=reg)
        self.overhead_memory = Gauge("kubeclass_node_sandbox_overhead_memory_bytes", "Working set of a running Pod's "
                                     "sandbox beyond its containers (measured runtime overhead)",
                                     ("runtime_handler", "namespace", "pod"), registry=reg)
        self.overhead_cpu = Gauge("kubeclass_node_sandbox_overhead_cpu_cores", "CPU a running Pod's sandbox uses beyond its "
                                  "containers (measured runtime overhead), cores", ("runtime_handler", "namespace", "pod"),
                                  registry=reg)

    def pod_started(self, handler: str, seconds: float) -> None:
        self.start.observe(seconds)
        self.start_by_handler.labels(handler).observe(seconds)
        self.started.labels(handler).inc()

    def set_overhead(self, rows: list[tuple[str, str, str, int, int]]) -> None:
        """rows: (handler, namespace, pod, memory bytes, nanocores) of every Pod measured this round."""
        self.overhead_memory.clear()
        self.overhead_cpu.clear()
        for handler, ns, pod, mem, cpu in rows:
            self.overhead_memory.labels(handler, ns, pod).set(mem)
            self.overhead_cpu.labels(handler, ns, pod).set(cpu / 1e9)
