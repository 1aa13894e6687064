"""`kubeclass controllers`: the controller manager (as kube-controller-manager). An API client only: it
elects a leader on the Lease kube-system/kube-controller-manager, then runs the enabled controllers on one
set of shared informers. `--controllers` takes upstream's syntax: `*` (every default controller), `name`,
`-name`."""
from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass

from ..client import Client, Config
from ..leaderelection import LeaderElector
from . import metrics
from .apiservice import APIServiceAvailability
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .garbagecollector import GarbageCollector
from .informers import Informers
from .job import JobController
from .namespace import NamespaceController
from .node_lifecycle import NodeLifecycle
from .replicaset import ReplicaSetController
from .replicationcontroller import ReplicationControllerController
from .resourcequota import ResourceQuotaController
from .rootcacert import RootCACertPublisher
from .serviceaccount import ServiceAccountController
from .servicelb import ServiceLB
from .ttl_after_finished import TTLAfterFinished

log = logging.getLogger("kubeclass.controllers")

ALL = ["deployment", "replicaset", "daemonset", "job", "cronjob", "ttl-after-finished", "serviceaccount", "root-ca-cert-publisher",
       "namespace", "resourcequota", "garbagecollector", "nodelifecycle", "endpoint", "endpointslice",
       "replicationcontroller", "apiservice-availability", "service-lb"]


@dataclass
class Options:
    controllers: list[str]
    node_monitor_grace_period: float = 40.0
    node_monitor_period: float = 5.0
    leader_elect: bool = True
    identity: str = ""


def enabled(spec: list[str]) -> list[str]:
    """--controllers: `*` enables the defaults, `name` one, `-name` leaves one out (upstream's syntax)."""
    on: set[str] = set()
    unknown = [s.lstrip("-") for s in spec if s != "*" and s.lstrip("-") not in ALL]
    if unknown:
        raise ValueError(f"unknown controllers {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    if "*" in spec:
        on.update(ALL)
    for s in spec:
        if s.startswith("-"):
            on.discard(s[1:])
        elif s != "*":
            on.add(s)
    return [c for c in ALL if c in on]


async def run_all(client: Client, opts: Options) -> None:
    informers = Informers(client)
    tasks = []
    names = set(opts.controllers)
    if "replicaset" in names:
        tasks.append(ReplicaSetController(client, informers).run())
    if "deployment" in names:
        tasks.append(DeploymentController(client, informers).run())
    if "daemonset" in names:
        tasks.append(DaemonSetController(client, informers).run())
    if "job" in names:
        tasks.append(JobController(client, informers).run())
    if "cronjob" in names:
        tasks.append(CronJobController(client, informers).run())
    if "ttl-after-finished" in names:
        tasks.append(TTLAfterFinished(client, informers).run())
    if "serviceaccount" in names:
        tasks.append(ServiceAccountController(client, informers).run())
    if "root-ca-cert-publisher" in names and client.config.ca_data:
        tasks.append(RootCACertPublisher(client, informers, client.config.ca_data.decode()).run())
    if "namespace" in names:
        tasks.append(NamespaceController(client, informers).run())
    if "resourcequota" in names:
        tasks.append(ResourceQuotaController(client, informers).run())
    if "garbagecollector" in names:
        gcol = GarbageCollector(client, informers)
        await gcol.discover()
        tasks.append(gcol.run())
    if "replicationcontroller" in names:
        tasks.append(ReplicationControllerController(client, informers).run())
    if "apiservice-availability" in names:
        tasks.append(APIServiceAvailability(client, informers).run())
    if "service-lb" in names:
        tasks.append(ServiceLB(client, informers).run())
    if "endpoint" in names:
        tasks.append(EndpointsController(client, informers).run())
    if "endpointslice" in names:
        tasks.append(EndpointSliceController(client, informers).run())
    if "nodelifecycle" in names:
        tasks.append(NodeLifecycle(client, opts.node_monitor_grace_period, opts.node_monitor_period).run())
    informers.start()
    log.info("controllers started: %s", ", ".join(opts.controllers))
    try:
        await asyncio.gather(*tasks)
    finally:
        await informers.close()


async def _leading(work) -> None:
    gauge = metrics.LEADER.labels("kube-controller-manager")
    gauge.set(1)
    try:
        await work
    finally:
        gauge.set(0)


async def run(kubeconfig: str, opts: Options) -> None:
    client = Client(Config.from_kubeconfig(kubeconfig), user_agent="kubeclass-controller-manager")
    try:
        if opts.leader_elect:
            identity = opts.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
            elector = LeaderElector(client, "kube-system", "kube-controller-manager", identity)
            await elector.run(lambda: _leading(run_all(client, opts)))
        else:
            await run_all(client, opts)
    finally:
        await client.close()


