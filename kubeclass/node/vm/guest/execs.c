/* kubeclass guest agent: a command run in a running container of the VM (kubectl exec, exec probes).
 *
 * The agent switches the PID namespace its children get to the container's, forks, and switches back (a
 * process may always return to its own PID namespace), so the command is a direct child of the agent — its
 * exit status reaches the agent's waitpid — and PID n in the container's namespace. Before it leaves the
 * guest's mount namespace the child reads what the container's PID 1 runs with (/proc/PID/environ, cwd, the
 * uid and gid in status), joins the container's cgroup and opens its terminal; then it enters the container's
 * mount namespace and execs, as runc exec does with the container's process settings. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "execs.h"

#define ENVMAX (256 * 1024)

static int hexdigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long hex_decode(const char *hex, char *out, size_t cap) {
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int a = hexdigit(hex[i]), b = hexdigit(hex[i + 1]);
        if (a < 0 || b < 0) return -1;
        out[i / 2] = (char)(a * 16 + b);
    }
    return (long)(n / 2);
}

/* the target's environment as an envp (a static buffer: the child execs or exits right after) */
static char **target_env(pid_t target) {
    static char buf[ENVMAX];
    static char *envp[4096];
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/environ", (int)target);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    if (fd >= 0) {
        ssize_t k;
        while (len < sizeof buf - 1 && (k = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
        close(fd);
    }
    buf[len] = 0;
    int n = 0;
    for (size_t i = 0; i < len && n < 4095; i += strlen(buf + i) + 1)
        if (buf[i]) envp[n++] = buf + i;
    envp[n] = NULL;
    return envp;
}

static void target_ids(pid_t target, uid_t *uid, gid_t *gid) {
    char p[64], b[4096];
    snprintf(p, sizeof p, "/proc/%d/status", (int)target);
    *uid = 0;
    *gid = 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t k = read(fd, b, sizeof b - 1);
    close(fd);
    if (k <= 0) return;
    b[k] = 0;
    char *u = strstr(b, "\nUid:"), *g = strstr(b, "\nGid:");
    if (u) *uid = (uid_t)strtoul(u + 5, NULL, 10);
    if (g) *gid = (gid_t)strtoul(g + 5, NULL, 10);
}

static void fail(int fd, const char *what) {
    char b[512];
    int n = snprintf(b, sizeof b, "exec failed: %s: %s\n", what, strerror(errno));
    if (write(fd, b, (size_t)n) < 0) { /* nothing to tell it to */ }
    _exit(126);
}

pid_t exec_start(pid_t target, const char *cgroup, int tty, int stdin_wanted, char **argv,
                 int *in, int *out, int *err_fd, int *master, char *err, size_t errlen) {
    *in = *out = *err_fd = *master = -1;
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/pid", (int)target);
    int pidns = open(p, O_RDONLY | O_CLOEXEC);
    snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)target);
    int mntns = open(p, O_RDONLY | O_CLOEXEC);
    int own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (pidns < 0 || mntns < 0 || own < 0) {
        snprintf(err, errlen, "container process %d: %s", (int)target, strerror(errno));
        goto fail_ns;
    }
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, pty = -1;
    char slave[128] = {0};
    if (tty) {
        pty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (pty < 0 || grantpt(pty) || unlockpt(pty) || ptsname_r(pty, slave, sizeof slave)) {
            snprintf(err, errlen, "a terminal: %s", strerror(errno));
            goto fail_io;
        }
    } else if ((stdin_wanted && pipe2(pin, O_CLOEXEC)) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        snprintf(err, errlen, "pipes: %s", strerror(errno));
        goto fail_io;
    }
    if (setns(pidns, CLONE_NEWPID) != 0) {
        snprintf(err, errlen, "the container's PID namespace: %s", strerror(errno));
        goto fail_io;
    }
    pid_t pid = fork();
    int saved = errno;
    if (setns(own, CLONE_NEWPID) != 0) { /* cannot fail: it is our own */ }
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(saved));
        goto fail_io;
    }
    if (pid == 0) {
        setsid();
        int sin, sout, serr;
        if (tty) {
            int s = open(slave, O_RDWR);
            if (s < 0) _exit(126);
            ioctl(s, TIOCSCTTY, 0);
            sin = sout = serr = s;
        } else {
            sin = stdin_wanted ? pin[0] : open("/dev/null", O_RDONLY);
            sout = pout[1];
            serr = perr[1];
        }
        dup2(sin, 0);
        dup2(sout, 1);
        dup2(serr, 2);
        /* the agent's port and every other container's pipes; not the mount namespace, entered below */
        if (mntns > 3) syscall(SYS_close_range, 3, mntns - 1, 0);
        syscall(SYS_close_range, mntns + 1, ~0U, 0);
        const int report = 2;   /* where a failure before the exec is told */
        char cg[1100];
        if (cgroup && cgroup[0]) {
            snprintf(cg, sizeof cg, "%s/cgroup.procs", cgroup);
            int fd = open(cg, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) { if (write(fd, "0", 1) < 0) { /* stays in the agent's cgroup */ } close(fd); }
        }
        char **envp = target_env(target);
        uid_t uid;
        gid_t gid;
        target_ids(target, &uid, &gid);
        char cwdlink[64], cwd[1024] = "/";
        snprintf(cwdlink, sizeof cwdlink, "/proc/%d/cwd", (int)target);
        /* the cwd as the container sees it: its root is where /proc/PID/root points */
        char rootlink[64], root[1024] = "", full[1024] = "";
        snprintf(rootlink, sizeof rootlink, "/proc/%d/root", (int)target);
        ssize_t rl = readlink(rootlink, root, sizeof root - 1);
        ssize_t cl = readlink(cwdlink, full, sizeof full - 1);
        if (rl >= 0 && cl >= 0) {
            root[rl] = 0;
            full[cl] = 0;
            size_t n = strlen(root);
            if (strcmp(root, "/") == 0) snprintf(cwd, sizeof cwd, "%s", full);
            else if (strncmp(full, root, n) == 0) snprintf(cwd, sizeof cwd, "%s", full[n] ? full + n : "/");
        }
        if (setns(mntns, CLONE_NEWNS) != 0) fail(report, "entering the container's mount namespace");
        if (chdir(cwd) != 0 && chdir("/") != 0) fail(report, "chdir");
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) fail(report, "switching to the container's user");
        extern char **environ;
        environ = envp;
        execvp(argv[0], argv);
        char what[300];
        snprintf(what, sizeof what, "%s", argv[0]);
        fail(report, what);
    }
    close(pidns);
    close(mntns);
    close(own);
    if (tty) {
        *master = pty;
    } else {
        if (pin[0] >= 0) close(pin[0]);
        close(pout[1]);
        close(perr[1]);
        *in = pin[1];
        *out = pout[0];
        *err_fd = perr[0];
    }
    return pid;
fail_io:
    if (pty >= 0) close(pty);
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0) close(pin[i]);
        if (pout[i] >= 0) close(pout[i]);
        if (perr[i] >= 0) close(perr[i]);
    }
fail_ns:
    if (pidns >= 0) close(pidns);
    if (mntns >= 0) close(mntns);
    if (own >= 0) close(own);
    return -1;
}
