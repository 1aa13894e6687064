"""Runtime handler tables from containerd config.toml (versions 1, 2, 3) and CRI-O crio.conf + crio.conf.d,
with the seeds' snippets and the examples of containerd's docs/cri/config.md and CRI-O's crio.conf(5) /
crio.conf.d(5) (../shared/reference/anchors-and-configs.md section 4)."""
from __future__ import annotations

import os
import stat

import pytest

import seeds
from kubeclass.node import handlers as H


def fake_bin(d, *names: str) -> None:
    d.mkdir(exist_ok=True)
    for name in names:
        f = d / name
        f.write_text("#!/bin/sh\nexit 0\n")
        f.chmod(f.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def path(tmp_path):
    """A PATH holding fake runc and runsc (no crun, no QEMU), so availability does not depend on the host."""
    d = tmp_path / "bin"
    fake_bin(d, "runc", "runsc")
    return str(d)


@pytest.fixture
def vm_path(tmp_path, monkeypatch):
    """A PATH with runc, runsc and QEMU, and a guest kernel directory: the VM runtime is available."""
    d = tmp_path / "vmbin"
    fake_bin(d, "runc", "runsc", "qemu-system-x86_64")
    guest = tmp_path / "guest"
    (guest / "6.1.0-test").mkdir(parents=True)
    (guest / "6.1.0-test" / "vmlinux").write_bytes(b"\x7fELF")
    (guest / "6.1.0-test" / "initrd.cpio").write_bytes(b"070701")
    (guest / "current").symlink_to("6.1.0-test")
    monkeypatch.setenv("KUBECLASS_GUEST_DIR", str(guest))
    monkeypatch.setattr(H.shutil, "which", lambda name, path=None: os.path.join(str(d), name)
                        if os.path.exists(os.path.join(str(d), name)) else ("/usr/bin/crun" if name == "crun" else None))
    return str(d)


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def test_containerd_v1_from_the_docs(tmp_path, path):
    cfg = write(tmp_path, "config.toml", """
[plugins.linux]
  shim_debug = true
[plugins.cri.containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
""")
    t = H.containerd_handlers(cfg, path)
    assert t.version == 1 and t.default == "runc"
    assert sorted(t.handlers) == ["runc", "runsc"]          # runc: containerd's built-in default entry
    assert t.handlers["runsc"].binary == os.path.join(path, "runsc") and t.handlers["runsc"].available
    assert t.handlers["runsc"].flavor == "runsc"
    assert t.handlers["runc"].default and t.resolve("").name == "runc"


def test_containerd_v2_from_the_docs(tmp_path, path):
    runc = os.path.join(path, "runc")
    cfg = write(tmp_path, "config.toml", f"""
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "{runc}"
      SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
    runtime_type = "io.containerd.kata.v2"
""")
    t = H.containerd_handlers(cfg, path)
    assert t.version == 2
    r = t.handlers["runc"]
    assert (r.binary, r.systemd_cgroup, r.available, r.default) == (runc, True, True, True)
    k = t.handlers["kata"]          # Kata's shim type: the VM runtime, which needs QEMU (not on this PATH)
    assert k.flavor == "vm" and k.machine == "q35"
    assert not k.available and k.reason.startswith("qemu-system-x86_64 not found on PATH")
    assert [h.name for h in t.available()] == ["runc"]


def test_containerd_v3_from_the_docs(tmp_path, path):
    cfg = write(tmp_path, "config.toml", """
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    sandboxer = 'podsandbox'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = ''
      SystemdCgroup = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.gvisor]
    runtime_type = 'io.containerd.runsc.v1'
""")
    t = H.containerd_handlers(cfg, path)
    assert t.version == 3 and not t.warnings
    assert t.handlers["runc"].binary == os.path.join(path, "runc")          # BinaryName '' means runc
    g = t.handlers["gvisor"]
    assert (g.binary, g.flavor, g.available) == (os.path.join(path, "runsc"), "runsc", True)


def test_containerd_v3_file_with_a_v2_table_warns(tmp_path, path):
    cfg = write(tmp_path, "config.toml", """
version = 3
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
""")
    t = H.containerd_handlers(cfg, path)
    assert "runsc" in t.handlers
    assert t.warnings and "belongs to config version 2, this file is version 3" in t.warnings[0]


def test_seed_001_containerd_config(tmp_path, path):
    text = [b for b in seeds.config_blocks("001") if "containerd" in b][0]
    t = H.containerd_handlers(write(tmp_path, "config.toml", text), path)
    assert (t.version, t.default) == (2, "runc")
    assert sorted(t.handlers) == ["kata-fc", "kata-qemu", "runc", "runsc"]
    assert t.handlers["runc"].systemd_cgroup and t.handlers["runc"].available
    assert t.handlers["runsc"].available and t.handlers["runsc"].runtime_type == "io.containerd.runsc.v1"
    for k in ("kata-qemu", "kata-fc"):
        assert not t.handlers[k].available and t.handlers[k].flavor == "vm"
        assert "qemu-system-x86_64 not found on PATH (apt-get install qemu-system-x86)" in t.handlers[k].reason
    assert sorted(h.name for h in t.available()) == ["runc", "runsc"]
    assert (t.handlers["kata-qemu"].machine, t.handlers["kata-fc"].machine) == ("q35", "microvm")


def test_seed_001_containerd_config_with_qemu(tmp_path, vm_path):
    """On a node with QEMU and a guest kernel, the seed's Kata handlers run on the VM runtime."""
    text = [b for b in seeds.config_blocks("001") if "containerd" in b][0]
    t = H.containerd_handlers(write(tmp_path, "config.toml", text), vm_path)
    assert sorted(h.name for h in t.available()) == ["kata-fc", "kata-qemu", "runc", "runsc"]
    q, fc = t.handlers["kata-qemu"], t.handlers["kata-fc"]
    assert (q.flavor, q.machine, q.binary) == ("vm", "q35", os.path.join(vm_path, "qemu-system-x86_64"))
    assert (fc.flavor, fc.machine) == ("vm", "microvm")


def test_vm_handlers_without_a_guest_kernel(tmp_path, vm_path, monkeypatch):
    monkeypatch.setenv("KUBECLASS_GUEST_DIR", str(tmp_path / "nothing"))
    t = H.detected_handlers(vm_path)
    k = t.handlers["kata-qemu"]
    assert not k.available and k.reason == f"no guest kernel in {tmp_path / 'nothing'} (scripts/install.sh extracts Debian's linux-image)"


def test_detection_offers_kata_handlers_where_qemu_is(vm_path):
    t = H.detected_handlers(vm_path)
    assert {h.name: (h.available, h.machine) for h in t.handlers.values() if h.flavor == "vm"} == \
        {"kata-qemu": (True, "q35"), "kata-fc": (True, "microvm")}


def test_crio_kata_handlers_run_on_the_vm_runtime(tmp_path, vm_path):
    """CRI-O: runtime_type "vm", and an "oci" handler whose runtime_path is Kata's (seed 001's drop-in)."""
    write(tmp_path, "crio.conf.d/10-runtimes.conf", [b for b in seeds.config_blocks("001") if "crio" in b][0])
    write(tmp_path, "crio.conf.d/20-kata.conf", """
[crio.runtime.runtimes.kata]
runtime_path = "/usr/bin/containerd-shim-kata-v2"
runtime_type = "vm"
""")
    t = H.crio_handlers(None, str(tmp_path / "crio.conf.d"), vm_path)
    for name in ("kata-qemu", "kata"):
        h = t.handlers[name]
        assert (h.flavor, h.machine, h.available) == ("vm", "q35", True), name


def test_seed_000_snippets(tmp_path, path):
    ctd, crio = seeds.config_blocks("000")
    t = H.containerd_handlers(write(tmp_path, "config.toml", ctd), path)
    h = t.handlers["myhandler"]                      # the legacy v1 linux runtime: runc
    assert (h.runtime_type, h.flavor, h.available) == ("io.containerd.runtime.v1.linux", "runc", True)
    t = H.crio_handlers(write(tmp_path, "crio.conf", crio), None, path)
    h = t.handlers["myhandler"]
    assert (h.binary, h.available) == ("/usr/local/bin/myruntime", False)
    assert h.reason == "binary '/usr/local/bin/myruntime' not found"


def test_seed_001_crio_drop_in(tmp_path, path):
    text = [b for b in seeds.config_blocks("001") if "crio" in b][0]
    d = tmp_path / "crio.conf.d"
    write(tmp_path, "crio.conf.d/10-runtimes.conf", text)
    t = H.crio_handlers(str(tmp_path / "crio.conf"), str(d), path)
    assert t.default == "crun"                       # CRI-O 1.31+'s default, added as its built-in entry
    assert sorted(t.handlers) == ["crun", "kata-qemu", "runc", "runsc"]
    assert (t.handlers["runc"].binary, t.handlers["runc"].root) == ("/usr/bin/runc", "/run/runc")
    assert (t.handlers["runsc"].binary, t.handlers["runsc"].root) == ("/usr/local/bin/runsc", "/run/runsc")
    assert t.handlers["kata-qemu"].root == "/run/kata"
    for h in t.handlers.values():
        if h.name not in ("crun", "kata-qemu"):
            assert h.available == os.access(h.binary, os.X_OK)
    assert t.handlers["kata-qemu"].flavor == "vm"          # runtime_path is Kata's: the VM runtime
    assert not t.handlers["crun"].available and t.handlers["crun"].reason == "binary 'crun' not found on PATH"


def test_seed_002_templates(tmp_path, path):
    ctd, crio = (b.replace("${HANDLER_NAME}", "runsc").replace("${PATH_TO_BINARY}", os.path.join(path, "runsc"))
                 for b in seeds.config_blocks("002"))
    t = H.containerd_handlers(write(tmp_path, "config.toml", ctd), path)
    assert t.handlers["runsc"].runtime_type == "io.containerd.runc.v2"   # no runtime_type: containerd's default
    t = H.crio_handlers(write(tmp_path, "crio.conf", crio), None, path)
    assert t.handlers["runsc"].available and t.handlers["runsc"].flavor == "runsc"


def test_crio_drop_ins_apply_in_lexical_order(tmp_path, path):
    write(tmp_path, "crio.conf", """
[crio.runtime]
default_runtime = "runc"
[crio.runtime.runtimes.runc]
runtime_path = "/from/main/runc"
runtime_root = "/run/main"
""")
    write(tmp_path, "crio.conf.d/10-custom.conf", f"""
[crio.runtime.runtimes.runc]
runtime_path = "{path}/runc"
""")
    write(tmp_path, "crio.conf.d/00-default.conf", """
[crio.runtime]
default_runtime = "crun"
[crio.runtime.runtimes.runc]
runtime_path = "/from/00/runc"
runtime_root = "/run/00"
[crio.runtime.runtimes.kata]
runtime_path = "/usr/bin/containerd-shim-kata-v2"
runtime_type = "vm"
runtime_config_path = "/etc/kata/configuration.toml"
""")
    write(tmp_path, "crio.conf.d/20-gvisor.conf", """
[crio.runtime]
default_runtime = "runc"
[crio.runtime.runtimes.gvisor]
runtime_path = "runsc"
inherit_default_runtime = true
""")
    t = H.crio_handlers(str(tmp_path / "crio.conf"), str(tmp_path / "crio.conf.d"), path)
    assert t.default == "runc"                                   # 20 beats 00
    r = t.handlers["runc"]
    assert (r.binary, r.root, r.available) == (os.path.join(path, "runc"), "/run/00", True)   # 10 beats 00 beats main
    assert not t.handlers["kata"].available and t.handlers["kata"].flavor == "vm"   # runtime_type "vm": no QEMU on PATH
    g = t.handlers["gvisor"]                                     # inherits path, type and root from the default
    assert (g.binary, g.root) == (os.path.join(path, "runc"), "/run/00")


def test_crio_example_from_crio_conf_5(tmp_path, path):
    t = H.crio_handlers(write(tmp_path, "crio.conf", """
[crio.runtime]
default_runtime = "crun"
[crio.runtime.runtimes.crun]
runtime_path = "/usr/libexec/crio/crun"
runtime_type = "oci"
runtime_root = "/run/crun"
monitor_path = "/usr/libexec/crio/conmon"
allowed_annotations = ["io.containers.trace-syscall"]
privileged_without_host_devices = false
"""), None, path)
    c = t.handlers["crun"]
    assert (c.default, c.root, c.binary, c.flavor) == (True, "/run/crun", "/usr/libexec/crio/crun", "crun")


def test_detection_without_configuration(path):
    t = H.detected_handlers(path)
    assert t.default == "runc" and t.source == "detected"
    assert {h.name: h.available for h in t.handlers.values()} == {"runc": True, "crun": False, "runsc": True,
                                                                   "kata-qemu": False, "kata-fc": False}


def test_runsc_config_path_flags(tmp_path, path):
    write(tmp_path, "runsc.toml", '[runsc_config]\nplatform = "kvm"\ndebug = true\n')
    t = H.containerd_handlers(write(tmp_path, "config.toml", f"""
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
  TypeUrl = "io.containerd.runsc.v1.options"
  ConfigPath = "{tmp_path}/runsc.toml"
"""), path)
    assert t.handlers["runsc"].flags == {"platform": "kvm", "debug": "true"}


def test_bad_configurations(tmp_path, path):
    with pytest.raises(H.ConfigError, match="config.toml"):
        H.containerd_handlers(write(tmp_path, "config.toml", "version = 2\n[plugins\n"), path)
    with pytest.raises(H.ConfigError, match="default_runtime_name 'gvisor' names no runtime"):
        H.containerd_handlers(write(tmp_path, "config.toml", """
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "gvisor"
"""), path)
    with pytest.raises(H.ConfigError, match="unsupported config version 4"):
        H.containerd_handlers(write(tmp_path, "config.toml", "version = 4\n"), path)
    with pytest.raises(H.ConfigError, match="no such file"):
        H.load(str(tmp_path / "missing.toml"), path)


def test_load_tells_crio_from_containerd(tmp_path, path):
    crio = write(tmp_path, "crio.conf", '[crio.runtime.runtimes.runsc]\nruntime_path = "runsc"\n')
    assert H.load(crio, path).source == "crio"
    ctd = write(tmp_path, "config.toml", '[plugins.cri.containerd.runtimes.runsc]\nruntime_type = "io.containerd.runsc.v1"\n')
    assert H.load(ctd, path).source == "containerd"


def test_table_text(tmp_path, path):
    text = [b for b in seeds.config_blocks("001") if "containerd" in b][0]
    out = H.table_text(H.containerd_handlers(write(tmp_path, "config.toml", text), path)).splitlines()
    assert out[0].split() == ["HANDLER", "RUNTIME", "TYPE", "BINARY", "AVAILABLE", "DEFAULT", "REASON"]
    runc = next(l for l in out if l.startswith("runc "))
    assert runc.split() == ["runc", "io.containerd.runc.v2", os.path.join(path, "runc"), "true", "*"]
    kata = next(l for l in out if l.startswith("kata-qemu "))
    assert "false" in kata.split() and "qemu-system-x86_64 not found on PATH" in kata
