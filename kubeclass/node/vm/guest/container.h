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

/* Makes the next container's process ahead of time (a zygote: in its cgroup and new namespaces, waiting
 * for its spec), so that container_start does not wait for that. Call when idle. */
void container_prepare(void);
/* A child the agent reaped: 1 if it was the waiting zygote (then forgotten: the next call to
 * container_prepare makes another). */
int container_reaped(pid_t pid);

/* Starts a container: its cgroup gets the spec's limits, its process (the zygote) the spec; that process
 * makes its mounts resolved inside its root (the VM's network, IPC and UTS are shared), masked and read-only
 * paths, the root made its root, rlimits, groups, user, capabilities, no_new_privs, then execs, with stdin
 * /dev/null, or (spec "stdin") a pipe whose write end comes back in *in, or (spec "terminal") a terminal whose
 * master comes back in *in and *out (stdout and stderr both go to it). Returns the process's pid (the container's PID 1, a child of the caller) once it has exec'd,
 * with the read ends of its stdout and stderr in out / err and its cgroup (to remove when it has ended) in
 * cgpath; or -1 with the reason in err (the process reaped). */
/* whether the spec asks for a terminal */
int spec_terminal(const struct spec *s);

pid_t container_start(const struct spec *s, int *out, int *err_out, int *in, char *cgpath, size_t cglen, char *err, size_t errlen);

#endif
