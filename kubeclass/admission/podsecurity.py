"""The `PodSecurity` admission plugin (upstream pod-security-admission): namespace labels
`pod-security.kubernetes.io/{enforce,warn,audit}[-version]` with levels privileged / baseline /
restricted. Enforce refuses Pods (`violates PodSecurity "restricted:latest": ...`); warn returns
`would violate PodSecurity ...` warnings, for Pods and for workload templates. Messages are
upstream's: each failed check renders as `reason (detail)`, joined by ", ", baseline checks first, then
restricted ones, each group in check-ID order.

Checks (1.32's "latest"): baseline appArmorProfile, capabilities_baseline, hostNamespaces,
hostPathVolumes, hostPorts, privileged, procMount, seLinuxOptions, seccompProfile_baseline, sysctls,
windowsHostProcess; restricted allowPrivilegeEscalation, capabilities_restricted, restrictedVolumes
(replaces hostPathVolumes), runAsNonRoot, runAsUser, seccompProfile_restricted. Audit mode: upstream
adds a `pod-security.kubernetes.io/audit-violations` annotation to the request's audit event; kubeclass
has no audit log, so the same text goes to the server log (logger `kubeclass.podsecurity`).
"""
from __future__ import annotations

import logging

from ..api import errors
from . import Attributes, Lister, Plugin

log = logging.getLogger("kubeclass.podsecurity")

LEVELS = ("privileged", "baseline", "restricted")
PREFIX = "pod-security.kubernetes.io/"
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
WORKLOADS = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"),
             ("batch", "jobs"), ("batch", "cronjobs"), ("", "replicationcontrollers"), ("", "podtemplates")}


def _plural(one: str, many: str, n: int) -> str:
    return one if n == 1 else many


def _jq(items) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: dict) -> list[dict]:
    return (spec.get("initContainers") or []) + (spec.get("containers") or []) + (spec.get("ephemeralContainers") or [])


def _sc(c: dict) -> dict:
    return c.get("securityContext") or {}


def _named(names: list[str]) -> str:
    """`container "a"` / `containers "a", "b"`, as upstream's pluralize + joinQuote."""
    return f"{_plural('container', 'containers', len(names))} {_jq(names)}"


def _who(kind_setters: list[str], bad: list[str]) -> list[str]:
    return kind_setters + [_named(bad)] if bad else kind_setters


# ---- baseline

APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def app_armor_profile(spec, md):
    setters, values, bad = [], set(), []
    pod_type = ((spec.get("securityContext") or {}).get("appArmorProfile") or {}).get("type")
    if pod_type is not None and pod_type not in ("RuntimeDefault", "Localhost"):
        setters.append("pod")
        values.add(pod_type)
    for c in _containers(spec):
        t = (_sc(c).get("appArmorProfile") or {}).get("type")
        if t is not None and t not in ("RuntimeDefault", "Localhost"):
            bad.append(c["name"])
            values.add(t)
    if bad:
        setters.append(_named(bad))
    annotations = sorted(f'{k}={errors.go_quote(v)}' for k, v in ((md or {}).get("annotations") or {}).items()
                         if k.startswith(APPARMOR_PREFIX) and v and v != "runtime/default" and not v.startswith("localhost/"))
    listed = sorted(values) + annotations
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if setters:
        return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(listed)),
                f"{' and '.join(setters)} must not set AppArmor profile type to {', '.join(errors.go_quote(x) for x in listed)}")


def se_linux_options(spec, md=None):
    bad_types: set[str] = set()
    flags = {"user": False, "role": False}

    def valid(opts: dict) -> bool:
        ok = True
        if opts.get("type", "") not in SELINUX_TYPES:
            bad_types.add(opts.get("type", ""))
            ok = False
        for f in ("user", "role"):
            if opts.get(f):
                flags[f] = True
                ok = False
        return ok
    setters = []
    pod_opts = (spec.get("securityContext") or {}).get("seLinuxOptions")
    if pod_opts is not None and not valid(pod_opts):
        setters.append("pod")
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("seLinuxOptions") is not None and not valid(_sc(c)["seLinuxOptions"])]
    if bad:
        setters.append(_named(bad))
    if setters:
        data = []
        if bad_types:
            data.append(f"{_plural('type', 'types', len(bad_types))} {_jq(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return ("seLinuxOptions", f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}")


def windows_host_process(spec, md=None):
    setters = []
    if ((spec.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"):
        setters.append("pod")
    bad = [c["name"] for c in _containers(spec) if (_sc(c).get("windowsOptions") or {}).get("hostProcess")]
    if bad:
        setters.append(_named(bad))
    if setters:
        return ("hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")


def capabilities_baseline(spec):
    bad, caps = [], set()
    for c in _containers(spec):
        added = [x for x in ((_sc(c).get("capabilities") or {}).get("add") or []) if x not in BASELINE_CAPS]
        if added:
            bad.append(c["name"])
            caps.update(added)
    if bad:
        return ("non-default capabilities", f"{_named(bad)} must not include "
                f"{_jq(sorted(caps))} in securityContext.capabilities.add")


def host_namespaces(spec):
    hn = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if hn:
        return ("host namespaces", ", ".join(hn))


def host_path_volumes(spec):
    bad = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if bad:
        return ("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_jq(bad)}")


def host_ports(spec):
    bad, ports = [], set()
    for c in _containers(spec):
        hp = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if hp:
            bad.append(c["name"])
            ports.update(hp)
    if bad:
        return ("hostPort", f"{_named(bad)} {_plural('uses', 'use', len(bad))} "
                f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def privileged(spec):
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("privileged")]
    if bad:
        return ("privileged", f"{_named(bad)} must not set securityContext.privileged=true")


def proc_mount(spec):
    bad, vals = [], set()
    for c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm and pm != "Default":
            bad.append(c["name"])
            vals.add(pm)
    if bad:
        return ("procMount", f"{_named(bad)} must not set securityContext.procMount to {_jq(sorted(vals))}")


def seccomp_baseline(spec):
    setters = []
    if ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "Unconfined":
        setters.append("pod")
    bad = [c["name"] for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    setters = _who(setters, bad)
    if setters:
        return ("seccompProfile", f'{" and ".join(setters)} must not set securityContext.seccompProfile.type to "Unconfined"')


def sysctls(spec):
    bad = [s["name"] for s in (spec.get("securityContext") or {}).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if bad:
        return ("forbidden sysctls", ", ".join(bad))


# ---- restricted

def allow_privilege_escalation(spec):
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return ("allowPrivilegeEscalation != false",
                f"{_named(bad)} must set securityContext.allowPrivilegeEscalation=false")


def capabilities_restricted(spec):
    missing, adding, caps = [], [], set()
    for c in _containers(spec):
        cap = _sc(c).get("capabilities")
        if cap is None:
            missing.append(c["name"])
            continue
        if "ALL" not in (cap.get("drop") or []):
            missing.append(c["name"])
        extra = [x for x in cap.get("add") or [] if x != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c["name"])
            caps.update(extra)
    details = []
    if missing:
        details.append(f'{_named(missing)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_named(adding)} must not include {_jq(sorted(caps))} in securityContext.capabilities.add")
    if details:
        return ("unrestricted capabilities", "; ".join(details))


def restricted_volumes(spec):
    bad, types = [], set()
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        if any(k in ALLOWED_VOLUMES for k in kinds):
            continue
        bad.append(v["name"])
        types.add(kinds[0] if kinds else "unknown")
    if bad:
        return ("restricted volume types", f"{_plural('volume', 'volumes', len(bad))} {_jq(bad)} {_plural('uses', 'use', len(bad))} "
                f"{_plural('restricted volume type', 'restricted volume types', len(types))} {_jq(sorted(types))}")


def _uses_user_namespace(spec):
    return spec.get("hostUsers") is False


def run_as_non_root(spec):
    if _uses_user_namespace(spec):
        return None
    setters, pod_ok = [], False
    v = (spec.get("securityContext") or {}).get("runAsNonRoot")
    if v is False:
        setters.append("pod")
    elif v is True:
        pod_ok = True
    explicit, implicit = [], []
    for c in _containers(spec):
        cv = _sc(c).get("runAsNonRoot")
        if cv is not None:
            if cv is False:
                explicit.append(c["name"])
        elif not pod_ok:
            implicit.append(c["name"])
    setters = _who(setters, explicit)
    if setters:
        return ("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true",
                f"pod or {_named(implicit)} must set securityContext.runAsNonRoot=true")


def run_as_user(spec):
    if _uses_user_namespace(spec):
        return None
    setters = ["pod"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    setters = _who(setters, [c["name"] for c in _containers(spec) if _sc(c).get("runAsUser") == 0])
    if setters:
        return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0")


def seccomp_restricted(spec):
    valid = ("RuntimeDefault", "Localhost")
    setters, values, pod_set = [], set(), False
    prof = (spec.get("securityContext") or {}).get("seccompProfile")
    if prof is not None:
        if prof.get("type") not in valid:
            setters.append("pod")
            values.add(prof.get("type", ""))
        else:
            pod_set = True
    explicit, implicit = [], []
    for c in _containers(spec):
        cp = _sc(c).get("seccompProfile")
        if cp is not None:
            if cp.get("type") not in valid:
                explicit.append(c["name"])
                values.add(cp.get("type", ""))
        elif not pod_set:
            implicit.append(c["name"])
    setters = _who(setters, explicit)
    if setters:
        return ("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_jq(sorted(values))}")
    if implicit:
        return ("seccompProfile", f'pod or {_named(implicit)} must set '
                'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')


BASELINE = [("appArmorProfile", app_armor_profile), ("capabilities_baseline", capabilities_baseline), ("hostNamespaces", host_namespaces),
            ("hostPathVolumes", host_path_volumes), ("hostPorts", host_ports), ("privileged", privileged),
            ("procMount", proc_mount), ("seLinuxOptions", se_linux_options), ("seccompProfile_baseline", seccomp_baseline),
            ("sysctls", sysctls), ("windowsHostProcess", windows_host_process)]
NEEDS_METADATA = {"appArmorProfile"}
RESTRICTED = [("allowPrivilegeEscalation", allow_privilege_escalation), ("capabilities_restricted", capabilities_restricted),
              ("restrictedVolumes", restricted_volumes), ("runAsNonRoot", run_as_non_root), ("runAsUser", run_as_user),
              ("seccompProfile_restricted", seccomp_restricted)]


def evaluate(level: str, spec: dict, md: dict | None = None) -> str:
    """The aggregate forbidden reason for `spec` at `level` ("" when allowed)."""
    if level == "privileged":
        return ""
    checks = list(BASELINE)
    if level == "restricted":
        checks = [c for c in checks if c[0] != "hostPathVolumes"] + RESTRICTED  # restrictedVolumes overrides it
    out = []
    for check_id, fn in checks:
        r = fn(spec, md) if check_id in NEEDS_METADATA else fn(spec)
        if r:
            out.append(f"{r[0]} ({r[1]})" if r[1] else r[0])
    return ", ".join(out)


def _policy(ns: dict | None, mode: str) -> tuple[str, str] | None:
    labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
    level = labels.get(PREFIX + mode)
    if level not in LEVELS or level == "privileged":
        return None
    return level, labels.get(PREFIX + mode + "-version") or "latest"


class PodSecurity(Plugin):
    name = "PodSecurity"

    async def validate(self, a: Attributes, lister: Lister) -> None:
        is_pod = a.group == "" and a.resource == "pods"
        # a debug container added to a Pod is checked as the Pod it makes (upstream checks the ephemeralcontainers
        # subresource's updates; other updates cannot change what the policy looks at)
        debug = is_pod and a.operation == "UPDATE" and a.subresource == "ephemeralcontainers"
        if not debug and (a.operation != "CREATE" or a.subresource) or not a.namespace:
            return
        if not is_pod and (a.group, a.resource) not in WORKLOADS:
            return
        ns = lister.get("", "namespaces", None, a.namespace)
        spec = (a.object or {}).get("spec") or {}
        md = (a.object or {}).get("metadata") or {}
        if not is_pod:
            template = ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template") or {}
            spec, md = template.get("spec") or {}, template.get("metadata") or {}
        enforce = _policy(ns, "enforce")
        if enforce and is_pod:
            reason = evaluate(enforce[0], spec, md)
            if reason:
                raise errors.forbidden_status("pods", "", a.display_name(),
                                              f'violates PodSecurity "{enforce[0]}:{enforce[1]}": {reason}')
        # warnings: the warn level for pods; for workload templates upstream warns on enforce and warn levels
        seen = set()
        for mode in (("warn",) if is_pod else ("enforce", "warn")):
            pol = _policy(ns, mode)
            if pol and pol not in seen:
                seen.add(pol)
                reason = evaluate(pol[0], spec, md)
                if reason:
                    a.warnings.append(f'would violate PodSecurity "{pol[0]}:{pol[1]}": {reason}')
        audit = _policy(ns, "audit")
        if audit:
            reason = evaluate(audit[0], spec, md)
            if reason:
                log.warning('pod-security.kubernetes.io/audit-violations: %s/%s %s: would violate PodSecurity "%s:%s": %s',
                            a.namespace, a.display_name(), a.resource, audit[0], audit[1], reason)
