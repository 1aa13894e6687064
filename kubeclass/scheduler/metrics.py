"""The scheduler's Prometheus metrics, with kube-scheduler's names: scheduler_schedule_attempts_total (result:
scheduled, unschedulable, error; profile), scheduler_scheduling_attempt_duration_seconds,
scheduler_pod_scheduling_duration_seconds and its successor scheduler_pod_scheduling_sli_duration_seconds (first
seen to bound, by attempts), scheduler_pending_pods (queue: active, backoff, unschedulable) and, ours,
kubeclass_scheduler_pods_scheduled_total by runtime handler. Served at `kubeclass scheduler
--secure-port` (10259; metricsexport.py)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..metricsexport import new_registry

REGISTRY = new_registry()
_ATTEMPT_B = tuple(0.001 * 2 ** i for i in range(15))
_E2E_B = tuple(0.01 * 2 ** i for i in range(20))
ATTEMPTS = Counter("scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by the result. 'unschedulable' "
                   "means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
                   ("result", "profile"), registry=REGISTRY)
ATTEMPT_DURATION = Histogram("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds "
                             "(scheduling algorithm + binding)", ("result", "profile"), buckets=_ATTEMPT_B, registry=REGISTRY)
POD_DURATION = Histogram("scheduler_pod_scheduling_duration_seconds", "E2e latency for a pod being scheduled which may "
                         "include multiple scheduling attempts.", ("attempts",), buckets=_E2E_B, registry=REGISTRY)
POD_SLI_DURATION = Histogram("scheduler_pod_scheduling_sli_duration_seconds", "E2e latency for a pod being scheduled, from "
                             "the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
                             ("attempts",), buckets=_E2E_B, registry=REGISTRY)
PENDING = Gauge("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in "
                "activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in "
                "unschedulablePods.", ("queue",), registry=REGISTRY)
BY_HANDLER = Counter("kubeclass_scheduler_pods_scheduled_total", "Pods bound to a node, by the runtime handler their "
                     "RuntimeClass names ('' for none).", ("runtime_handler",), registry=REGISTRY)


def attempts_label(n: int) -> str:
    """kube-scheduler buckets the attempts label at 15 and more."""
    return str(n) if n < 15 else "15+"
