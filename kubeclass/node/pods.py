"""Running the Pods bound to this node, as kubelet's pod workers do: resolve the RuntimeClass's handler at
run time, make the Pod's sandbox and cgroup, pull images, start init containers in order then the app
containers, restart them per restartPolicy with upstream's back-off, report container states, phase and
conditions, and on deletion stop containers gracefully (SIGTERM, grace period, SIGKILL), clean up and
confirm the deletion to the API server.

State lives on disk under DATA/pods/<uid>/ (containers/<name>/<attempt>/ with the monitor's files,
logs/<name>/<attempt>.log) so a restarted agent re-adopts what is running.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import time

from ..api import clusterdns
from ..client import ApiError, Client, now_rfc3339, path_for
from ..httpclient import TransportError
from . import bundle, cgroups, mounts, podnet, probes, volumes
from .cni import CNIError
from .handlers import Handler, HandlerTable
from .images import ImageError, ImageStore
from .podnet import PodNet, PodNetworks
from .poddir import glob_workdirs, read_json
from .runtimes import Runtime, RuntimeError_, container_state
from .sandbox import PodSandbox, make as make_sandbox, wait_exit

log = logging.getLogger("kubeclass.node")

VOLUME_RESYNC = 60.0   # seconds between rewrites of API-backed volumes (kubelet resyncs about each minute)
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0   # kubelet's container restart back-off
IMAGE_BACKOFF_START, IMAGE_BACKOFF_MAX = 10.0, 300.0


def pod_desc(pod: dict) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace', '')}({md.get('uid', '')})"


class Container:
    """One container of a Pod: its current attempt and what the last one left."""

    def __init__(self, spec: dict, init: bool, ephemeral: bool = False):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.ephemeral = ephemeral   # a debug container (kubectl debug): started once, never restarted
        self.attempt = -1            # the current attempt (restartCount = attempt)
        self.started_at = ""
        self.cid = ""
        self.last_state: dict = {}
        self.waiting: tuple[str, str] = ("", "")   # (reason, message) while it is not running for a reason
        self.backoff = 0.0
        self.retry_at = 0.0          # monotonic time the next start may happen
        self.image_id = ""
        self.start_error = ""        # the runtime's complaint when the current attempt never started
        self.done = False            # an init container that succeeded
        self.applied: tuple | None = None   # (status resources, allocatedResources) of the current attempt
        self.probes: probes.ContainerProbes | None = None   # the current attempt's probes, when it has any

    @property
    def kind(self) -> str:
        """Its list in the Pod's spec."""
        return "initContainers" if self.init else "ephemeralContainers" if self.ephemeral else "containers"

    def has_probes(self) -> bool:
        return not self.init and not self.ephemeral and any(self.spec.get(f) for f in probes.FIELDS.values())

    def workdir(self, pod_dir: str, attempt: int | None = None) -> str:
        return os.path.join(pod_dir, "containers", self.name, str(self.attempt if attempt is None else attempt))

    def log_path(self, pod_dir: str, attempt: int | None = None) -> str:
        return os.path.join(pod_dir, "logs", self.name, f"{self.attempt if attempt is None else attempt}.log")


class PodWorker:
    def __init__(self, mgr: "PodManager", pod: dict):
        self.mgr = mgr
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.dir = os.path.join(mgr.data_dir, "pods", self.uid)
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        spec = pod.get("spec") or {}
        self.containers = [Container(c, True) for c in spec.get("initContainers") or []] + \
                          [Container(c, False) for c in spec.get("containers") or []]
        self.add_ephemeral()
        self.handler: Handler | None = None
        self.sandbox: PodSandbox | None = None
        self.net: PodNet | None = None   # the Pod's network namespace and addresses (podnet.py)
        self.sandbox_ready = False
        self.sandbox_stopped = False   # a finished Pod's sandbox is stopped (kept: its containers' files)
        self.pending_events: list = []
        self.sources: volumes.Sources | None = None   # this sync's ConfigMaps and Secrets (see sync)
        self.volumes_at = 0.0   # when the API-backed volumes were last written (0: not yet)
        self.failed: tuple[str, str] | None = None   # (reason, message) of a pod that cannot run here
        self.start_time = ""
        self.last_status: dict | None = None
        self.finished = False
        self.overhead_condition: dict | None = None   # set by overhead.py once the sandbox's cost is measured
        self.seen_at = time.monotonic()   # kubelet_pod_start_duration_seconds: from here to Running
        self.start_recorded = False
        self.events_sent: set[tuple] = set()

    # ------------------------------------------------------------------ helpers
    def add_ephemeral(self) -> None:
        """Debug containers added to the Pod since (the ephemeralcontainers subresource only adds)."""
        have = {c.name for c in self.containers}
        for spec in (self.pod.get("spec") or {}).get("ephemeralContainers") or []:
            if spec.get("name") not in have:
                self.containers.append(Container(spec, False, ephemeral=True))

    def find_container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def pod_ip(self) -> str:
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            return self.mgr.address
        return self.net.ips[0] if self.net is not None and self.net.ips else ""

    @property
    def name(self) -> str:
        return f"{self.pod['metadata'].get('namespace')}/{self.pod['metadata']['name']}"

    def event(self, reason: str, message: str, type: str = "Normal", container: Container | None = None, once: bool = False) -> None:
        key = (reason, message, container.attempt if container else None)
        if once and key in self.events_sent:
            return
        self.events_sent.add(key)
        regarding = self.pod
        if container is not None:
            regarding = {**self.pod, "_fieldPath": f"spec.{container.kind}{{{container.name}}}"}
        # sent after this sync's status update: the Pod's progress is not held up behind its events
        self.pending_events.append(self.mgr.client.event(regarding, reason, message, type=type, component="kubelet",
                                                         host=self.mgr.node_name))

    def flush_events(self) -> None:
        for coro in self.pending_events:
            self.mgr.spawn(coro)
        self.pending_events = []

    def restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy", "Always")

    def state(self, workdir: str) -> dict:
        """A container attempt's state, as its sandbox tells it."""
        return self.sandbox.container_state(workdir) if self.sandbox is not None else container_state(workdir)

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        try:
            self.adopt()
            while not self.finished:
                self.wake.clear()
                try:
                    try:
                        await self.sync()
                    finally:
                        self.flush_events()
                except ApiError as e:
                    if e.status == 404:
                        # the Pod is gone from the API (deleted at once, e.g. a finished Pod): stop and clean up
                        self.pod["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                        self.pod["metadata"]["deletionGracePeriodSeconds"] = 0
                        self.wake.set()
                    else:
                        log.warning("pod %s: %s", self.name, e)
                except TransportError as e:
                    log.warning("pod %s: %s", self.name, e)
                except Exception:  # noqa: BLE001 - one pod's failure must not stop the node
                    log.exception("pod %s: sync failed", self.name)
                if self.finished:
                    break
                try:
                    await asyncio.wait_for(self.wake.wait(), self.next_wait())
                except asyncio.TimeoutError:
                    pass
        finally:
            self.mgr.workers.pop(self.uid, None)

    def next_wait(self) -> float:
        now = time.monotonic()
        due = [c.retry_at - now for c in self.containers if c.retry_at > now]
        due += [d for c in self.containers if c.probes is not None and (d := c.probes.next_due(now)) is not None]
        return max(0.05, min([1.0] + due))

    # ------------------------------------------------------------------ probes
    def probe_host(self) -> str:
        """Where probes connect, from the node as kubelet's do: the Pod's IP (the node's for a hostNetwork
        Pod); a Pod without an address of its own (no Pod network) is probed on its loopback from
        inside its network namespace."""
        return self.pod_ip() or "127.0.0.1"

    async def run_probes(self) -> None:
        now = time.monotonic()
        for c in self.containers:
            if not c.has_probes() or c.attempt < 0 or not c.cid or self.sandbox is None:
                continue
            if self.state(c.workdir(self.dir))["state"] != "running":
                continue
            if c.probes is None:
                c.probes = probes.ContainerProbes.for_container(c.spec, now)
            for s in c.probes.due(now):
                ok, msg = await probes.run(s.spec, c.spec, self.sandbox, c.cid, self.probe_host())
                verdict = c.probes.record(s, ok, time.monotonic())
                if not ok:
                    self.event("Unhealthy", f"{probes.TITLE[s.kind]} probe failed: {msg}", "Warning", container=c)
                if verdict == "failed":
                    self.event("Killing", f"Container {c.name} failed {s.kind} probe, will be restarted", container=c)
                    grace = s.spec.get("terminationGracePeriodSeconds")
                    if grace is None:
                        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    c.probes = None   # the next attempt starts its probes afresh
                    asyncio.ensure_future(self.kill_for_restart(c, c.cid, int(grace)))
                    break

    async def kill_for_restart(self, c: Container, cid: str, grace: int) -> None:
        """A failed liveness / startup probe: TERM, then KILL after the grace period; the restart policy
        does the rest once it has exited."""
        assert self.sandbox is not None
        workdir = c.workdir(self.dir)
        try:
            await self.sandbox.kill(cid, "TERM")
            if not await wait_exit(workdir, max(grace, 1), self.state):
                await self.sandbox.kill(cid, "KILL", all_procs=True)
        except Exception as e:  # noqa: BLE001 - it may have exited meanwhile
            log.debug("pod %s: killing %s: %s", self.name, c.name, e)
        self.wake.set()

    def adopt(self) -> None:
        """After an agent restart: the sandbox (first: it tells the containers' states), then each
        container's latest attempt on disk."""
        if os.path.exists(os.path.join(self.dir, "sandbox.json")):
            self.sandbox_ready = True
            self.start_recorded = True   # started before this agent ran: not a start it saw
            meta = read_json(os.path.join(self.dir, "sandbox.json"))
            self.start_time = meta.get("startTime", "")
            self.sandbox_stopped = bool(meta.get("stopped"))
            h = self.mgr.table.handlers.get(meta.get("handler", ""))
            if h is not None:
                self.handler, self.sandbox = h, self.mgr.sandbox(self, h)
                self.net = PodNetworks.load(self.dir)
                self.sandbox.adopt(meta)
        for c in self.containers:
            base = os.path.join(self.dir, "containers", c.name)
            if not os.path.isdir(base):
                continue
            attempts = sorted(int(a) for a in os.listdir(base) if a.isdigit())
            if not attempts:
                continue
            c.attempt = attempts[-1]
            meta = read_json(os.path.join(c.workdir(self.dir), "meta.json"))
            c.cid, c.started_at, c.image_id = meta.get("cid", ""), meta.get("started", ""), meta.get("image_id", "")
            c.start_error = meta.get("start_error", "")
            if len(attempts) > 1:
                prev = read_json(os.path.join(c.workdir(self.dir, attempts[-2]), "meta.json"))
                st = self.state(c.workdir(self.dir, attempts[-2]))
                if st["state"] == "exited":
                    c.last_state = {"terminated": self.terminated(st, prev.get("started", ""), prev.get("cid", ""),
                                                                  prev.get("start_error", ""))}
            st = self.state(c.workdir(self.dir))
            if c.init and st["state"] == "exited" and st["exit"] == 0:
                c.done = True

    async def sync(self) -> None:
        md = self.pod["metadata"]
        if md.get("deletionTimestamp"):
            await self.terminate(int(md.get("deletionGracePeriodSeconds") or 0))
            await self.confirm_deletion()
            self.finished = True
            return
        if self.sandbox_ready and self.sandbox is not None and not self.sandbox_stopped:
            lost = self.sandbox.lost()
            if lost:
                # as kubelet when a sandbox dies: a new one is made and the containers restart per policy
                self.event("SandboxChanged", "Pod sandbox changed, it will be killed and re-created.", once=False)
                self.event("Failed", lost, "Warning")
                await self.sandbox.stop()
                self.sandbox_ready = False
                os.unlink(os.path.join(self.dir, "sandbox.json"))
        self.add_ephemeral()
        if self.failed is None and not self.sandbox_ready:
            await self.start_sandbox()
        # one fetch per ConfigMap / Secret per sync, shared by the volumes and every container's env
        self.sources = volumes.Sources(self.mgr.client, md.get("namespace", "default"), self.mgr.tokens)
        if self.failed is None and self.sandbox_ready and not self.sandbox_stopped and await self.mount_volumes():
            await self.sync_containers()
            await self.run_probes()
        phase = await self.post_status()
        if phase in ("Succeeded", "Failed") and self.sandbox_ready and not self.sandbox_stopped and self.sandbox is not None:
            # as kubelet: a Pod that has finished keeps its logs and statuses, not its sandbox (a VM's memory)
            await self.sandbox.stop()
            if self.mgr.network is not None:
                await self.mgr.network.teardown(self.dir)   # its address is released; status keeps it, as kubelet's
            self.sandbox_stopped = True
            self.save_sandbox_meta()

    # ------------------------------------------------------------------ sandbox
    async def start_sandbox(self) -> None:
        spec = self.pod.get("spec") or {}
        if not self.start_time:
            self.start_time = now_rfc3339()
        rc_name = spec.get("runtimeClassName")
        handler_name = ""
        if rc_name:
            rc = await self.mgr.runtime_class(rc_name)
            if rc is None:
                return self.fail_sandbox(f'runtimeclass.node.k8s.io "{rc_name}" not found',
                                         f'RuntimeClass "{rc_name}" does not exist (it was deleted after the Pod was admitted)')
            handler_name = rc.get("handler", "")
        h = self.mgr.table.resolve(handler_name)
        if h is None or not h.available:
            why = f'no runtime for "{handler_name or self.mgr.table.default}" is configured'
            detail = f": {h.reason}" if h is not None and h.reason else ""
            return self.fail_sandbox(f"rpc error: code = Unknown desc = failed to get sandbox runtime: {why}",
                                     f'this node has no runtime for handler "{handler_name or self.mgr.table.default}"'
                                     f'{detail} (RuntimeClass "{rc_name}")' if rc_name else f"no default runtime{detail}")
        self.handler, self.sandbox = h, self.mgr.sandbox(self, h)
        os.makedirs(self.dir, exist_ok=True)
        self.write_etc_files()
        if self.mgr.network is not None and not spec.get("hostNetwork"):
            try:
                self.net = await self.mgr.network.setup(self.pod, self.dir)
            except (CNIError, OSError) as e:
                self.event("FailedCreatePodSandBox", f"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to "
                           f"setup network for sandbox \"{podnet.container_id(self.uid)}\": {e}", "Warning")
                return
        self.write_hosts()   # with the Pod's IPs, once CNI gave them
        try:
            cgroups.ensure_pod(self.uid, bundle.pod_limits(self.pod))
            await self.sandbox.run()
        except (RuntimeError_, OSError) as e:
            self.event("FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}", "Warning")
            return
        self.save_sandbox_meta()
        self.sandbox_ready = True
        log.info("pod %s: sandbox ready, runtime handler %r (%s)", self.name, h.name, self.sandbox.describe())

    def save_sandbox_meta(self) -> None:
        assert self.handler is not None and self.sandbox is not None
        meta = {"handler": self.handler.name, "startTime": self.start_time, "stopped": self.sandbox_stopped, **self.sandbox.meta()}
        with open(os.path.join(self.dir, "sandbox.json.tmp"), "w") as f:
            json.dump(meta, f)
        os.replace(os.path.join(self.dir, "sandbox.json.tmp"), os.path.join(self.dir, "sandbox.json"))

    def fail_sandbox(self, err: str, message: str) -> None:
        self.event("FailedCreatePodSandBox", f"Failed to create pod sandbox: {err}", "Warning", once=True)
        self.failed = ("RuntimeHandlerNotFound", message)

    def hostname(self) -> str:
        spec = self.pod.get("spec") or {}
        return (spec.get("hostname") or self.pod["metadata"]["name"])[:63]

    def write_etc_files(self) -> None:
        etc = os.path.join(self.dir, "etc")
        os.makedirs(etc, exist_ok=True)
        host = self.hostname()
        with open(os.path.join(etc, "hostname"), "w") as f:
            f.write(host + "\n")
        try:
            with open("/etc/resolv.conf") as f:
                host = f.read()
        except OSError:
            host = ""
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(clusterdns.resolv_conf(self.pod, host, self.mgr.dns_ip or None))

    def write_hosts(self) -> None:
        """/etc/hosts as kubelet writes it (the Pod's IPs with its hostname, hostAliases)."""
        node_hosts = ""
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            try:
                with open("/etc/hosts") as f:
                    node_hosts = f.read()
            except OSError:
                pass
        ips = list(self.net.ips) if self.net is not None else []
        with open(os.path.join(self.dir, "etc", "hosts"), "w") as f:   # in place: containers bind this file
            f.write(clusterdns.hosts_file(self.pod, ips, node_hosts))

    def etc_mounts(self) -> list[dict]:
        etc = os.path.join(self.dir, "etc")
        return [bundle.bind(os.path.join(etc, n), f"/etc/{n}", readonly=(n != "hosts")) for n in ("hosts", "hostname", "resolv.conf")]

    # ------------------------------------------------------------------ containers
    async def sync_containers(self) -> None:
        policy = self.restart_policy()
        for c in self.containers:
            # as kubelet: a debug container starts even while init containers run, and only once
            if c.ephemeral and c.attempt < 0:
                await self.sync_one(c, "Never")
        for c in self.containers:
            if not c.init:
                continue
            if c.done:
                continue
            await self.sync_one(c, policy if policy != "Always" else "OnFailure")
            st = self.state(c.workdir(self.dir)) if c.attempt >= 0 else {"state": "none"}
            if st["state"] == "exited" and st["exit"] == 0:
                c.done = True
                continue
            return   # init containers run one at a time, in order
        for c in self.containers:
            if not c.init and not c.ephemeral:
                await self.sync_one(c, policy)

    async def sync_one(self, c: Container, policy: str) -> None:
        if c.attempt >= 0:
            st = self.state(c.workdir(self.dir))
            if st["state"] in ("running", "created"):
                if st["state"] == "running" and c.backoff and time.time() - _epoch(c.started_at) > BACKOFF_RESET:
                    c.backoff = 0.0
                return
            # exited: restart?
            if policy == "Never" or (policy == "OnFailure" and st["exit"] == 0):
                return
            now = time.monotonic()
            if c.retry_at == 0.0:
                c.backoff = BACKOFF_START if not c.backoff else min(c.backoff * 2, BACKOFF_MAX)
                c.retry_at = now + c.backoff
            if now < c.retry_at:
                msg = f"back-off {int(c.backoff)}s restarting failed container={c.name} pod={pod_desc(self.pod)}"
                c.waiting = ("CrashLoopBackOff", msg)
                self.event("BackOff", f"Back-off restarting failed container {c.name} in pod {pod_desc(self.pod)}", "Warning",
                           container=c, once=True)
                return
            c.retry_at = 0.0
            c.last_state = {"terminated": self.terminated(st, c.started_at, c.cid, c.start_error)}
            self.cleanup_attempt(c, c.attempt)
        elif c.retry_at and time.monotonic() < c.retry_at:
            return   # image pull back-off
        await self.start_container(c)

    async def start_container(self, c: Container) -> None:
        assert self.sandbox is not None and self.handler is not None
        image = c.spec.get("image", "")
        try:
            digest = await self.ensure_image(c, image)
        except ImageError:
            c.retry_at = time.monotonic() + c.backoff
            return
        attempt = c.attempt + 1
        workdir = c.workdir(self.dir, attempt)
        log_path = c.log_path(self.dir, attempt)
        os.makedirs(workdir, exist_ok=True)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        cid = f"kc-{self.uid}-{c.name}-{attempt}"
        try:
            image_config = self.mgr.images.config(digest)
            lower = await asyncio.to_thread(self.mgr.images.rootfs, digest)
            rootfs = await asyncio.to_thread(mount_rootfs, lower, workdir)
            refs = await volumes.env_values(self.sources, c.spec)
            env = bundle.environment(self.pod, c.spec, image_config, self.mgr.node_name, self.mgr.address, refs,
                                     bundle.service_env(self.mgr.kubernetes_service or self.mgr.client.config.server),
                                     pod_ip=self.pod_ip())
            mounts = self.etc_mounts() + self.volume_mounts(c)
            cfg = bundle.spec(self.pod, c.spec, image_config, rootfs, env=env, cgroups_path=f"{cgroups.pod_path(self.uid)}/{cid}",
                              mounts=mounts, **self.sandbox.container_options(c.name, self.debug_target(c)))
        except (bundle.BundleError, volumes.SourceError, ImageError, OSError, RuntimeError_) as e:
            self.cleanup_attempt(c, attempt)
            c.waiting = ("CreateContainerConfigError", str(e))
            self.event("Failed", f"Error: {e}", "Warning", container=c, once=True)
            c.retry_at = time.monotonic() + BACKOFF_START
            return
        c.attempt, c.cid = attempt, cid
        c.probes = None
        c.image_id = digest
        self.event("Created", f"Created container: {c.name}", container=c)
        c.start_error = ""
        c.applied = bundle.applied_resources(cfg, c.spec)
        try:
            await self.sandbox.start_container(cid, workdir, log_path, cfg, stdin=bool(c.spec.get("stdin")),
                                               stdin_once=bool(c.spec.get("stdinOnce")))
        except RuntimeError_ as e:
            c.start_error = str(e)
        c.started_at = now_rfc3339()
        c.waiting = ("", "")
        with open(os.path.join(workdir, "meta.json"), "w") as f:
            json.dump({"cid": cid, "started": c.started_at, "image_id": digest, "start_error": c.start_error}, f)
        if c.start_error:
            self.event("Failed", f"Error: {c.start_error}", "Warning", container=c)
        else:
            self.event("Started", f'Started container {c.name} (runtime handler "{self.handler.name}", {self.sandbox.describe()})',
                       container=c)

    def debug_target(self, c: Container) -> tuple[str, int] | None:
        """(name, init pid) of the running container whose processes a debug container with a targetContainerName
        sees (None: it has a PID namespace of its own)."""
        t = self.find_container(c.spec.get("targetContainerName") or "") if c.ephemeral else None
        if t is None or t.attempt < 0:
            return None
        st = self.state(t.workdir(self.dir))
        return (t.name, st["pid"]) if st["state"] == "running" and st.get("pid") else None

    async def ensure_image(self, c: Container, image: str) -> str:
        policy = c.spec.get("imagePullPolicy") or "IfNotPresent"
        have = self.mgr.images.lookup(image)
        if have and policy != "Always":
            self.event("Pulled", f'Container image "{image}" already present on machine', container=c, once=True)
            return have
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            c.waiting = ("ErrImageNeverPull", msg)
            self.event("Failed", msg, "Warning", container=c, once=True)
            c.backoff = BACKOFF_START
            raise ImageError(msg)
        self.event("Pulling", f'Pulling image "{image}"', container=c)
        t0 = time.monotonic()
        try:
            digest, size = await self.mgr.pull(image, self.pod)
        except ImageError as e:
            first = c.waiting[0] != "ErrImagePull" and c.waiting[0] != "ImagePullBackOff"
            c.backoff = IMAGE_BACKOFF_START if first else min(c.backoff * 2, IMAGE_BACKOFF_MAX)
            if c.waiting[0] == "ErrImagePull":
                c.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {e}')
                self.event("BackOff", f'Back-off pulling image "{image}"', "Normal", container=c)
                self.event("Failed", "Error: ImagePullBackOff", "Warning", container=c)
            else:
                c.waiting = ("ErrImagePull", f'failed to pull and unpack image "{image}": {e}')
                self.event("Failed", f'Failed to pull image "{image}": {e}', "Warning", container=c)
                self.event("Failed", "Error: ErrImagePull", "Warning", container=c)
                c.backoff = 1.0   # the first retry comes quickly and then reports ImagePullBackOff
            raise
        secs = time.monotonic() - t0
        self.event("Pulled", f'Successfully pulled image "{image}" in {_dur(secs)} ({_dur(secs)} including waiting). '
                             f"Image size: {size} bytes.", container=c)
        return digest

    async def mount_volumes(self) -> bool:
        """Write the configMap / secret / downwardAPI / projected volumes (again each minute, so updates
        reach running containers as kubelet's sync does). False while one cannot be set up: the containers
        wait in ContainerCreating and a FailedMount event says why."""
        if self.volumes_at and time.monotonic() - self.volumes_at < VOLUME_RESYNC:
            return True
        pod_vols = [v for v in (self.pod.get("spec") or {}).get("volumes") or [] if volumes.is_projected_kind(v)]
        for v in pod_vols:
            try:
                files = await volumes.volume_files(self.sources, v, self.pod, self.downward_value)
                await asyncio.to_thread(volumes.write_atomic, os.path.join(self.dir, "volumes", v["name"]), files,
                                        tmpfs="secret" in v or "projected" in v)
            except (volumes.SourceError, bundle.BundleError) as e:
                self.event("FailedMount", f'MountVolume.SetUp failed for volume "{v["name"]}" : {e}', "Warning", once=True)
                return bool(self.volumes_at)   # volumes written before stay in use
        self.volumes_at = time.monotonic()
        return True

    def downward_value(self, path: str, ref: dict | None = None) -> str:
        if path.startswith("resource:"):
            name = (ref or {}).get("containerName", "")
            spec = next((c.spec for c in self.containers if c.name == name), None)
            if spec is None:
                raise bundle.BundleError(f"container {name!r} not found for resourceFieldRef")
            return bundle.resource_ref(spec, ref or {})
        return bundle.field_ref(self.pod, path, self.mgr.node_name, self.mgr.address, pod_ip=self.pod_ip())

    def volume_mounts(self, c: Container) -> list[dict]:
        vols = {v["name"]: v for v in (self.pod.get("spec") or {}).get("volumes") or []}
        out = []
        for vm in c.spec.get("volumeMounts") or []:
            v = vols.get(vm["name"])
            if v is None:
                raise bundle.BundleError(f"volume {vm['name']!r} is not defined")
            if "emptyDir" in v:
                src = os.path.join(self.dir, "volumes", vm["name"])
                os.makedirs(src, exist_ok=True)
                if vm.get("subPath"):
                    src = os.path.join(src, vm["subPath"].lstrip("/"))
                    os.makedirs(src, exist_ok=True)
                out.append(bundle.bind(src, vm["mountPath"], readonly=bool(vm.get("readOnly"))))
            elif "hostPath" in v:
                out.append(bundle.bind(v["hostPath"]["path"], vm["mountPath"], readonly=bool(vm.get("readOnly"))))
            elif volumes.is_projected_kind(v):
                # read-only as upstream mounts API data volumes; a subPath is the file as of now (no updates)
                src = os.path.join(self.dir, "volumes", vm["name"])
                if vm.get("subPath"):
                    src = os.path.realpath(os.path.join(src, vm["subPath"].lstrip("/")))
                    if not src.startswith(os.path.join(self.dir, "volumes", vm["name"]) + os.sep) or not os.path.exists(src):
                        raise bundle.BundleError(f"subPath {vm['subPath']!r} not found in volume {vm['name']!r}")
                out.append(bundle.bind(src, vm["mountPath"], readonly=True))
            else:
                kind = next((k for k in v if k != "name"), "unknown")
                log.warning("pod %s: volume %s of type %s is not supported on this node; not mounted", self.name, vm["name"], kind)
        return out

    def terminated(self, st: dict, started: str, cid: str, start_error: str = "") -> dict:
        """A terminated state: Completed, Error, or StartError (exit code 128) when the runtime could not
        start the process, as containerd reports it."""
        if start_error:
            return {"exitCode": 128, "reason": "StartError", "message": start_error, "startedAt": "1970-01-01T00:00:00Z",
                    "finishedAt": st.get("finished") or now_rfc3339(), "containerID": f"kubeclass://{cid}" if cid else None}
        code = st.get("exit", 0)
        reason = "OOMKilled" if st.get("oom") else "Completed" if code == 0 else "Error"
        return {"exitCode": code, "reason": reason, "startedAt": started or None,
                "finishedAt": st.get("finished") or now_rfc3339(), "containerID": f"kubeclass://{cid}" if cid else None}

    def cleanup_attempt(self, c: Container, attempt: int) -> None:
        """Remove an ended attempt's runtime state (its log stays for `kubectl logs --previous`)."""
        workdir = c.workdir(self.dir, attempt)
        umount_rootfs(workdir)
        cid = read_json(os.path.join(workdir, "meta.json")).get("cid")
        if cid and self.sandbox is not None:
            self.mgr.spawn(self.sandbox.remove_container(cid))   # the runtime's record of the ended container
        if attempt >= 1:
            # keep one previous attempt's directory (its meta and exit files), drop older ones
            older = c.workdir(self.dir, attempt - 1)
            umount_rootfs(older)
            shutil.rmtree(older, ignore_errors=True)
            old_log = c.log_path(self.dir, attempt - 1)
            if os.path.exists(old_log):
                os.unlink(old_log)

    # ------------------------------------------------------------------ termination
    async def terminate(self, grace: int) -> None:
        if self.sandbox is None:
            return
        running = [c for c in self.containers if c.attempt >= 0 and self.state(c.workdir(self.dir))["state"] != "exited"]
        for c in running:
            self.event("Killing", f"Stopping container {c.name}", container=c, once=True)
        await asyncio.gather(*(self.stop_container(c, grace) for c in running))
        await asyncio.gather(*(self.sandbox.remove_container(c.cid) for c in self.containers if c.cid and c not in running))
        await self.sandbox.stop()
        if self.mgr.network is not None:
            await self.mgr.network.teardown(self.dir)
        for c in self.containers:
            if c.attempt >= 0:
                umount_rootfs(c.workdir(self.dir))
                if c.attempt >= 1:
                    umount_rootfs(c.workdir(self.dir, c.attempt - 1))
        volumes.unmount_all(self.dir)
        cgroups.remove_pod(self.uid)

    async def stop_container(self, c: Container, grace: int) -> None:
        assert self.sandbox is not None
        workdir = c.workdir(self.dir)
        await self.sandbox.kill(c.cid, "TERM")
        if not await wait_exit(workdir, max(grace, 0), self.state):
            await self.sandbox.kill(c.cid, "KILL", all_procs=True)
            await wait_exit(workdir, 10, self.state)
        await self.sandbox.remove_container(c.cid)

    async def confirm_deletion(self) -> None:
        """As kubelet, once the containers are gone: delete with grace 0 and the Pod's uid as precondition."""
        remove_pod_dir(self.dir)
        md = self.pod["metadata"]
        self.mgr.tokens.forget(md.get("uid", ""))
        try:
            await self.mgr.client.delete(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                         {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                          "preconditions": {"uid": self.uid}})
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    # ------------------------------------------------------------------ status
    def container_status(self, c: Container) -> dict:
        spec = c.spec
        out: dict = {"name": c.name, "image": spec.get("image", ""), "imageID": c.image_id,
                     "restartCount": max(c.attempt, 0), "ready": False, "started": False}
        if c.last_state:
            out["lastState"] = c.last_state
        else:
            out["lastState"] = {}
        st = self.state(c.workdir(self.dir)) if c.attempt >= 0 else {"state": "none"}
        if c.attempt >= 0 and c.cid:
            out["containerID"] = f"kubeclass://{c.cid}"
            if c.applied is None:   # an adopted container: what its config applied
                try:
                    with open(os.path.join(c.workdir(self.dir), "config.json")) as f:
                        c.applied = bundle.applied_resources(json.load(f), c.spec)
                except (OSError, ValueError):
                    c.applied = (None, None)
            resources, allocated = c.applied
            if allocated:
                out["allocatedResources"] = allocated
            if resources:
                out["resources"] = resources
        if c.ephemeral:
            out.pop("started")   # kubelet's probe manager reports it for regular and init containers only
        if st["state"] == "running" and not c.waiting[0]:
            out["state"] = {"running": {"startedAt": c.started_at}}
            if c.has_probes():
                cp = c.probes or probes.ContainerProbes.for_container(c.spec, time.monotonic())
                out["ready"], out["started"] = cp.ready, cp.started
            elif not c.ephemeral:
                out["ready"] = not c.init
                out["started"] = True
        elif st["state"] == "exited" and not c.waiting[0]:
            out["state"] = {"terminated": self.terminated(st, c.started_at, c.cid, c.start_error)}
            out["ready"] = False
        else:
            reason, msg = c.waiting if c.waiting[0] else ("ContainerCreating", "")
            if self.failed is not None and c.attempt < 0:
                reason, msg = "ContainerCreating", ""
            out["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        return out

    def phase(self, statuses: list[dict], init_statuses: list[dict]) -> str:
        if self.failed is not None:
            return "Failed"
        policy = self.restart_policy()
        for s in init_statuses:
            term = s["state"].get("terminated")
            if term and term["exitCode"] != 0 and policy == "Never":
                return "Failed"
        if any("terminated" not in s["state"] or s["state"]["terminated"]["exitCode"] != 0 for s in init_statuses):
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for s in statuses:
            if "running" in s["state"]:
                running += 1
            elif "terminated" in s["state"]:
                stopped += 1
                succeeded += s["state"]["terminated"]["exitCode"] == 0
            elif s.get("lastState", {}).get("terminated"):
                stopped += 1
                succeeded += s["lastState"]["terminated"]["exitCode"] == 0
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"

    async def post_status(self) -> str:
        init = [self.container_status(c) for c in self.containers if c.init]
        main = [self.container_status(c) for c in self.containers if not c.init and not c.ephemeral]
        debug = [self.container_status(c) for c in self.containers if c.ephemeral]
        phase = self.phase(main, init)
        now = now_rfc3339()
        unready = [s["name"] for s in main if not s["ready"]]
        incomplete = [s["name"] for s in init if "terminated" not in s["state"] or s["state"]["terminated"]["exitCode"] != 0]
        conds = [("PodReadyToStartContainers", self.sandbox_ready and phase not in ("Succeeded", "Failed"), "", ""),
                 ("Initialized", not incomplete, "ContainersNotInitialized", f"containers with incomplete status: [{' '.join(incomplete)}]"),
                 ("Ready", not unready and phase == "Running", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"),
                 ("ContainersReady", not unready and phase == "Running", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")]
        if phase in ("Succeeded", "Failed"):
            conds = [(t, ok if t == "Initialized" else False, "PodCompleted" if phase == "Succeeded" and t != "PodReadyToStartContainers" else r,
                      "" if phase == "Succeeded" else m) for t, ok, r, m in conds]
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        conditions = []
        for t, ok, reason, message in conds:
            status = "True" if ok else "False"
            prev = old.get(t)
            c = {"type": t, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now}
            if not ok and reason:
                c["reason"] = reason
                if message:
                    c["message"] = message
            conditions.append(c)
        if "PodScheduled" in old:
            conditions.append(old["PodScheduled"])
        oc = self.overhead_condition
        if oc is not None and phase not in ("Succeeded", "Failed"):   # overhead.py's measurement
            prev = old.get(oc["type"])
            conditions.append({**{k: v for k, v in oc.items() if not k.startswith("_")}, "lastProbeTime": None,
                               "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == oc["status"] else now})
        status = {"phase": phase, "conditions": conditions, "hostIP": self.mgr.address,
                  "hostIPs": [{"ip": self.mgr.address}], "startTime": self.start_time or now,
                  "containerStatuses": main}
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            status["podIP"], status["podIPs"] = self.mgr.address, [{"ip": self.mgr.address}]
        elif self.net is not None and self.net.ips:
            status["podIP"], status["podIPs"] = self.net.ips[0], [{"ip": ip} for ip in self.net.ips]
        if init:
            status["initContainerStatuses"] = init
        if debug:
            status["ephemeralContainerStatuses"] = debug
        if self.failed is not None:
            status["reason"], status["message"] = self.failed
        qos = (self.pod.get("status") or {}).get("qosClass")
        if qos:
            status["qosClass"] = qos
        if phase == "Running" and not self.start_recorded:
            self.start_recorded = True
            m = getattr(self.mgr, "metrics", None)
            if m is not None and self.handler is not None:
                m.pod_started(self.handler.name, time.monotonic() - self.seen_at)
        comparable = json.dumps(status, sort_keys=True)
        if comparable == self.last_status:
            return phase
        md = self.pod["metadata"]
        await self.mgr.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"], "status"),
                                    {"status": status}, kind="merge")
        self.last_status = comparable
        return phase


class PodManager:
    """Every Pod bound to this node, each with its worker."""

    def __init__(self, client: Client, node_name: str, table: HandlerTable, data_dir: str, address: str):
        self.client = client
        self.node_name = node_name
        self.tokens = volumes.TokenCache()   # the Pods' service account tokens
        self.table = table
        self.data_dir = data_dir
        self.address = address
        self.images = ImageStore(os.path.join(data_dir, "images"))
        self.network: PodNetworks | None = None   # None: Pods share the node's network (--no-pod-network)
        self.kubernetes_service = ""   # https://<ClusterIP>:443 when the agent serves it (apiproxy.py)
        self.dns_ip = ""               # the cluster DNS address Pods' resolv.conf names, when the node serves it
        self.workers: dict[str, PodWorker] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._guest = None
        self._guest_lock = asyncio.Lock()
        self.vm_kernel: str | None = None
        self.vm_initrd: str | None = None
        self.vm_pool = None
        self.vm_templates = None
        self._classes: dict[str, dict] = {}
        self._classes_synced = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        from .registry import Puller
        self.puller = Puller(self.images, client)

    def spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def runtime(self, h: Handler) -> Runtime:
        rt = self._runtimes.get(h.name)
        if rt is None:
            rt = self._runtimes[h.name] = Runtime(h, self.data_dir)
        return rt

    def sandbox(self, ctx, h: Handler) -> PodSandbox:
        return make_sandbox(ctx, h, None if h.flavor == "vm" else self.runtime(h))

    async def guest(self):
        """The kernel and initramfs VM Pods boot (the initramfs is built on first use if missing)."""
        from .vm import guestimage
        async with self._guest_lock:   # the pool and the first VM Pods ask at once: one build
            if self._guest is None:
                self._guest = await asyncio.to_thread(guestimage.find, self.vm_kernel, self.vm_initrd)
        return self._guest

    async def runtime_class(self, name: str) -> dict | None:
        try:
            await asyncio.wait_for(self._classes_synced.wait(), 10)
        except asyncio.TimeoutError:
            pass
        rc = self._classes.get(name)
        if rc is None:   # the cache may lag a class created a moment ago: ask
            try:
                rc = await self.client.get(path_for("node.k8s.io", "v1", "runtimeclasses", None, name))
            except ApiError as e:
                if e.status != 404:
                    raise
        return rc

    async def pull(self, image: str, pod: dict) -> tuple[str, int]:
        return await self.puller.pull(image, pod)

    def on_class(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            self._classes = {i["metadata"]["name"]: i for i in obj.get("items", [])}
            self._classes_synced.set()
        elif typ == "DELETED":
            self._classes.pop(obj["metadata"]["name"], None)
        else:
            self._classes[obj["metadata"]["name"]] = obj

    def on_pod(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            for p in obj.get("items", []):
                p.setdefault("apiVersion", "v1")
                p.setdefault("kind", "Pod")
                self.on_pod("ADDED", p)
            self.gc_orphans({p["metadata"]["uid"] for p in obj.get("items", [])})
            return
        uid = obj["metadata"]["uid"]
        w = self.workers.get(uid)
        if typ == "DELETED":
            if w is not None:
                # deleted without our confirmation (grace 0 by a user): stop at once
                w.pod["metadata"]["deletionTimestamp"] = w.pod["metadata"].get("deletionTimestamp") or now_rfc3339()
                w.pod["metadata"]["deletionGracePeriodSeconds"] = 0
                w.wake.set()
            else:
                self.spawn(asyncio.to_thread(self.gc_orphans, set()))
            return
        if w is None:
            if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not obj["metadata"].get("deletionTimestamp") \
                    and not os.path.isdir(os.path.join(self.data_dir, "pods", uid)):
                return
            w = self.workers[uid] = PodWorker(self, obj)
            w.task = asyncio.ensure_future(w.run())
        else:
            w.pod = obj
        w.wake.set()

    def gc_orphans(self, live: set[str]) -> None:
        """Pods on disk that the API no longer has (deleted while the agent was down): kill and remove."""
        base = os.path.join(self.data_dir, "pods")
        if not os.path.isdir(base):
            return
        for uid in os.listdir(base):
            if uid in live or uid in self.workers:
                continue
            d = os.path.join(base, uid)
            meta = read_json(os.path.join(d, "sandbox.json"))
            h = self.table.handlers.get(meta.get("handler", ""))
            if h is not None:
                sb = self.sandbox(_Orphan(d, uid), h)
                sb.adopt(meta)
                sb.reap()
            else:
                from .runtimes import Sandbox
                Sandbox(d).stop()
            if self.network is not None:
                self.network.teardown_sync(d)
            for cdir in glob_workdirs(d):
                umount_rootfs(cdir)
            volumes.unmount_all(d)
            cgroups.remove_pod(uid)
            remove_pod_dir(d)

    async def run(self) -> None:
        os.makedirs(os.path.join(self.data_dir, "pods"), exist_ok=True)
        if any(h.flavor == "vm" for h in self.table.available()):
            from .vm import machine
            await asyncio.to_thread(machine.reap_stale)
        await asyncio.gather(
            self.client.informer(path_for("node.k8s.io", "v1", "runtimeclasses"), self.on_class),
            self.client.informer(path_for("", "v1", "pods"), self.on_pod, fieldSelector=f"spec.nodeName={self.node_name}"))


# ------------------------------------------------------------------------------------ rootfs mounts

def mount_rootfs(lower: str, workdir: str) -> str:
    """The container's writable root: an overlay of the image's unpacked rootfs (copied if overlayfs is
    unavailable)."""
    merged = os.path.join(workdir, "rootfs")
    upper, work = os.path.join(workdir, "upper"), os.path.join(workdir, "work")
    for d in (merged, upper, work):
        os.makedirs(d, exist_ok=True)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", merged],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(merged)
        shutil.copytree(lower, merged, symlinks=True)
        open(os.path.join(workdir, "copied"), "w").close()
    return merged


def remove_pod_dir(pod_dir: str) -> None:
    """Remove a Pod's directory, never through a mount left in it (a hostPath bind would take the host's
    files with it)."""
    if mounts.unmount_all(pod_dir):
        shutil.rmtree(pod_dir, ignore_errors=True)
    else:
        log.warning("%s still has mounts; left in place", pod_dir)


def umount_rootfs(workdir: str) -> None:
    merged = os.path.join(workdir, "rootfs")
    if os.path.ismount(merged):
        subprocess.run(["umount", "-l", merged], capture_output=True)


def _epoch(ts: str) -> float:
    import calendar
    try:
        return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except (ValueError, TypeError):
        return time.time()


def _dur(secs: float) -> str:
    """Go's time.Duration printing for the Pulled event (e.g. 1.234s, 850ms)."""
    if secs >= 1:
        return f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{secs * 1000:.0f}ms"


class _Orphan:
    """What a sandbox needs of a Pod that is gone (gc_orphans): its directory and uid."""

    def __init__(self, pod_dir: str, uid: str):
        self.dir, self.uid = pod_dir, uid
        self.containers: list = []
        self.pod: dict = {"metadata": {"uid": uid, "name": ""}, "spec": {}}
