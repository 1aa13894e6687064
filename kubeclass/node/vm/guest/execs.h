/* kubeclass guest agent: commands run in a running container (kubectl exec, exec probes; execs.c). */
#ifndef KC_EXECS_H
#define KC_EXECS_H
#include <stddef.h>
#include <sys/types.h>

/* Starts argv (NULL-terminated) in the container whose PID 1 is target (its PID and mount namespaces, its
 * cgroup cgroup, its environment, working directory, user and group), as a child of the caller. With tty, its
 * stdin, stdout and stderr are one pseudo-terminal whose master is *master (in, out, err: -1); without, pipes:
 * *in (write end, -1 unless stdin), *out and *err (read ends). Returns its pid, or -1 with the reason in err. */
pid_t exec_start(pid_t target, const char *cgroup, int tty, int stdin_wanted, char **argv,
                 int *in, int *out, int *err_fd, int *master, char *err, size_t errlen);

/* Decodes hex into out (at most cap bytes); the byte count, or -1 if it is not hex. */
long hex_decode(const char *hex, char *out, size_t cap);

#endif
