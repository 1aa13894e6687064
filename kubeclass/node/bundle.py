"""OCI runtime config (config.json) for a Pod's container, as kubelet + containerd's CRI would build it:
args from command/args and the image config, environment, working directory, user, capabilities,
read-only root, privileged, the default mounts and masked paths, namespaces shared with the Pod's
sandbox, and cgroup resources from requests and limits. Pure: the caller supplies paths."""
from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

from ..api import quantity

# containerd's default capability set for containers (oci.WithDefaultSpec / the CRI plugin)
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
                "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
            "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
            "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100000


class BundleError(ValueError):
    """The container cannot be configured (kubelet's CreateContainerConfigError)."""


def command_and_args(container: dict, image_config: dict, env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: command replaces the image ENTRYPOINT (and drops its CMD), args replace CMD;
    $(VAR) references expand from the container's environment, $$ escapes."""
    cfg = image_config.get("config") or {}
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = list(command) + list(args or [])
    else:
        argv = list(cfg.get("Entrypoint") or []) + list(args if args is not None else (cfg.get("Cmd") or []))
    if not argv:
        raise BundleError("no command specified")
    return [expand(a, env) for a in argv]


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def service_env(api_server_url: str) -> dict[str, str]:
    """The `kubernetes` service's variables kubelet gives every container (KUBERNETES_SERVICE_HOST, ...), so
    in-cluster clients find the API server: its ClusterIP (10.96.0.1:443, served by the agent: apiproxy.py), or
    the address the node reaches the API server at when the node has no Pod network."""
    u = urlsplit(api_server_url)
    host, port = u.hostname or "", str(u.port or 443)
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}", f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp", f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


def environment(pod: dict, container: dict, image_config: dict, node_name: str, host_ip: str,
                refs: dict | None = None, services: dict | None = None, pod_ip: str = "") -> dict[str, str]:
    """The container's environment: the image's, the services' variables, then envFrom, then env (later
    wins). `refs` holds the ConfigMap / Secret values resolved beforehand (node.volumes.env_values)."""
    refs = refs or {}
    env: dict[str, str] = {}
    for item in (image_config.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = pod["metadata"]["name"]
    env.update(services or {})
    for i, _ in enumerate(container.get("envFrom") or []):
        env.update(refs.get(("envFrom", str(i), "")) or {})
    for e in container.get("env") or []:
        if "value" in e or not e.get("valueFrom"):
            env[e["name"]] = expand(e.get("value", ""), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[e["name"]] = field_ref(pod, vf["fieldRef"].get("fieldPath", ""), node_name, host_ip, f"env {e['name']}", pod_ip)
        elif "resourceFieldRef" in vf:
            env[e["name"]] = resource_ref(container, vf["resourceFieldRef"])
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            ref, plural = (vf["configMapKeyRef"], "configmaps") if "configMapKeyRef" in vf else (vf["secretKeyRef"], "secrets")
            value = refs.get((plural, ref.get("name", ""), ref.get("key", "")))
            if value is not None:
                env[e["name"]] = value
        else:
            raise BundleError(f"env {e['name']}: unsupported valueFrom source")
    return env


def field_ref(pod: dict, path: str, node_name: str, host_ip: str, where: str = "", pod_ip: str = "") -> str:
    """A downward API fieldPath's value (env or volume); whole label / annotation maps as kubelet formats them."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted((md.get(path.split(".")[1]) or {}).items()))
    fields = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "spec.nodeName": node_name, "status.hostIP": host_ip,
              "status.hostIPs": host_ip, "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": pod_ip, "status.podIPs": pod_ip}
    if path not in fields:
        raise BundleError(f"unsupported fieldPath {path!r}" + (f" in {where}" if where else ""))
    return fields[path]


def resource_ref(container: dict, ref: dict) -> str:
    kind, _, res = ref.get("resource", "").partition(".")
    val = ((container.get("resources") or {}).get(kind) or {}).get(res)
    if val is None:
        return "0"
    div = _q(ref.get("divisor", "1"))
    return str(int(-(-_q(val) // div)))


def resolve_user(security: dict, image_config: dict, rootfs: str) -> tuple[int, int, list[int]]:
    """uid, gid, additional gids: securityContext first (container over pod), then the image's User."""
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    if uid is None:
        user = (image_config.get("config") or {}).get("User") or "0"
        name, _, group = user.partition(":")
        uid_i, gid_i = _lookup(rootfs, "passwd", name)
        uid = uid_i
        if gid is None:
            gid = _lookup(rootfs, "group", group)[0] if group else gid_i
    if gid is None:
        gid = _lookup_gid_of_uid(rootfs, uid)
    extra = [int(g) for g in security.get("supplementalGroups") or []]
    if security.get("fsGroup") is not None:
        extra.append(int(security["fsGroup"]))
    return int(uid), int(gid), extra


def _lookup(rootfs: str, db: str, name: str) -> tuple[int, int]:
    if name.isdigit():
        return int(name), 0 if db == "passwd" else int(name)
    try:
        with open(os.path.join(rootfs, "etc", db)) as f:
            for line in f:
                parts = line.strip().split(":")
                if parts and parts[0] == name and len(parts) >= 3:
                    return int(parts[2]), int(parts[3]) if db == "passwd" and len(parts) > 3 else int(parts[2])
    except OSError:
        pass
    raise BundleError(f"unable to find {'user' if db == 'passwd' else 'group'} {name}: no matching entries in {db} file")


def _lookup_gid_of_uid(rootfs: str, uid: int) -> int:
    try:
        with open(os.path.join(rootfs, "etc", "passwd")) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) > 3 and parts[2] == str(uid):
                    return int(parts[3])
    except OSError:
        pass
    return 0


def capabilities(sc: dict, privileged: bool) -> list[str]:
    if privileged:
        return list(ALL_CAPS)
    caps = list(DEFAULT_CAPS)
    c = sc.get("capabilities") or {}
    add = ["CAP_" + x.upper().removeprefix("CAP_") for x in c.get("add") or []]
    drop = ["CAP_" + x.upper().removeprefix("CAP_") for x in c.get("drop") or []]
    if "CAP_ALL" in add:
        caps = list(ALL_CAPS)
    else:
        caps += [a for a in add if a not in caps]
    if "CAP_ALL" in drop:
        caps = [a for a in add if a != "CAP_ALL"] if "CAP_ALL" not in add else []
    else:
        caps = [x for x in caps if x not in drop]
    return caps


def _q(v):
    """A quantity's exact value (a Fraction)."""
    return quantity.parse(v).value


def milli(q) -> int:
    return int(_q(q) * 1000)


def container_resources(container: dict) -> dict:
    """linux.resources: cpu.shares from the request, CFS quota from the limit, memory limit."""
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    out: dict = {}
    cpu_req = req.get("cpu") or lim.get("cpu")
    shares = max(2, milli(cpu_req) * 1024 // 1000) if cpu_req else 2
    cpu: dict = {"shares": shares}
    if lim.get("cpu"):
        cpu["quota"], cpu["period"] = max(1000, milli(lim["cpu"]) * CPU_PERIOD // 1000), CPU_PERIOD
    out["cpu"] = cpu
    if lim.get("memory"):
        out["memory"] = {"limit": int(_q(lim["memory"]))}
    return out


def applied_resources(cfg: dict, container: dict) -> tuple[dict | None, dict | None]:
    """(containerStatuses[].resources, allocatedResources) as kubelet reports them (InPlacePodVerticalScaling):
    the limits the container runs with, read back from what its OCI config applied (CPU quota, memory
    limit), and the requests it was allocated; None for what is empty."""
    res = (cfg.get("linux") or {}).get("resources") or {}
    spec_req = (container.get("resources") or {}).get("requests") or {}
    requests = {k: quantity.canonical(v) for k, v in spec_req.items()}
    limits = {}
    cpu = res.get("cpu") or {}
    if cpu.get("quota") and cpu.get("period"):
        limits["cpu"] = quantity.canonical(f"{-(-int(cpu['quota']) * 1000 // int(cpu['period']))}m")
    mem = (res.get("memory") or {}).get("limit")
    if mem:
        limits["memory"] = quantity.canonical_binary(int(mem))
    out = {**({"limits": limits} if limits else {}), **({"requests": requests} if requests else {})}
    return (out or None), (requests or None)


def pod_limits(pod: dict) -> dict:
    """The Pod-level cgroup: limits = sum of container limits + overhead (only when every container sets
    that limit, as kubelet), cpu.shares from requests + overhead."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    overhead = spec.get("overhead") or {}
    out: dict = {}
    for r in ("cpu", "memory"):
        lims = [((c.get("resources") or {}).get("limits") or {}).get(r) for c in containers]
        if lims and all(v is not None for v in lims):
            total = sum(_q(v) for v in lims)
            if r in overhead:
                total += _q(overhead[r])
            out[r] = total
    reqs = sum(_q(((c.get("resources") or {}).get("requests") or {}).get("cpu", "0")) for c in containers)
    reqs += _q(overhead.get("cpu", "0"))
    out["cpu_shares"] = max(2, int(reqs * 1024))
    return out


def spec(pod: dict, container: dict, image_config: dict, rootfs: str, *, env: dict[str, str], ns_paths: dict[str, str],
         cgroups_path: str, hostname: str | None, mounts: list[dict], annotations: dict[str, str] | None = None,
         readonly_root: bool | None = None) -> dict:
    """config.json for one container. ns_paths: namespace type -> path to join (network, ipc, uts; pid for a
    debug container sharing its target's processes)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = {**{k: v for k, v in pod_sc.items() if k in ("runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups", "fsGroup")},
          **(container.get("securityContext") or {})}
    privileged = bool(sc.get("privileged"))
    uid, gid, extra = resolve_user(sc, image_config, rootfs)
    if sc.get("runAsNonRoot") and uid == 0:
        raise BundleError("container has runAsNonRoot and image will run as root")
    args = command_and_args(container, image_config, env)
    caps = capabilities(sc, privileged)
    cwd = container.get("workingDir") or (image_config.get("config") or {}).get("WorkingDir") or "/"
    namespaces = [{"type": "pid", "path": ns_paths["pid"]} if "pid" in ns_paths else {"type": "pid"}, {"type": "mount"}]
    for t in ("network", "ipc", "uts"):
        namespaces.append({"type": t, "path": ns_paths[t]} if t in ns_paths else {"type": t})
    cfg: dict = {
        "ociVersion": "1.0.2",
        "process": {"terminal": bool(container.get("tty")), "user": {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})},
                    "args": args, "env": [f"{k}={v}" for k, v in env.items()]
                    + (["TERM=xterm"] if container.get("tty") and "TERM" not in env else []), "cwd": cwd,
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _nofile(), "soft": _nofile()}],
                    "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False},
        "root": {"path": rootfs, "readonly": bool(sc.get("readOnlyRootFilesystem")) if readonly_root is None else readonly_root},
        "mounts": default_mounts(privileged) + mounts,
        "annotations": dict(annotations or {}),
        "linux": {"namespaces": namespaces, "cgroupsPath": cgroups_path, "resources": container_resources(container)},
    }
    if hostname is not None:
        cfg["hostname"] = hostname
    if not privileged:
        cfg["linux"]["maskedPaths"] = list(MASKED_PATHS)
        cfg["linux"]["readonlyPaths"] = list(READONLY_PATHS)
    return cfg


def _nofile() -> int:
    """containerd's 1048576 open files, or the most this host allows a process."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)


def default_mounts(privileged: bool = False) -> list[dict]:
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
    ]


def bind(source: str, destination: str, readonly: bool = False) -> dict:
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["rbind", "rprivate"] + (["ro"] if readonly else ["rw"])}
