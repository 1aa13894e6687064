"""The ReplicationController controller (kube-controller-manager's replicationcontroller): upstream runs the
ReplicaSet controller's code for it, and so does this — the RC's map selector read as matchLabels, its Pods
owned by `v1 ReplicationController`, its events from replication-controller."""
from __future__ import annotations

from ..api import replicationcontrollers
from ..api.selectors import LabelSelector
from .replicaset import ReplicaSetController


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    group, version, plural, kind = "", "v1", "replicationcontrollers", "ReplicationController"
    api_version = "v1"

    @staticmethod
    def selector_of(owner: dict) -> LabelSelector:
        return LabelSelector.from_object(replicationcontrollers.selector(owner))
