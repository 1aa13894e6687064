"""A container's OCI config (as the guest sees it: VmSandbox.guest_config) turned into the line-based spec the
guest agent reads (guest/container.c), so that the agent parses no JSON. Pure: no I/O.

One record per line, fields separated by tabs; a backslash escapes a tab (\\t), a newline (\\n) or itself.
    root PATH READONLY(0|1)          the container's root directory
    cwd PATH                         the working directory (made when missing, as runc does)
    user UID GID [GID...]            the user, its group and the additional groups
    arg VALUE                        process.args, one per line, in order
    env NAME=VALUE                   process.env, one per line
    caps BOUNDING EFFECTIVE PERMITTED   capability masks (hex; bit N = capability number N)
    rlimit RESOURCE SOFT HARD        setrlimit(2) numbers
    nnp                              no_new_privs
    mount TYPE SOURCE DEST FLAGS DATA READONLY DIR   mount(2) flags (hex), data, whether to make it read-only,
                                     and whether its mount point is a directory (else a file: a bind of a file)
    mask PATH                        a masked path (linux.maskedPaths)
    readonly PATH                    a read-only path (linux.readonlyPaths)
    cgroup PATH                      the container's cgroup, one level below /sys/fs/cgroup
    cgset FILE VALUE                 a cgroup v2 interface file of that cgroup and its value
    pidns PATH                       the PID namespace to join instead of a new one (a debug container's target's,
                                     /proc/<guest pid>/ns/pid)
    stdin                            the container keeps a stdin the agent holds (`kubectl attach -i`)
    terminal                         the container's stdio is a terminal (process.terminal)
"""
from __future__ import annotations

import resource

from ..bundle import ALL_CAPS

# capability numbers: ALL_CAPS is in the kernel's order from 0 (CAP_CHOWN) to 37 (CAP_AUDIT_READ)
CAP_NUMBERS = {name: i for i, name in enumerate(ALL_CAPS + ["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"])}

# <sys/mount.h>
MS = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8, "sync": 0x10, "mand": 0x40, "dirsync": 0x80,
      "noatime": 0x400, "nodiratime": 0x800, "bind": 0x1000, "rbind": 0x1000 | 0x4000, "relatime": 0x200000,
      "strictatime": 0x1000000}
CLEARS = {"rw": "ro", "suid": "nosuid", "dev": "nodev", "exec": "noexec", "async": "sync", "atime": "noatime",
          "diratime": "nodiratime", "norelatime": "relatime"}
# propagation: every mount in the container is private (the agent makes / recursively private first)
PROPAGATION = {"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"}


MAX_BYTES = 1_000_000   # the guest agent reads requests of up to 2 MiB, and the spec travels hex-encoded


class SpecError(ValueError):
    """The config asks for something the guest agent cannot do."""


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _line(*fields) -> str:
    return "\t".join(_esc(f) for f in fields) + "\n"


def cap_mask(names) -> int:
    mask = 0
    for n in names or []:
        if n not in CAP_NUMBERS:
            raise SpecError(f"unknown capability {n!r}")
        mask |= 1 << CAP_NUMBERS[n]
    return mask


def mount_flags(options) -> tuple[int, str, bool]:
    """(mount(2) flags without MS_RDONLY, data, read-only) for an OCI mount's options."""
    flags, data, ro = 0, [], False
    for o in options or []:
        if o == "ro":
            ro = True
        elif o == "rw":
            ro = False
        elif o in MS:
            flags |= MS[o]
        elif o in CLEARS:
            flags &= ~MS[CLEARS[o]]
        elif o in PROPAGATION:
            continue
        else:
            data.append(o)
    return flags, ",".join(data), ro


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares as cgroup v2 cpu.weight, by the conversion runc and crun use."""
    return 1 + ((max(2, min(262144, shares)) - 2) * 9999) // 262142


def cgroup_settings(resources: dict) -> list[tuple[str, str]]:
    out = []
    mem = (resources.get("memory") or {}).get("limit")
    if mem is not None:
        out.append(("memory.max", str(int(mem))))
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        out.append(("cpu.weight", str(cpu_weight(int(cpu["shares"])))))
    if cpu.get("quota"):
        out.append(("cpu.max", f"{int(cpu['quota'])} {int(cpu.get('period') or 100000)}"))
    pids = (resources.get("pids") or {}).get("limit")
    if pids:
        out.append(("pids.max", str(int(pids))))
    return out


def render(cfg: dict, stdin: bool = False) -> str:
    """The spec of one container. A bind mount's "x-kubeclass-dir" (set by the sandbox, which can look at the
    host's file) says whether its source is a directory: the guest would otherwise ask over 9p. stdin: the
    container keeps a stdin (its spec's `stdin: true`)."""
    proc = cfg.get("process") or {}
    if not proc.get("args"):
        raise SpecError("process.args is empty")
    user = proc.get("user") or {}
    root = cfg.get("root") or {}
    out = [_line("root", root["path"], int(bool(root.get("readonly"))))]
    out.append(_line("cwd", proc.get("cwd") or "/"))
    out.append(_line("user", int(user.get("uid", 0)), int(user.get("gid", 0)), *[int(g) for g in user.get("additionalGids") or []]))
    out += [_line("arg", a) for a in proc["args"]]
    out += [_line("env", e) for e in proc.get("env") or []]
    caps = proc.get("capabilities") or {}
    out.append(_line("caps", *(f"{cap_mask(caps.get(k)):x}" for k in ("bounding", "effective", "permitted"))))
    for r in proc.get("rlimits") or []:
        num = getattr(resource, r["type"], None)
        if not isinstance(num, int):
            raise SpecError(f"unknown rlimit {r['type']!r}")
        out.append(_line("rlimit", num, int(r["soft"]), int(r["hard"])))
    if proc.get("noNewPrivileges"):
        out.append(_line("nnp"))
    for m in cfg.get("mounts") or []:
        flags, data, ro = mount_flags(m.get("options"))
        if m.get("type") == "bind" and not flags & MS["bind"]:
            flags |= MS["rbind"]
        is_dir = m.get("x-kubeclass-dir", True) if m.get("type") == "bind" else True
        out.append(_line("mount", m.get("type") or "none", m.get("source") or "none", m["destination"], f"{flags:x}", data,
                         int(ro), int(bool(is_dir))))
    lx = cfg.get("linux") or {}
    out += [_line("mask", p) for p in lx.get("maskedPaths") or []]
    out += [_line("readonly", p) for p in lx.get("readonlyPaths") or []]
    if proc.get("terminal"):
        out.append(_line("terminal"))
    elif stdin:
        out.append(_line("stdin"))
    pidns = next((n.get("path") for n in lx.get("namespaces") or [] if n.get("type") == "pid" and n.get("path")), None)
    if pidns:
        out.append(_line("pidns", pidns))
    if lx.get("cgroupsPath"):
        out.append(_line("cgroup", lx["cgroupsPath"]))
        out += [_line("cgset", k, v) for k, v in cgroup_settings(lx.get("resources") or {})]
    text = "".join(out)
    if len(text.encode()) > MAX_BYTES:
        raise SpecError(f"the container's spec is {len(text.encode())} bytes (its command, arguments and environment); "
                        f"a VM Pod's container can have at most {MAX_BYTES}")
    return text
