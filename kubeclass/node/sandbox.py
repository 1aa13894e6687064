"""The pod-sandbox interface the Pod worker drives, shaped like CRI's RuntimeService (run / stop a sandbox,
start / kill / remove a container, container status), with one implementation per kind of sandbox:

- NamespaceSandbox (runc, crun and other runc-compatible runtimes): a process parked in the Pod's network,
  IPC and UTS namespaces, which every container joins;
- GVisorSandbox (runsc): one gVisor kernel per Pod (a pause container the others join, or the single
  container itself);
- vm.sandbox.VmSandbox (the Kata handlers): a VM per Pod with a guest agent that runs the containers.

PodWorker (pods.py) knows no runtime by name: it builds each container's config.json and hands it here.
As containerd's shims and Kata's virtcontainers do for kubelet, the sandbox hides what isolates the Pod.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

from . import attachsession, bundle, cgroups, cgroupstats, execsession
from .cgroupstats import Usage
from .handlers import Handler
from .poddir import glob_workdirs, read_json
from .runtimes import Runtime, RuntimeError_, Sandbox, container_state, pause_rootfs


class PodSandbox:
    """One Pod's sandbox. `ctx` is the PodWorker (pod, dir, uid, hostname(), etc_mounts(), mgr)."""

    def __init__(self, ctx, handler: Handler, runtime: Runtime | None):
        self.ctx = ctx
        self.handler = handler
        self.runtime = runtime

    # ---- RunPodSandbox / StopPodSandbox
    async def run(self) -> None:
        """Create the sandbox (raise RuntimeError_ with the reason when it cannot be)."""

    def meta(self) -> dict:
        """What sandbox.json keeps so that adopt() finds the sandbox after an agent restart."""
        return {}

    def adopt(self, meta: dict) -> None:
        """After an agent restart: take over the running sandbox that meta describes."""

    async def stop(self) -> None:
        """Stop and remove the sandbox, its containers already stopped."""

    def reap(self) -> None:
        """Kill what an orphaned Pod directory (its Pod gone while the agent was down) still runs. Synchronous."""

    def lost(self) -> str:
        """Why the sandbox died under running containers ("" while it is fine)."""
        return ""

    # ---- containers
    def container_options(self, name: str, target: tuple[str, int] | None = None) -> dict:
        """bundle.spec's ns_paths / hostname / annotations for a container of this sandbox; target: a debug
        container's target (name, init pid), whose PID namespace it joins where the runtime can."""
        return {"ns_paths": {}, "hostname": None, "annotations": {}}

    # ---- probes (ExecSync, and the Pod's network for tcpSocket / httpGet)
    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, str]:
        """Run cmd in a container: (exit code, output); asyncio.TimeoutError past timeout."""
        raise RuntimeError_("exec is not supported in this kind of Pod sandbox yet")

    def probe_netns(self) -> str | None:
        """The network namespace tcpSocket / httpGet probes connect from (None: the node's)."""
        raise RuntimeError_("tcpSocket and httpGet probes cannot reach this kind of Pod sandbox before Pods have their own "
                            "network; use an exec probe")

    # ---- streaming exec (kubectl exec / cp), as CRI's Exec
    async def exec_session(self, cid: str, workdir: str, cmd: list[str], tty: bool, stdin: bool) -> "execsession.ExecSession":
        """Start cmd in a container with its stdio streamed (a pseudo-terminal with tty). Raise RuntimeError_
        with the reason when it cannot be started."""
        raise RuntimeError_("exec into this kind of Pod sandbox is not supported yet")

    async def _runtime_exec_session(self, cid: str, workdir: str, cmd: list[str], tty: bool, stdin: bool):
        assert self.runtime is not None
        return await execsession.start(self.runtime.argv(), cid, workdir, cmd, tty, stdin, self.runtime.flavor)

    async def _runtime_exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, str]:
        assert self.runtime is not None
        proc = await asyncio.create_subprocess_exec(*self.runtime.argv(), "exec", cid, *cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(errors="replace")

    async def start_container(self, cid: str, workdir: str, log_path: str, cfg: dict, stdin: bool = False,
                              stdin_once: bool = False) -> None:
        """Create and start a container whose config.json is cfg (raise RuntimeError_ with the runtime's
        message when it could not start: the attempt is then marked ended, exit 128). stdin: the container
        keeps a stdin for `kubectl attach` (closed after the first attach ends with stdin_once)."""
        raise NotImplementedError

    # ---- attach (kubectl attach), as CRI's Attach
    async def attach_session(self, cid: str, workdir: str):
        """The container's own stdio (conmon's attach socket): an attachsession.AttachSession."""
        if self.runtime is None:
            raise RuntimeError_("attach to this kind of Pod sandbox is not supported yet")
        return await attachsession.connect(self.runtime.attach_socket(cid), workdir)

    def container_state(self, workdir: str) -> dict:
        return container_state(workdir)

    async def kill(self, cid: str, sig: str, all_procs: bool = False) -> None:
        assert self.runtime is not None
        await self.runtime.kill(cid, sig, all_procs)

    async def remove_container(self, cid: str) -> None:
        assert self.runtime is not None
        await self.runtime.delete(cid)

    def describe(self) -> str:
        return os.path.basename(self.handler.binary)

    # ---- stats, as CRI's PodSandboxStats / ContainerStats
    def running_containers(self) -> list:
        return [c for c in self.ctx.containers
                if c.cid and c.attempt >= 0 and self.container_state(c.workdir(self.ctx.dir))["state"] == "running"]

    async def usage(self) -> tuple[Usage | None, dict[str, Usage]]:
        """What the Pod's cgroup was charged (None when it has none) and what the runtime attributes to each
        running container, by name: here each container's own cgroup. The difference is the sandbox's cost."""
        base = cgroups.pod_path(self.ctx.uid)
        pod = cgroupstats.cgroup(base)
        out = {}
        for c in self.running_containers():
            u = cgroupstats.cgroup(f"{base}/{c.cid}")
            if u is not None:
                out[c.name] = u
        return pod, out

    def _write_config(self, workdir: str, cfg: dict) -> None:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(cfg, f)

    def reap_runtime_containers(self) -> None:
        """kill -9 and delete the OCI runtime's containers recorded under the Pod's directory."""
        if self.runtime is None:
            return
        for cdir in glob_workdirs(self.ctx.dir):
            cid = read_json(os.path.join(cdir, "meta.json")).get("cid")
            if cid:
                if container_state(cdir)["state"] == "running":
                    subprocess.run(self.runtime.argv() + ["kill", cid, "KILL"], capture_output=True)
                subprocess.run(self.runtime.argv() + ["delete", "--force", cid], capture_output=True)


class NamespaceSandbox(PodSandbox):
    """runc-like runtimes: containers join the namespaces held by a sandbox process."""

    async def run(self) -> None:
        # its readiness is awaited just before the first container starts, so that the image and bundle
        # work overlaps the sandbox's start
        spec = self.ctx.pod.get("spec") or {}
        net = getattr(self.ctx, "net", None)
        Sandbox(self.ctx.dir).spawn(self.ctx.hostname(), host_network=bool(spec.get("hostNetwork")),
                                    netns=net.netns if net is not None else None)

    def container_options(self, name: str, target: tuple[str, int] | None = None) -> dict:
        ns_paths = Sandbox(self.ctx.dir).ns_paths()
        if not ns_paths:
            raise RuntimeError_("the pod sandbox is gone")
        if target:
            ns_paths = {**ns_paths, "pid": f"/proc/{target[1]}/ns/pid"}
        return {"ns_paths": ns_paths, "hostname": None, "annotations": {}}

    async def start_container(self, cid: str, workdir: str, log_path: str, cfg: dict, stdin: bool = False,
                              stdin_once: bool = False) -> None:
        assert self.runtime is not None
        self._write_config(workdir, cfg)
        await Sandbox(self.ctx.dir).wait_ready()
        await self.runtime.launch(cid, workdir, workdir, log_path, stdin=stdin, stdin_once=stdin_once,
                                  tty=bool(cfg["process"].get("terminal")))

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, str]:
        return await self._runtime_exec(cid, cmd, timeout)

    async def exec_session(self, cid, workdir, cmd, tty, stdin):
        return await self._runtime_exec_session(cid, workdir, cmd, tty, stdin)

    def probe_netns(self) -> str | None:
        if (self.ctx.pod.get("spec") or {}).get("hostNetwork"):
            return None
        ns = Sandbox(self.ctx.dir).ns_paths()
        if not ns:
            raise RuntimeError_("the pod sandbox is gone")
        return ns["network"]

    async def stop(self) -> None:
        Sandbox(self.ctx.dir).stop()

    def reap(self) -> None:
        self.reap_runtime_containers()
        Sandbox(self.ctx.dir).stop()


class GVisorSandbox(PodSandbox):
    """runsc: every container of the Pod under one gVisor kernel. A Pod with one container (no init
    containers) is its own gVisor sandbox, without a pause container: one sandbox start instead of two
    (the pause one costs ~140 ms here)."""

    @property
    def single(self) -> bool:
        """A Pod of one container (debug containers, added later, are not counted: they join its sandbox)."""
        return len([c for c in self.ctx.containers if not getattr(c, "ephemeral", False)]) == 1

    def _is_root(self, name: str) -> bool:
        """The container that is the gVisor sandbox itself (a single-container Pod's one container)."""
        return self.single and any(c.name == name and not getattr(c, "ephemeral", False) for c in self.ctx.containers)

    def _root_id(self) -> str:
        """The id of the container whose sandbox the Pod's other containers join."""
        if self.single:
            return next(c.cid for c in self.ctx.containers if not getattr(c, "ephemeral", False))
        return self.sandbox_id()

    def sandbox_id(self) -> str:
        return f"kc-{self.ctx.uid}-sandbox"

    def _netns(self) -> dict[str, str]:
        """The Pod's network namespace for the gVisor sandbox's spec (its netstack takes the interface over)."""
        net = getattr(self.ctx, "net", None)
        return {"network": net.netns} if net is not None else {}

    def _network_mode(self) -> str | None:
        return "sandbox" if self._netns() else None

    async def run(self) -> None:
        if self.single:
            return
        assert self.runtime is not None
        workdir = os.path.join(self.ctx.dir, "sandbox")
        if os.path.isdir(workdir):   # a failed earlier try
            await self.runtime.delete(self.sandbox_id())
            shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        md = self.ctx.pod["metadata"]
        cfg = bundle.spec({"metadata": md, "spec": {}}, {"name": "pause", "command": ["/sleep", "2147483647"]},
                          {}, pause_rootfs(self.ctx.mgr.data_dir), env={"PATH": bundle.DEFAULT_PATH}, ns_paths=self._netns(),
                          cgroups_path=cgroups.pod_path(self.ctx.uid) + "/sandbox", hostname=self.ctx.hostname(),
                          mounts=self.ctx.etc_mounts(), readonly_root=True,
                          annotations={"io.kubernetes.cri.container-type": "sandbox",
                                       "io.kubernetes.cri.sandbox-id": self.sandbox_id(),
                                       "io.kubernetes.cri.sandbox-name": md["name"],
                                       "io.kubernetes.cri.sandbox-namespace": md.get("namespace", "")})
        self._write_config(workdir, cfg)
        await self.runtime.launch(self.sandbox_id(), workdir, workdir, os.path.join(workdir, "sandbox.log"),
                                  network=self._network_mode())

    def _pidns(self, name: str) -> str:
        """The PID namespace "path" a container's spec names. gVisor's kernel gives a container the PID namespace
        of an earlier one whose spec named the same path (it compares the names, never opens them), so every
        container names its own, and a debug container names its target's."""
        return os.path.join(self.ctx.dir, "pidns", name)

    def container_options(self, name: str, target: tuple[str, int] | None = None) -> dict:
        pidns = {"pid": self._pidns(target[0] if target else name)}
        if self._is_root(name):
            return {"ns_paths": {**self._netns(), **pidns}, "hostname": self.ctx.hostname(), "annotations": {}}
        return {"ns_paths": pidns, "hostname": None,
                "annotations": {"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": self._root_id(),
                                "io.kubernetes.cri.container-name": name}}

    async def start_container(self, cid: str, workdir: str, log_path: str, cfg: dict, stdin: bool = False,
                              stdin_once: bool = False) -> None:
        assert self.runtime is not None
        self._write_config(workdir, cfg)
        root = self._is_root(cfg.get("annotations", {}).get("io.kubernetes.cri.container-name", "")) or \
            "io.kubernetes.cri.sandbox-id" not in cfg.get("annotations", {})
        await self.runtime.launch(cid, workdir, workdir, log_path, network=self._network_mode() if root else None,
                                  stdin=stdin, stdin_once=stdin_once, tty=bool(cfg["process"].get("terminal")))

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, str]:
        return await self._runtime_exec(cid, cmd, timeout)   # inside the gVisor sandbox: its kernel runs the command

    async def exec_session(self, cid, workdir, cmd, tty, stdin):
        return await self._runtime_exec_session(cid, workdir, cmd, tty, stdin)   # under the Pod's gVisor kernel

    async def usage(self) -> tuple[Usage | None, dict[str, Usage]]:
        """gVisor runs every container in one sandbox (its kernel, the Sentry, and the Gofer), so cgroups cannot
        tell them apart; its own accounting can: `runsc events --stats` gives each container's memory as its
        kernel counts it. The Sentry's and Gofer's CPU time is the sandbox's; the rest of the Pod's (the
        application's stub processes) is split between the containers as runsc's CPU figures weigh them."""
        pod = cgroupstats.cgroup(cgroups.pod_path(self.ctx.uid))
        running = self.running_containers()
        if pod is None or not running or self.runtime is None:
            return pod, {}
        sandbox_cpu = 0
        for pid in cgroupstats.cgroup_pids(cgroups.pod_path(self.ctx.uid)):
            if cgroupstats.cmdline(pid) in ("runsc-sandbox", "runsc-gofer"):
                u = cgroupstats.process(pid)
                sandbox_cpu += u.cpu_ns if u is not None else 0
        figures: dict[str, tuple[int, int]] = {}
        for c in running:
            figures[c.name] = await self._runsc_stats(c.cid)
        app_cpu = max(0, pod.cpu_ns - sandbox_cpu)
        weight = sum(cpu for cpu, _ in figures.values())
        out = {}
        for name, (cpu, mem) in figures.items():
            share = app_cpu * cpu // weight if weight else app_cpu // len(figures)
            out[name] = Usage(share, mem, mem, mem)
        return pod, out

    RUNSC_STATS_TTL = 30.0   # seconds a container's `runsc events` figures are reused (a runsc process costs ~15 ms CPU)

    async def _runsc_stats(self, cid: str) -> tuple[int, int]:
        """(CPU ns, memory bytes) of a container as `runsc events --stats` reports them ((0, 0) when it cannot),
        at most RUNSC_STATS_TTL old."""
        import time
        cache = self.__dict__.setdefault("_runsc_cache", {})
        hit = cache.get(cid)
        if hit is not None and time.monotonic() - hit[0] < self.RUNSC_STATS_TTL:
            return hit[1]
        got = await self._runsc_stats_now(cid)
        cache[cid] = (time.monotonic(), got)
        return got

    async def _runsc_stats_now(self, cid: str) -> tuple[int, int]:
        assert self.runtime is not None
        try:
            proc = await asyncio.create_subprocess_exec(*self.runtime.argv(), "events", "--stats", cid, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                return 0, 0
            data = json.loads(out or b"{}").get("data") or {}
            return (int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0),
                    int(((data.get("memory") or {}).get("usage") or {}).get("usage") or 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0, 0

    async def stop(self) -> None:
        assert self.runtime is not None
        workdir = os.path.join(self.ctx.dir, "sandbox")
        if os.path.isdir(workdir):
            await self.runtime.kill(self.sandbox_id(), "KILL")
            await wait_exit(workdir, 5)
            await self.runtime.delete(self.sandbox_id())

    def reap(self) -> None:
        self.reap_runtime_containers()
        if self.runtime is not None and os.path.isdir(os.path.join(self.ctx.dir, "sandbox")):
            subprocess.run(self.runtime.argv() + ["kill", self.sandbox_id(), "KILL"], capture_output=True)
            subprocess.run(self.runtime.argv() + ["delete", "--force", self.sandbox_id()], capture_output=True)


async def wait_exit(workdir: str, timeout: float, state=container_state) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if state(workdir)["state"] != "running":
            return True
        await asyncio.sleep(0.05)
    return state(workdir)["state"] != "running"


def make(ctx, handler: Handler, runtime: Runtime | None) -> PodSandbox:
    """The sandbox implementation for a handler."""
    if handler.flavor == "vm":
        from .vm.sandbox import VmSandbox
        return VmSandbox(ctx, handler, None)
    if handler.flavor == "runsc":
        return GVisorSandbox(ctx, handler, runtime)
    return NamespaceSandbox(ctx, handler, runtime)
