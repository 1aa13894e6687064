/* kubeclass guest agent: creating a container inside the guest (container.c). */
#ifndef KC_CONTAINER_H
#define KC_CONTAINER_H
#include <stddef.h>
#include <sys/types.h>

/* What a container's spec (kubeclass/node/vm/guestspec.py writes it) asks for, as read by spec_parse. */
struct spec;

/* Reads a spec (hex-encoded, as it travels in a `run` request); NULL with the reason in err when it cannot. */
struct spec *spec_parse(const char *hex, char *err, size_t errlen);
void spec_free(struct spec *s);
/* The container's cgroup (absolute under /sys/fs/cgroup, e.g. "/kubeclass/pod.../kc-...") or "". */
const char *spec_cgroup(const struct spec *s);

/* Creates the container's cgroup with its limits and starts its process: new mount and PID namespaces (the
 * VM's network, IPC and UTS are shared), its mounts resolved inside its root, masked and read-only paths,
 * the root made the process's root, rlimits, groups, user, capabilities, no_new_privs, then exec with the
 * given stdout / stderr (stdin is /dev/null). Returns the process's pid (the container's PID 1, a child of
 * the caller) once it has exec'd, or -1 with the reason in err (the child, if any, is reaped). */
pid_t container_start(const struct spec *s, int out, int errfd, char *err, size_t errlen);

#endif
