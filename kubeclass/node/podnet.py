"""Each Pod's network: its own network namespace (`ip netns add kc-<uid>`, a file under /run/netns as
containerd's /var/run/netns/cni-*), joined by every container of the Pod (runc / crun through the sandbox
process, runsc through the namespace path in its sandbox's spec: gVisor's netstack then serves the veth), and
wired by the CNI plugins (cni.py) from the node's network configuration. What ADD returned is kept in the
Pod's directory (network.json): the Pod keeps its IP across agent restarts, DEL releases it, and addresses
whose Pod is gone are released when the agent starts (a leak after a crash)."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field

from . import cni

log = logging.getLogger("kubeclass.node")
NETNS_DIR = "/run/netns"


@dataclass
class Options:
    conf_dir: str = "/etc/cni/net.d"
    bin_dirs: tuple[str, ...] = cni.DEFAULT_BIN_DIRS
    pod_cidr: str = "10.244.0.0/24"
    bridge: str = "kubeclass0"
    enabled: bool = True
    service_cidr: str = "10.96.0.0/12"   # its first address is the kubernetes Service's (apiproxy.py)


@dataclass
class PodNet:
    netns: str                       # the namespace's path
    ips: list[str] = field(default_factory=list)
    gateway: str = ""


def netns_name(uid: str) -> str:
    return f"kc-{uid}"


def container_id(uid: str) -> str:
    return f"kc-{uid}"


def host_ports(pod: dict) -> list[dict]:
    """portmap's runtimeConfig.portMappings: every container port with a hostPort."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                m = {"hostPort": int(p["hostPort"]), "containerPort": int(p.get("containerPort", p["hostPort"])),
                     "protocol": str(p.get("protocol", "TCP")).lower()}
                if p.get("hostIP"):
                    m["hostIP"] = p["hostIP"]
                out.append(m)
    return out


def validate(opts: Options) -> None:
    """Raise ValueError for options that cannot work (checked when the agent starts)."""
    try:
        net = ipaddress.ip_network(opts.pod_cidr, strict=False)
    except ValueError:
        raise ValueError(f"--pod-cidr: {opts.pod_cidr!r} is not a CIDR (e.g. 10.244.0.0/24)") from None
    if net.num_addresses < 4:
        raise ValueError(f"--pod-cidr: {opts.pod_cidr} is too small for any Pod")
    if opts.service_cidr:
        try:
            ipaddress.ip_network(opts.service_cidr, strict=False)
        except ValueError:
            raise ValueError(f"--service-cluster-ip-range: {opts.service_cidr!r} is not a CIDR (e.g. 10.96.0.0/12)") from None
    if not opts.bridge or len(opts.bridge) > 15 or "/" in opts.bridge or " " in opts.bridge:
        raise ValueError(f"--cni-bridge: {opts.bridge!r} is not a valid interface name (1-15 characters)")


class PodNetworks:
    def __init__(self, opts: Options, node_dir: str) -> None:
        self.opts = opts
        self.runner = cni.Runner(opts.bin_dirs)
        self.own_dir = os.path.join(node_dir, "cni", "net.d")
        self.ipam_dir = os.path.join(node_dir, "cni", "ipam")
        self.pods_dir = os.path.join(node_dir, "pods")

    @property
    def pod_cidr(self) -> str:
        return str(ipaddress.ip_network(self.opts.pod_cidr, strict=False))

    def config(self) -> cni.NetworkConfig:
        """The user's configuration (conf_dir) when there is one, else kubeclass's default (written once)."""
        net = cni.load(self.opts.conf_dir)
        if net is not None:
            return net
        path = os.path.join(self.own_dir, "10-kubeclass.conflist")
        want = cni.default_config("kubeclass", self.opts.bridge, self.pod_cidr, self.ipam_dir)
        try:
            with open(path) as f:
                have = json.load(f)
        except (OSError, ValueError):
            have = None
        if have != want:
            os.makedirs(self.own_dir, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(want, f, indent=2)
            os.replace(path + ".tmp", path)
        net = cni.load(self.own_dir)
        assert net is not None
        return net

    @staticmethod
    def load(pod_dir: str) -> PodNet | None:
        try:
            with open(os.path.join(pod_dir, "network.json")) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return None
        return PodNet(d.get("netns", ""), cni.ips_of(d.get("result") or {}), _gateway(d.get("result") or {}))

    async def setup(self, pod: dict, pod_dir: str) -> PodNet:
        return await asyncio.to_thread(self._setup, pod, pod_dir)

    def _setup(self, pod: dict, pod_dir: str) -> PodNet:
        md = pod["metadata"]
        uid = md["uid"]
        have = self.load(pod_dir)
        if have is not None and have.ips and os.path.exists(have.netns):
            return have
        net = self.config()
        path = os.path.join(NETNS_DIR, netns_name(uid))
        if not os.path.exists(path):
            r = subprocess.run(["ip", "netns", "add", netns_name(uid)], capture_output=True, text=True)
            if r.returncode != 0:
                raise cni.CNIError(f"creating the Pod's network namespace: {r.stderr.strip()}")
        args = cni.k8s_args(md.get("namespace", ""), md["name"], uid, container_id(uid))
        rc = {"portMappings": host_ports(pod)}
        try:
            result = self.runner.add(net, container_id(uid), path, args, rc)
        except cni.CNIError:
            try:
                self.runner.delete(net, container_id(uid), path, args, rc, None)
            except cni.CNIError:
                pass
            subprocess.run(["ip", "netns", "delete", netns_name(uid)], capture_output=True)
            raise
        with open(os.path.join(pod_dir, "network.json.tmp"), "w") as f:
            json.dump({"netns": path, "containerID": container_id(uid), "config": net.path, "args": args,
                       "runtimeConfig": rc, "result": result}, f)
        os.replace(os.path.join(pod_dir, "network.json.tmp"), os.path.join(pod_dir, "network.json"))
        return PodNet(path, cni.ips_of(result), _gateway(result))

    async def teardown(self, pod_dir: str) -> None:
        await asyncio.to_thread(self.teardown_sync, pod_dir)

    def teardown_sync(self, pod_dir: str) -> None:
        """CNI DEL (the address released, hostPorts unmapped), then the namespace removed. Idempotent."""
        try:
            with open(os.path.join(pod_dir, "network.json")) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return
        net = cni.load(os.path.dirname(d.get("config", ""))) if d.get("config") else None
        if net is None or net.path != d.get("config"):
            net = self.config()
        try:
            self.runner.delete(net, d.get("containerID", ""), d.get("netns", ""), d.get("args", ""),
                               d.get("runtimeConfig") or {}, d.get("result"))
        except cni.CNIError as e:
            log.warning("releasing the network of %s: %s", os.path.basename(pod_dir), e)
        name = os.path.basename(d.get("netns", ""))
        if name.startswith("kc-"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        try:
            os.unlink(os.path.join(pod_dir, "network.json"))
        except OSError:
            pass

    def release_leaked(self) -> int:
        """Addresses host-local holds (in kubeclass's own configuration) for Pods this node no longer has:
        released. Returns how many."""
        n = 0
        try:
            networks = os.listdir(self.ipam_dir)
        except OSError:
            return 0
        for network in networks:
            d = os.path.join(self.ipam_dir, network)
            if not os.path.isdir(d):
                continue
            for f in os.listdir(d):
                path = os.path.join(d, f)
                try:
                    ipaddress.ip_address(f)
                    with open(path) as fh:
                        owner = fh.read().split()[0]
                except (ValueError, OSError, IndexError):
                    continue
                if owner.startswith("kc-") and not os.path.isdir(os.path.join(self.pods_dir, owner[3:])):
                    os.unlink(path)
                    n += 1
        return n


def _gateway(result: dict) -> str:
    for ip in result.get("ips") or []:
        if ip.get("gateway"):
            return ip["gateway"]
    return ""


POD_IFNAME = "eth0"   # CNI_IFNAME, as kubelet's runtimes name the Pod's interface


class VmNetError(Exception):
    pass


def hand_to_vm(netns: str, tap: str) -> tuple[str, str, str, int]:
    """Give a VM the Pod's network as Kata's default `tcfilter` model does: the VM's tap device moves into the
    Pod's namespace and tc redirects every frame between it and the Pod's veth both ways, so the guest, with
    the veth's MAC and address, is the Pod on the CNI network (the namespace's own stack sees nothing).
    Returns what the guest must take: (MAC, ADDRESS/PREFIX, GATEWAY, MTU)."""
    ns = os.path.basename(netns)

    def ip(*args: str) -> str:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise VmNetError(f"ip {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    try:
        link = json.loads(ip("-j", "-n", ns, "addr", "show", "dev", POD_IFNAME))[0]
        routes = json.loads(ip("-j", "-n", ns, "route", "show", "default") or "[]")
    except (ValueError, IndexError) as e:
        raise VmNetError(f"reading the Pod's interface: {e}") from None
    v4 = [a for a in link.get("addr_info") or [] if a.get("family") == "inet"]
    if not v4:
        raise VmNetError(f"the Pod's {POD_IFNAME} has no IPv4 address")
    cidr = f"{v4[0]['local']}/{v4[0]['prefixlen']}"
    gateway = next((r.get("gateway") for r in routes if r.get("gateway")), "0.0.0.0")
    ip("link", "set", "dev", tap, "netns", ns)
    ip("-n", ns, "link", "set", "dev", tap, "mtu", str(link.get("mtu", 1500)), "up")
    # the Pod's previous VM (one that died) left its redirect on the veth: replaced
    subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", POD_IFNAME, "ingress"], capture_output=True)
    for dev, to in ((POD_IFNAME, tap), (tap, POD_IFNAME)):
        for args in (["qdisc", "add", "dev", dev, "ingress"],
                     ["filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "u32", "match", "u8", "0", "0",
                      "action", "mirred", "egress", "redirect", "dev", to]):
            r = subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True)
            if r.returncode != 0:
                raise VmNetError(f"tc {' '.join(args)}: {r.stderr.strip()}")
    return link.get("address", ""), cidr, gateway, int(link.get("mtu", 1500))
