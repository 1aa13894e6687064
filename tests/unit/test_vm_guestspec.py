"""The line-based container spec the VM guest agent reads (kubeclass/node/vm/guestspec.py)."""
import pytest

from kubeclass.node import bundle
from kubeclass.node.vm import guestspec


def records(text):
    out = []
    for line in text.splitlines():
        fields = line.split("\t")
        out.append(fields)
    return out


def test_a_containers_config_becomes_records_in_runc_order():
    cfg = {
        "process": {"user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}, "args": ["sh", "-c", "echo a\tb\nc \\ d"],
                    "env": ["PATH=/bin", "X=1"], "cwd": "/work",
                    "capabilities": {k: ["CAP_CHOWN", "CAP_KILL", "CAP_AUDIT_READ"] for k in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}], "noNewPrivileges": True},
        "root": {"path": "/run/kubeclass/share/pod/containers/c/0/rootfs", "readonly": True},
        "mounts": bundle.default_mounts() + [{**bundle.bind("/run/kubeclass/share/pod/etc/hosts", "/etc/hosts", readonly=True),
                                              "x-kubeclass-dir": False}],
        "linux": {"cgroupsPath": "/kc-c-0", "resources": {"cpu": {"shares": 512, "quota": 50000, "period": 100000},
                                                         "memory": {"limit": 134217728}},
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    }
    r = records(guestspec.render(cfg))
    assert r[0] == ["root", "/run/kubeclass/share/pod/containers/c/0/rootfs", "1"]
    assert r[1] == ["cwd", "/work"] and r[2] == ["user", "1000", "1000", "5", "7"]
    # a tab, a newline and a backslash inside a value are escaped: records and fields stay one line / one field
    assert r[3:6] == [["arg", "sh"], ["arg", "-c"], ["arg", "echo a\\tb\\nc \\\\ d"]]
    assert r[6:8] == [["env", "PATH=/bin"], ["env", "X=1"]]
    assert r[8] == ["caps"] + [f"{(1 << 0) | (1 << 5) | (1 << 37):x}"] * 3
    assert r[9] == ["rlimit", "7", "1024", "4096"] and r[10] == ["nnp"]
    mounts = [x for x in r if x[0] == "mount"]
    assert mounts[0] == ["mount", "proc", "proc", "/proc", "e", "", "0", "1"]            # nosuid|nodev|noexec
    assert mounts[1] == ["mount", "tmpfs", "tmpfs", "/dev", f"{0x2 | 0x1000000:x}", "mode=755,size=65536k", "0", "1"]
    assert mounts[2][5] == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert mounts[5] == ["mount", "sysfs", "sysfs", "/sys", "e", "", "1", "1"]           # ro is a remount, not a flag
    # rbind; a file (the sandbox says so: the guest would have to ask over 9p)
    assert mounts[6] == ["mount", "bind", "/run/kubeclass/share/pod/etc/hosts", "/etc/hosts", "5000", "", "1", "0"]
    assert ["mask", "/proc/kcore"] in r and ["readonly", "/proc/sys"] in r
    assert ["cgroup", "/kc-c-0"] in r
    assert [x[1:] for x in r if x[0] == "cgset"] == [["memory.max", "134217728"], ["cpu.weight", "20"], ["cpu.max", "50000 100000"]]


def test_mount_options_set_and_clear_flags():
    assert guestspec.mount_flags(["nosuid", "suid", "rw", "rprivate", "size=1k"]) == (0, "size=1k", False)
    assert guestspec.mount_flags(["ro", "noexec"]) == (0x8, "", True)


def test_cpu_weight_is_runcs_conversion():
    assert [guestspec.cpu_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]


def test_what_the_agent_cannot_do_is_refused():
    base = {"process": {"args": ["true"]}, "root": {"path": "/r"}}
    with pytest.raises(guestspec.SpecError, match="unknown capability 'CAP_NOPE'"):
        guestspec.render({**base, "process": {"args": ["true"], "capabilities": {"bounding": ["CAP_NOPE"]}}})
    with pytest.raises(guestspec.SpecError, match="process.args is empty"):
        guestspec.render({**base, "process": {"args": []}})
    with pytest.raises(guestspec.SpecError, match="unknown rlimit"):
        guestspec.render({**base, "process": {"args": ["true"], "rlimits": [{"type": "RLIMIT_X", "soft": 1, "hard": 1}]}})
    with pytest.raises(guestspec.SpecError, match="a VM Pod's container can have at most 1000000"):
        guestspec.render({**base, "process": {"args": ["true"], "env": [f"V{i}=" + "x" * 1000 for i in range(1100)]}})
