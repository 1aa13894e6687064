"""Pod networking through CNI plugins, run as containerd and CRI-O run them (the CNI specification's
ADD / DEL / CHECK, libcni's conventions): the network configuration is the first file of the configuration
directory in lexical order (`*.conflist`, or a single-plugin `*.conf` / `*.json`), its plugins are executed
in order for ADD (each given the previous one's result as `prevResult`) and in reverse for DEL, with
CNI_COMMAND / CNI_CONTAINERID / CNI_NETNS / CNI_IFNAME / CNI_ARGS / CNI_PATH in the environment and the
plugin's configuration on stdin. `runtimeConfig` carries the capabilities a plugin declares
(`portMappings` for portmap: the Pod's hostPorts). Loopback is set up first with its own configuration, as
containerd does. The ADD result is kept (the Pod's directory) for DEL and CHECK, also after an agent restart.

There is no maintained Python CNI library; this is the small part of libcni a runtime needs. Calls block
(a plugin takes 10-50 ms): the agent runs them in a thread."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

LOOPBACK = {"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"}
DEFAULT_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


class CNIError(Exception):
    """A plugin failed (its code and message, as the CNI specification's error result carries them)."""


@dataclass
class NetworkConfig:
    name: str
    cni_version: str
    plugins: list[dict] = field(default_factory=list)
    path: str = ""


def load(conf_dir: str) -> NetworkConfig | None:
    """The network configuration a CRI runtime would use: the first valid file in lexical order."""
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError:
        return None
    for n in names:
        if not n.endswith((".conflist", ".conf", ".json")):
            continue
        path = os.path.join(conf_dir, n)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        if n.endswith(".conflist") or "plugins" in doc:
            plugins = [p for p in doc.get("plugins") or [] if isinstance(p, dict) and p.get("type")]
        else:
            plugins = [doc] if doc.get("type") else []
        if plugins and doc.get("name"):
            return NetworkConfig(doc["name"], str(doc.get("cniVersion") or "0.4.0"), plugins, path)
    return None


def default_config(name: str, bridge: str, subnet: str, ipam_dir: str) -> dict:
    """The configuration kubeclass writes when the directory has none: a bridge with host-local addresses
    from the node's Pod CIDR (the bridge is the Pods' gateway, outbound traffic masqueraded) and portmap for
    hostPort."""
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                  "dataDir": ipam_dir}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}


def k8s_args(namespace: str, name: str, uid: str, container_id: str) -> str:
    """CNI_ARGS as kubelet's runtimes set them."""
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}")


def ips_of(result: dict) -> list[str]:
    """The addresses an ADD result gives the container (without their prefix length), IPv4 first."""
    out = []
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", "")).split("/")[0]
        if addr:
            out.append(addr)
    return sorted(out, key=lambda a: ":" in a)


class Runner:
    def __init__(self, bin_dirs: tuple[str, ...] | list[str] = DEFAULT_BIN_DIRS, timeout: float = 60) -> None:
        self.bin_dirs = tuple(bin_dirs)
        self.timeout = timeout

    def find(self, plugin_type: str) -> str:
        if "/" in plugin_type or plugin_type.startswith("."):
            raise CNIError(f"invalid plugin type {plugin_type!r}")
        for d in self.bin_dirs:
            p = os.path.join(d, plugin_type)
            if os.access(p, os.X_OK):
                return p
        raise CNIError(f'failed to find plugin "{plugin_type}" in path {list(self.bin_dirs)}')

    def _exec(self, conf: dict, command: str, container_id: str, netns: str, ifname: str, args: str) -> dict:
        exe = self.find(conf["type"])
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": args,
               "CNI_PATH": ":".join(self.bin_dirs)}
        try:
            r = subprocess.run([exe], input=json.dumps(conf).encode(), capture_output=True, env=env, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise CNIError(f"plugin type={conf['type']!r} {command}: timed out after {self.timeout:g}s") from None
        except OSError as e:
            raise CNIError(f'plugin type="{conf["type"]}" could not run: {e}') from None
        out, err = r.stdout, r.stderr
        if r.returncode != 0:
            try:
                e = json.loads(out)
                msg = e.get("msg", "") + (f": {e['details']}" if e.get("details") else "")
            except (ValueError, AttributeError):
                msg = (err or out).decode(errors="replace").strip()
            raise CNIError(f'plugin type="{conf["type"]}" failed ({command}): {msg or f"exit status {r.returncode}"}')
        if command != "ADD" or not out.strip():
            return {}
        try:
            return json.loads(out)
        except ValueError:
            raise CNIError(f'plugin type="{conf["type"]}" returned an invalid result: {out[:200]!r}') from None

    @staticmethod
    def _conf(net: NetworkConfig, plugin: dict, prev: dict | None, runtime_config: dict) -> dict:
        conf = {**plugin, "name": net.name, "cniVersion": net.cni_version}
        if prev is not None:
            conf["prevResult"] = prev
        caps = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
        rc = {k: v for k, v in runtime_config.items() if k in caps}
        if rc:
            conf["runtimeConfig"] = rc
        return conf

    def add(self, net: NetworkConfig, container_id: str, netns: str, args: str, runtime_config: dict,
                  ifname: str = "eth0") -> dict:
        self._exec(LOOPBACK, "ADD", container_id, netns, "lo", args)
        prev: dict | None = None
        for plugin in net.plugins:
            prev = self._exec(self._conf(net, plugin, prev, runtime_config), "ADD", container_id, netns, ifname, args) or prev
        return prev or {}

    def delete(self, net: NetworkConfig, container_id: str, netns: str, args: str, runtime_config: dict,
                     prev: dict | None, ifname: str = "eth0") -> None:
        """DEL in reverse order; every plugin is called even when one fails (the first error is raised after)."""
        first: CNIError | None = None
        for plugin in reversed(net.plugins):
            try:
                self._exec(self._conf(net, plugin, prev, runtime_config), "DEL", container_id, netns, ifname, args)
            except CNIError as e:
                first = first or e
        if first is not None:
            raise first

    def check(self, net: NetworkConfig, container_id: str, netns: str, args: str, runtime_config: dict,
                    prev: dict, ifname: str = "eth0") -> None:
        for plugin in net.plugins:
            self._exec(self._conf(net, plugin, prev, runtime_config), "CHECK", container_id, netns, ifname, args)
