"""The controller manager's Prometheus metrics, with client-go's workqueue names (workqueue_adds_total,
workqueue_depth, workqueue_retries_total, workqueue_work_duration_seconds, workqueue_queue_duration_seconds;
label name = the controller) and leader_election_master_status. Served at `kubeclass controllers
--secure-port` (10257; metricsexport.py)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..metricsexport import new_registry

REGISTRY = new_registry()
_B = tuple(1e-8 * 10 ** i for i in range(10))   # client-go's: 10 ns to 10 s, by tens
ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ("name",), registry=REGISTRY)
DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ("name",), registry=REGISTRY)
RETRIES = Counter("workqueue_retries_total", "Total number of retries handled by workqueue", ("name",), registry=REGISTRY)
WORK = Histogram("workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes.",
                 ("name",), buckets=_B, registry=REGISTRY)
QUEUED = Histogram("workqueue_queue_duration_seconds", "How long in seconds an item stays in workqueue before being "
                   "requested.", ("name",), buckets=_B, registry=REGISTRY)
LEADER = Gauge("leader_election_master_status", "Gauge of if the reporting system is master of the relevant lease, 0 "
               "indicates backup, 1 indicates master. 'name' is the string used to identify the lease.", ("name",),
               registry=REGISTRY)
