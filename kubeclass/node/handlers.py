"""Runtime handlers from the configuration operators already have: containerd's `config.toml` (versions 1,
2 and 3) and CRI-O's `crio.conf` plus `crio.conf.d/` drop-ins; without either, the OCI runtimes found on
PATH. Each handler (a RuntimeClass `handler`) maps to an OCI runtime binary with a runc-compatible CLI
(runc, crun, runsc) that the node agent runs, or to kubeclass's VM runtime (QEMU + a guest kernel, see
kubeclass/node/vm) for the handlers that name Kata Containers (Kata is not packaged for these machines:
containerd's `io.containerd.kata*.v2` types, CRI-O's `runtime_type = "vm"` and CRI-O handlers whose
runtime_path is Kata's). A handler it cannot run is kept in the table, unavailable, with the reason (and is
not published in the Node's status.runtimeHandlers).

Pure logic apart from looking binaries up on PATH and reading the files (../shared/reference/
anchors-and-configs.md section 4 has the formats).
"""
from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass, field

CONTAINERD_CRI_V1 = ("plugins", "cri", "containerd")                               # version 1 (containerd 1.0-1.7)
CONTAINERD_CRI_V2 = ("plugins", "io.containerd.grpc.v1.cri", "containerd")         # version 2 (containerd 1.3-1.7)
CONTAINERD_CRI_V3 = ("plugins", "io.containerd.cri.v1.runtime", "containerd")      # version 3 (containerd 2.x)

# containerd shim types whose OCI runtime we can drive directly (the shim is containerd's; we are our own)
RUNC_TYPES = {"io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux"}
RUNSC_TYPES = {"io.containerd.runsc.v1"}
KATA_BINARIES = {"kata-runtime", "containerd-shim-kata-v2"}   # Kata's runtime_path in CRI-O configurations
QEMU = "qemu-system-x86_64"


def is_kata_type(rtype: str) -> bool:
    """containerd's Kata shims: io.containerd.kata.v2 and io.containerd.kata-<hypervisor>.v2."""
    return rtype == "io.containerd.kata.v2" or (rtype.startswith("io.containerd.kata-") and rtype.endswith(".v2"))


def vm_machine(name: str, rtype: str) -> str:
    """The QEMU machine a Kata handler gets: microvm (virtio-mmio, no PCI, direct kernel boot: the closest
    stand-in for Firecracker's device model that QEMU has, never Firecracker itself) for Firecracker
    handlers (kata-fc), q35 for the others."""
    return "microvm" if ("-fc" in name or "firecracker" in name or "-fc." in rtype or name == "fc") else "q35"


class ConfigError(ValueError):
    """A configuration file that cannot be read (bad TOML, or a setting its runtime would refuse)."""


@dataclass
class Handler:
    name: str                      # the CRI runtime handler: RuntimeClass.handler
    runtime_type: str              # containerd runtime_type or CRI-O runtime_type ("oci", "vm")
    binary: str = ""               # the OCI runtime binary, resolved to a path when found
    root: str = ""                 # --root for the runtime (state directory); "" = the runtime's default
    systemd_cgroup: bool = False   # containerd runc options.SystemdCgroup
    config_path: str = ""          # runsc options.ConfigPath (a runsc.toml with [runsc_config] flags)
    flags: dict[str, str] = field(default_factory=dict)   # extra global flags (runsc_config)
    available: bool = True
    reason: str = ""
    default: bool = False
    source: str = ""               # the file it came from, or "PATH"
    machine: str = ""              # VM handlers: the QEMU machine type (q35, microvm)

    @property
    def flavor(self) -> str:
        """runc, crun, runsc, vm (kubeclass's VM runtime) or oci (another runc-compatible CLI): how the
        agent runs it."""
        if self.machine:
            return "vm"
        base = os.path.basename(self.binary or self.name)
        for f in ("runsc", "crun", "runc"):
            if f in base:
                return f
        return "oci"


@dataclass
class HandlerTable:
    handlers: dict[str, Handler]
    default: str                   # the handler Pods without a RuntimeClass (handler "") use
    source: str                    # "containerd", "crio" or "detected"
    version: int = 0               # containerd config version
    warnings: list[str] = field(default_factory=list)

    def resolve(self, handler: str) -> Handler | None:
        """The handler a Pod asks for (empty: the default); None when this node has no such handler."""
        return self.handlers.get(handler or self.default)

    def available(self) -> list[Handler]:
        return [h for h in self.handlers.values() if h.available]


def _which(name: str, path: str | None = None) -> str:
    if os.path.isabs(name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else ""
    return shutil.which(name, path=path) or ""


def _check_binary(h: Handler, wanted: str, path: str | None) -> None:
    found = _which(wanted, path)
    if found:
        h.binary = found
    else:
        h.binary = wanted
        h.available = False
        h.reason = f"binary {wanted!r} not found" + ("" if os.path.isabs(wanted) else " on PATH")


def _dig(d: dict, keys: tuple[str, ...]) -> dict | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, dict) else None


def _load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e


# ------------------------------------------------------------------------------------------- containerd

def containerd_handlers(path: str, search_path: str | None = None) -> HandlerTable:
    """The handler table of a containerd config.toml. Version 1 files (no `version`) use `plugins.cri`,
    version 2 `plugins."io.containerd.grpc.v1.cri"`, version 3 `plugins.'io.containerd.cri.v1.runtime'`.
    A table under another version's plugin ID is read too (as containerd migrates older files), with a
    warning."""
    cfg = _load_toml(path)
    version = cfg.get("version", 1)
    if version not in (1, 2, 3):
        raise ConfigError(f"{path}: unsupported config version {version!r} (containerd knows 1, 2 and 3)")
    own = {1: CONTAINERD_CRI_V1, 2: CONTAINERD_CRI_V2, 3: CONTAINERD_CRI_V3}[version]
    table = HandlerTable({}, "runc", "containerd", version)
    sections = []
    for keys in (CONTAINERD_CRI_V1, CONTAINERD_CRI_V2, CONTAINERD_CRI_V3):
        sec = _dig(cfg, keys)
        if sec is None:
            continue
        if keys != own and not (version == 1 and keys == CONTAINERD_CRI_V2):
            table.warnings.append(f"{path}: [{'.'.join(keys)}] belongs to config version "
                                  f"{ {CONTAINERD_CRI_V1: 1, CONTAINERD_CRI_V2: 2, CONTAINERD_CRI_V3: 3}[keys]}, "
                                  f"this file is version {version}")
        sections.append(sec)
    for sec in sections:
        if isinstance(sec.get("default_runtime_name"), str) and sec["default_runtime_name"]:
            table.default = sec["default_runtime_name"]
        runtimes = sec.get("runtimes") or {}
        if not isinstance(runtimes, dict):
            raise ConfigError(f"{path}: runtimes must be a table")
        for name, rt in runtimes.items():
            if not isinstance(rt, dict):
                raise ConfigError(f"{path}: runtimes.{name} must be a table")
            table.handlers[name] = _containerd_runtime(name, rt, path, search_path)
        # deprecated tables (containerd 1.x): default_runtime, and untrusted_workload_runtime as "untrusted"
        legacy_default = sec.get("default_runtime")
        untrusted = sec.get("untrusted_workload_runtime")
        if isinstance(untrusted, dict) and untrusted.get("runtime_type"):
            if isinstance(legacy_default, dict) and legacy_default.get("runtime_type") and "untrusted" in runtimes:
                raise ConfigError(f"{path}: untrusted_workload_runtime and runtimes.untrusted are both set")
            table.handlers["untrusted"] = _containerd_runtime("untrusted", untrusted, path, search_path)
        if isinstance(legacy_default, dict) and legacy_default.get("runtime_type"):
            table.handlers.setdefault(table.default, _containerd_runtime(table.default, legacy_default, path, search_path))
    if table.default not in table.handlers:
        # containerd's built-in runc entry stands behind default_runtime_name = "runc"
        if table.default == "runc":
            table.handlers["runc"] = _containerd_runtime("runc", {"runtime_type": "io.containerd.runc.v2"}, path, search_path)
        else:
            raise ConfigError(f"{path}: default_runtime_name {table.default!r} names no runtime in the runtimes table")
    table.handlers[table.default].default = True
    return table


def _containerd_runtime(name: str, rt: dict, path: str, search_path: str | None) -> Handler:
    rtype = rt.get("runtime_type") or "io.containerd.runc.v2"
    opts = rt.get("options") if isinstance(rt.get("options"), dict) else {}
    h = Handler(name, rtype, root=str(opts.get("Root") or ""), systemd_cgroup=bool(opts.get("SystemdCgroup", False)),
                source=path)
    if rtype in RUNC_TYPES:
        # runc v2 shim: options.BinaryName (an empty string means runc); the v1 linux runtime: options.Runtime
        binary = opts.get("BinaryName") or opts.get("Runtime") or "runc"
        _check_binary(h, str(binary), search_path)
    elif rtype in RUNSC_TYPES:
        h.config_path = str(opts.get("ConfigPath") or "")
        _check_binary(h, "runsc", search_path)
        if h.config_path:
            _runsc_config(h)
    elif is_kata_type(rtype):
        vm_handler(h, vm_machine(name, rtype), search_path)
    else:
        h.available = False
        h.reason = (f"runtime_type {rtype!r} needs containerd's shim (containerd-shim-"
                    f"{rtype.removeprefix('io.containerd.').replace('.', '-')}); kubeclass runs runc-compatible OCI runtimes only")
    return h


def _runsc_config(h: Handler) -> None:
    """runsc.toml: `[runsc_config]` flags (e.g. platform = "kvm", debug = "true") become global flags."""
    try:
        cfg = _load_toml(h.config_path)
    except OSError as e:
        h.available = False
        h.reason = f"ConfigPath {h.config_path!r}: {e.strerror}"
        return
    except ConfigError as e:
        h.available = False
        h.reason = str(e)
        return
    for k, v in (cfg.get("runsc_config") or {}).items():
        h.flags[k] = str(v).lower() if isinstance(v, bool) else str(v)


# ------------------------------------------------------------------------------------------- CRI-O

CRIO_DEFAULT_RUNTIME = "crun"   # CRI-O 1.31+ (the default was runc before)


def crio_handlers(main: str | None, drop_in_dir: str | None, search_path: str | None = None) -> HandlerTable:
    """The handler table of CRI-O: the main crio.conf first (lowest precedence), then every file of the
    drop-in directory in lexical order, the later one winning for each setting."""
    files = []
    if main and os.path.exists(main):
        files.append(main)
    if drop_in_dir and os.path.isdir(drop_in_dir):
        files += [os.path.join(drop_in_dir, f) for f in sorted(os.listdir(drop_in_dir))
                  if not f.startswith(".") and os.path.isfile(os.path.join(drop_in_dir, f))]
    if not files:
        raise ConfigError(f"no CRI-O configuration at {main} or in {drop_in_dir}")
    merged: dict = {}
    for f in files:
        _deep_merge(merged, _load_toml(f))
    runtime = ((merged.get("crio") or {}).get("runtime")) or {}
    default = runtime.get("default_runtime") or CRIO_DEFAULT_RUNTIME
    runtimes = dict(runtime.get("runtimes") or {})
    if default not in runtimes:
        # CRI-O's built-in entry for its default runtime: the handler name is looked up on PATH
        runtimes[default] = {}
    table = HandlerTable({}, default, "crio")
    source = ", ".join(files)
    dflt = runtimes[default]
    for name, rt in runtimes.items():
        if not isinstance(rt, dict):
            raise ConfigError(f"{source}: crio.runtime.runtimes.{name} must be a table")
        if rt.get("inherit_default_runtime"):
            rt = {**rt, **{k: dflt[k] for k in ("runtime_path", "runtime_type", "runtime_root", "runtime_config_path") if k in dflt}}
        rtype = rt.get("runtime_type") or "oci"
        h = Handler(name, rtype, root=str(rt.get("runtime_root") or ""), source=source)
        if rtype == "vm" or os.path.basename(str(rt.get("runtime_path") or "")) in KATA_BINARIES:
            vm_handler(h, vm_machine(name, rtype), search_path)
        elif rtype == "oci":
            _check_binary(h, str(rt.get("runtime_path") or name), search_path)
        else:
            h.binary = str(rt.get("runtime_path") or "")
            h.available = False
            h.reason = f"runtime_type {rtype!r} is not supported by kubeclass (only \"oci\" runtimes)"
        table.handlers[name] = h
    table.handlers[default].default = True
    return table


def _deep_merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


# ------------------------------------------------------------------------------------------- detection

def detected_handlers(search_path: str | None = None) -> HandlerTable:
    """No configuration: runc, crun and runsc from PATH, with runc the default handler."""
    table = HandlerTable({}, "runc", "detected")
    for name, rtype in (("runc", "io.containerd.runc.v2"), ("crun", "io.containerd.runc.v2"), ("runsc", "io.containerd.runsc.v1")):
        h = Handler(name, rtype, source="PATH")
        _check_binary(h, name, search_path)
        table.handlers[name] = h
    for name in ("kata-qemu", "kata-fc"):
        h = Handler(name, "io.containerd.{}.v2".format(name), source="PATH")
        vm_handler(h, vm_machine(name, ""), search_path)
        table.handlers[name] = h
    table.handlers["runc"].default = True
    return table


def vm_handler(h: Handler, machine: str, search_path: str | None) -> None:
    """A handler run by kubeclass's VM runtime: available when QEMU and a guest kernel are on this node."""
    from .vm import guestimage
    h.machine = machine
    h.binary = _which(QEMU, search_path) or QEMU
    if not os.path.isabs(h.binary):
        h.available = False
        h.reason = f"{QEMU} not found on PATH (apt-get install qemu-system-x86): the VM runtime runs Kata handlers"
        return
    missing = guestimage.missing()
    if missing:
        h.available = False
        h.reason = missing


def load(runtime_config: str | None = None, search_path: str | None = None) -> HandlerTable:
    """The node's handler table. `runtime_config` is a containerd config.toml, a crio.conf, or a
    crio.conf.d directory; without it, /etc/containerd/config.toml, then /etc/crio/crio.conf(+.d), then
    PATH detection."""
    if runtime_config:
        if os.path.isdir(runtime_config):
            return crio_handlers(None, runtime_config, search_path)
        if not os.path.exists(runtime_config):
            raise ConfigError(f"{runtime_config}: no such file")
        if is_crio_config(runtime_config):
            return crio_handlers(runtime_config, runtime_config + ".d", search_path)
        return containerd_handlers(runtime_config, search_path)
    if os.path.exists("/etc/containerd/config.toml"):
        return containerd_handlers("/etc/containerd/config.toml", search_path)
    if os.path.exists("/etc/crio/crio.conf") or os.path.isdir("/etc/crio/crio.conf.d"):
        return crio_handlers("/etc/crio/crio.conf", "/etc/crio/crio.conf.d", search_path)
    return detected_handlers(search_path)


def is_crio_config(path: str) -> bool:
    try:
        return "crio" in _load_toml(path)
    except (OSError, ConfigError):
        return os.path.basename(path).startswith("crio")


def table_text(table: HandlerTable) -> str:
    """`kubeclass node handlers`: a crictl-info-like table."""
    rows = [("HANDLER", "RUNTIME TYPE", "BINARY", "AVAILABLE", "DEFAULT", "REASON")]
    for h in sorted(table.handlers.values(), key=lambda h: h.name):
        reason = h.reason
        if h.flavor == "vm" and h.available:
            reason = f"vm ({vm_description(h)})"
        rows.append((h.name, h.runtime_type, h.binary or "<none>", "true" if h.available else "false",
                     "*" if h.default else "", reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] + [0]
    out = ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for w in table.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out) + "\n"


def vm_description(h: Handler, noun: str = "") -> str:
    """e.g. "qemu 7.2 microvm, TCG" (with noun "VM": "qemu 7.2 microvm VM, TCG"): what really runs a VM
    handler's Pods."""
    from .vm import qemu
    return f"qemu {qemu.version(h.binary)} {h.machine}{' ' + noun if noun else ''}, {qemu.accelerator().upper()}"
