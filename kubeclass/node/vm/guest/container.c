/* kubeclass guest agent: creating a container inside the guest, in-process (as Kata's agent does, with no
 * OCI runtime binary in the guest: under TCG, loading and running crun cost 0.2-0.45 s per container).
 *
 * The node agent turns the container's OCI config.json into a line-based spec (kubeclass/node/vm/guestspec.py,
 * which documents the format), so that this side parses no JSON. What it does, in runc's order:
 *   parent: the container's cgroup (a spare one made ahead, renamed) with its limits; clone3 into new mount
 *           and PID namespaces and into that cgroup; wait until the child has exec'd or failed.
 *   child:  make every mount private; bind the root onto itself; mount each of the spec's mounts at its
 *           destination resolved inside the root (openat2 RESOLVE_IN_ROOT: a symlink in the image cannot
 *           point a mount outside it) and created when missing; the default device nodes in a tmpfs /dev;
 *           masked paths (/dev/null or an empty read-only tmpfs over them); read-only paths; the root moved
 *           onto / and chroot'ed into (the guest's root is the initramfs, which pivot_root(2) refuses; the VM
 *           is the isolation boundary); read-only root; rlimits; the bounding set; groups, gid, uid keeping
 *           the capabilities asked for; no_new_privs; cwd; exec through the container's own PATH.
 * Errors reach the parent through a close-on-exec pipe, in runc's words where runc has them.
 */
#define _GNU_SOURCE
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif
struct kc_open_how { unsigned long long flags, mode, resolve; };
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define KC_CLONE_INTO_CGROUP 0x200000000ULL
struct kc_clone_args {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#define MAXGROUPS 256

struct mnt { char *type, *src, *dst, *data; unsigned long flags; int ro, dir; };

struct spec {
    char *buf;
    char *raw;              /* the text as it came (spec_parse keeps it for the zygote) */
    size_t rawlen;
    char *root, *cwd, *cgroup, *pidns;
    int stdin_pipe, terminal;   /* a stdin the agent holds; a terminal (its slave as stdio) */
    int root_ro, nnp;
    unsigned uid, gid;
    int ngroups;
    gid_t groups[MAXGROUPS];
    char **argv, **envp;
    int argc, envc;
    unsigned long long bnd, eff, prm;
    struct { int res; unsigned long long soft, hard; } *rl;
    int nrl;
    struct mnt *mounts;
    int nmounts;
    char **masked, **rdonly;
    int nmasked, nrdonly;
    char **cgfile, **cgval;
    int ncg;
};

static void unescape(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

void spec_free(struct spec *s) {
    if (!s) return;
    free(s->buf); free(s->raw); free(s->argv); free(s->envp); free(s->rl); free(s->mounts);
    free(s->masked); free(s->rdonly); free(s->cgfile); free(s->cgval);
    free(s);
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static char *spec_decode(const char *hex, size_t *len, char *err, size_t errlen) {
    size_t hl = strlen(hex);
    if (hl % 2) { snprintf(err, errlen, "the container spec is not hex"); return NULL; }
    char *buf = malloc(hl / 2 + 1);
    if (!buf) { snprintf(err, errlen, "out of memory"); return NULL; }
    size_t n = 0;
    for (size_t i = 0; i < hl; i += 2) {
        int a = hexval(hex[i]), b = hexval(hex[i + 1]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) { free(buf); snprintf(err, errlen, "the container spec is not hex"); return NULL; }
        buf[n++] = (char)(a << 4 | b);
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* parses text (NUL-terminated, len bytes), which the spec then owns */
static struct spec *spec_parse_text(char *buf, size_t len, char *err, size_t errlen) {
    struct spec *s = calloc(1, sizeof *s);
    if (!s) { free(buf); snprintf(err, errlen, "out of memory"); return NULL; }
    s->buf = buf;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    s->argv = calloc(lines + 1, sizeof *s->argv);
    s->envp = calloc(lines + 1, sizeof *s->envp);
    s->rl = calloc(lines, sizeof *s->rl);
    s->mounts = calloc(lines, sizeof *s->mounts);
    s->masked = calloc(lines, sizeof *s->masked);
    s->rdonly = calloc(lines, sizeof *s->rdonly);
    s->cgfile = calloc(lines, sizeof *s->cgfile);
    s->cgval = calloc(lines, sizeof *s->cgval);
    if (!s->argv || !s->envp || !s->rl || !s->mounts || !s->masked || !s->rdonly || !s->cgfile || !s->cgval) {
        spec_free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int lineno = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *f[16];
        int n = 0;
        for (char *p = line; n < 16;) {
            f[n++] = p;
            p = strchr(p, '\t');
            if (!p) break;
            *p++ = 0;
        }
        for (int i = 0; i < n; i++) unescape(f[i]);
        const char *key = f[0];
#define NEED(k) if (n < (k) + 1) goto bad
        if (!strcmp(key, "root")) { NEED(2); s->root = f[1]; s->root_ro = atoi(f[2]); }
        else if (!strcmp(key, "cwd")) { NEED(1); s->cwd = f[1]; }
        else if (!strcmp(key, "user")) {
            NEED(2);
            s->uid = (unsigned)strtoul(f[1], NULL, 10);
            s->gid = (unsigned)strtoul(f[2], NULL, 10);
            for (int i = 3; i < n && s->ngroups < MAXGROUPS; i++) s->groups[s->ngroups++] = (gid_t)strtoul(f[i], NULL, 10);
        }
        else if (!strcmp(key, "arg")) { NEED(1); s->argv[s->argc++] = f[1]; }
        else if (!strcmp(key, "env")) { NEED(1); s->envp[s->envc++] = f[1]; }
        else if (!strcmp(key, "caps")) {
            NEED(3);
            s->bnd = strtoull(f[1], NULL, 16); s->eff = strtoull(f[2], NULL, 16); s->prm = strtoull(f[3], NULL, 16);
        }
        else if (!strcmp(key, "rlimit")) {
            NEED(3);
            s->rl[s->nrl].res = atoi(f[1]);
            s->rl[s->nrl].soft = strtoull(f[2], NULL, 10);
            s->rl[s->nrl].hard = strtoull(f[3], NULL, 10);
            s->nrl++;
        }
        else if (!strcmp(key, "nnp")) s->nnp = 1;
        else if (!strcmp(key, "mount")) {
            NEED(6);
            struct mnt *m = &s->mounts[s->nmounts++];
            m->type = f[1]; m->src = f[2]; m->dst = f[3];
            m->flags = strtoul(f[4], NULL, 16); m->data = f[5]; m->ro = atoi(f[6]);
            m->dir = n > 7 ? atoi(f[7]) : 1;
        }
        else if (!strcmp(key, "mask")) { NEED(1); s->masked[s->nmasked++] = f[1]; }
        else if (!strcmp(key, "readonly")) { NEED(1); s->rdonly[s->nrdonly++] = f[1]; }
        else if (!strcmp(key, "cgroup")) { NEED(1); s->cgroup = f[1]; }
        else if (!strcmp(key, "pidns")) { NEED(1); s->pidns = f[1]; }
        else if (!strcmp(key, "stdin")) s->stdin_pipe = 1;
        else if (!strcmp(key, "terminal")) s->terminal = 1;
        else if (!strcmp(key, "cgset")) { NEED(2); s->cgfile[s->ncg] = f[1]; s->cgval[s->ncg++] = f[2]; }
        else if (key[0]) goto bad;
#undef NEED
    }
    if (!s->root || !s->argc) { snprintf(err, errlen, "the container spec has no root or no process args"); spec_free(s); return NULL; }
    return s;
bad:
    snprintf(err, errlen, "the container spec's line %d is not understood", lineno);
    spec_free(s);
    return NULL;
}

struct spec *spec_parse(const char *hex, char *err, size_t errlen) {
    size_t len;
    char *text = spec_decode(hex, &len, err, errlen);
    if (!text) return NULL;
    char *raw = malloc(len + 1);
    if (!raw) { free(text); snprintf(err, errlen, "out of memory"); return NULL; }
    memcpy(raw, text, len + 1);
    struct spec *s = spec_parse_text(text, len, err, errlen);
    if (!s) { free(raw); return NULL; }
    s->raw = raw;
    s->rawlen = len;
    return s;
}

/* ------------------------------------------------------------------ the child */

static int errpipe = -1;

static void die(const char *fmt, ...) {
    char b[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof b - 1) n = sizeof b - 1;
    if (errpipe >= 0) (void)!write(errpipe, b, (size_t)n);
    _exit(127);
}

static int in_root(int rootfd, const char *path, int flags) {
    while (*path == '/') path++;
    struct kc_open_how how = {(unsigned long long)(flags | O_CLOEXEC), 0, RESOLVE_IN_ROOT};
    return (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof how);
}

static const char *fdpath(int fd) {
    static char p[4][64];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "/proc/self/fd/%d", fd);
    return p[i];
}

/* the path inside the root, made when missing (directories, or an empty file as its last part); an fd (O_PATH) */
static int make_in_root(int rootfd, const char *path, int dir) {
    int fd = in_root(rootfd, path, O_PATH);
    if (fd >= 0 || errno != ENOENT) return fd;
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    char *last = strrchr(p, '/');
    const char *name = last ? last + 1 : p;
    int parent;
    if (last) {
        *last = 0;
        parent = make_in_root(rootfd, p, 1);
    } else {
        parent = dup(rootfd);
    }
    if (parent < 0) return -1;
    int r = 0;
    if (*name) {
        if (dir) r = mkdirat(parent, name, 0755);
        else {
            int f = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (f >= 0) close(f);
            r = f >= 0 ? 0 : -1;
        }
    }
    int saved = errno;
    close(parent);
    if (r != 0 && saved != EEXIST) { errno = saved; return -1; }
    return in_root(rootfd, path, O_PATH);
}

/* a bind mount's flags as they are, so that making it read-only keeps nosuid, nodev, noexec... */
static unsigned long kept_flags(int fd) {
    struct statvfs v;
    if (fstatvfs(fd, &v) != 0) return 0;
    unsigned long f = 0;
    if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (v.f_flag & ST_NODEV) f |= MS_NODEV;
    if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

/* keep: the mount's own flags are kept (a read-only path on /proc stays nosuid, nodev, noexec); a bind
 * from the share has none to keep (and asking costs a 9p round trip) */
static void remount(int rootfd, const char *dst, unsigned long flags, int keep) {
    int fd = in_root(rootfd, dst, O_PATH);
    if (fd < 0) die("open %s in the container's root: %s", dst, strerror(errno));
    if (mount(NULL, fdpath(fd), NULL, MS_BIND | MS_REMOUNT | flags | (keep ? kept_flags(fd) : 0), NULL) != 0)
        die("remount %s: %s", dst, strerror(errno));
    close(fd);
}

static void do_mount(int rootfd, const struct mnt *m) {
    int bind = (m->flags & MS_BIND) != 0;
    int fd = make_in_root(rootfd, m->dst, m->dir);
    if (fd < 0) die("mount %s to %s: make the mount point: %s", m->src, m->dst, strerror(errno));
    if (bind) {
        if (mount(m->src, fdpath(fd), NULL, MS_BIND | (m->flags & MS_REC), NULL) != 0)
            die("mount %s to %s: %s", m->src, m->dst, strerror(errno));
        unsigned long extra = m->flags & ~(MS_BIND | MS_REC);
        if (m->ro || extra) { close(fd); remount(rootfd, m->dst, extra | (m->ro ? MS_RDONLY : 0), 0); return; }
    } else if (mount(m->src, fdpath(fd), m->type, m->flags | (m->ro ? MS_RDONLY : 0), m->data[0] ? m->data : NULL) != 0) {
        die("mount %s (%s) to %s: %s", m->src, m->type, m->dst, strerror(errno));
    }
    close(fd);
}

static void devices(int rootfd) {
    static const struct { const char *name; unsigned maj, min; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    static const struct { const char *name, *target; } links[] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}, {"core", "/proc/kcore"}};
    int dev = in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (dev < 0) die("open /dev in the container's root: %s", strerror(errno));
    mode_t old = umask(0);
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
        if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) != 0 && errno != EEXIST)
            die("mknod /dev/%s: %s", nodes[i].name, strerror(errno));
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (symlinkat(links[i].target, dev, links[i].name) != 0 && errno != EEXIST)
            die("symlink /dev/%s: %s", links[i].name, strerror(errno));
    umask(old);
    close(dev);
}

static void mask(int rootfd, const char *path) {
    int fd = in_root(rootfd, path, O_PATH);
    if (fd < 0) return;   /* nothing there to hide */
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", fdpath(fd), "tmpfs", MS_RDONLY, NULL) != 0) die("mask %s: %s", path, strerror(errno));
    } else if (mount("/dev/null", fdpath(fd), NULL, MS_BIND, NULL) != 0) {
        die("mask %s: %s", path, strerror(errno));
    }
    close(fd);
}

static void readonly(int rootfd, const char *path) {
    int fd = in_root(rootfd, path, O_PATH);
    if (fd < 0) return;
    if (mount(fdpath(fd), fdpath(fd), NULL, MS_BIND | MS_REC, NULL) != 0) die("readonly %s: %s", path, strerror(errno));
    close(fd);
    remount(rootfd, path, MS_RDONLY, 1);
}

/* an errno as Go prints it (runc's messages come from Go): "no such file or directory" */
static const char *goerr(int e) {
    static char b[128];
    snprintf(b, sizeof b, "%s", strerror(e));
    if (b[0] >= 'A' && b[0] <= 'Z') b[0] = (char)(b[0] - 'A' + 'a');
    return b;
}

static void exec_process(const struct spec *s) {
    const char *arg0 = s->argv[0];
    if (strchr(arg0, '/')) {
        execve(arg0, s->argv, s->envp);
        int e = errno;
        struct stat st;
        if (stat(arg0, &st) != 0) die("exec: \"%s\": stat %s: %s", arg0, arg0, goerr(errno));
        die("exec: \"%s\": %s", arg0, goerr(e));
    }
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (int i = 0; i < s->envc; i++)
        if (!strncmp(s->envp[i], "PATH=", 5)) path = s->envp[i] + 5;
    int denied = 0;
    for (const char *d = path; d;) {
        const char *colon = strchr(d, ':');
        size_t len = colon ? (size_t)(colon - d) : strlen(d);
        char full[4096];
        snprintf(full, sizeof full, "%.*s%s%s", (int)len, len ? d : ".", "/", arg0);
        /* as execvp: try each directory (every lookup costs a 9p round trip: no stat or access first) */
        execve(full, s->argv, s->envp);
        if (errno == EACCES) denied = 1;
        else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG)
            die("exec: \"%s\": %s", arg0, goerr(errno));
        d = colon ? colon + 1 : NULL;
    }
    die(denied ? "exec: \"%s\": permission denied" : "exec: \"%s\": executable file not found in $PATH", arg0);
}

int spec_terminal(const struct spec *s) { return s->terminal; }

static void child(const struct spec *s, int out, int errfd, int in, const char *slave) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    if (slave && slave[0]) {   /* a terminal: its slave is stdin, stdout and stderr, and the session's terminal */
        int t = open(slave, O_RDWR);
        if (t < 0 || ioctl(t, TIOCSCTTY, 0) != 0 || dup2(t, 0) < 0 || dup2(t, 1) < 0 || dup2(t, 2) < 0)
            die("the terminal %s: %s", slave, strerror(errno));
        if (t > 2) close(t);
    } else {
        int null = in >= 0 ? in : open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0) die("stdio: %s", strerror(errno));
        if (null > 2) close(null);
    }

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("make / private: %s", strerror(errno));
    if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) != 0) die("bind the root %s: %s", s->root, strerror(errno));
    int rootfd = open(s->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) die("open the root %s: %s", s->root, strerror(errno));
    int devtmpfs = 0;
    for (int i = 0; i < s->nmounts; i++) {
        do_mount(rootfd, &s->mounts[i]);
        if (!strcmp(s->mounts[i].dst, "/dev") && !strcmp(s->mounts[i].type, "tmpfs")) devtmpfs = 1;
    }
    if (devtmpfs) devices(rootfd);
    for (int i = 0; i < s->nmasked; i++) mask(rootfd, s->masked[i]);
    for (int i = 0; i < s->nrdonly; i++) readonly(rootfd, s->rdonly[i]);
    const char *cwd = s->cwd && s->cwd[0] ? s->cwd : "/";
    int c = make_in_root(rootfd, cwd, 1);
    if (c >= 0) close(c);
    close(rootfd);

    if (chdir(s->root) != 0) die("chdir %s: %s", s->root, strerror(errno));
    if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("move the root onto /: %s", strerror(errno));
    if (chroot(".") != 0) die("chroot: %s", strerror(errno));
    if (chdir("/") != 0) die("chdir /: %s", strerror(errno));
    if (s->root_ro) {
        int r = open("/", O_PATH | O_CLOEXEC);
        unsigned long kept = r >= 0 ? kept_flags(r) : 0;
        if (r >= 0) close(r);
        if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept, NULL) != 0)
            die("make the root read-only: %s", strerror(errno));
    }

    for (int i = 0; i < s->nrl; i++) {
        struct rlimit r = {(rlim_t)s->rl[i].soft, (rlim_t)s->rl[i].hard};
        if (setrlimit(s->rl[i].res, &r) != 0) die("setrlimit %d: %s", s->rl[i].res, strerror(errno));
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) die("keep capabilities: %s", strerror(errno));
    for (int cap = 0; cap < 64; cap++)
        if (!(s->bnd >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            die("drop capability %d from the bounding set: %s", cap, strerror(errno));
    if (setgroups((size_t)s->ngroups, s->groups) != 0) die("setgroups: %s", strerror(errno));
    if (setresgid(s->gid, s->gid, s->gid) != 0) die("setgid %u: %s", s->gid, strerror(errno));
    if (setresuid(s->uid, s->uid, s->uid) != 0) die("setuid %u: %s", s->uid, strerror(errno));
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(unsigned)(s->eff & 0xffffffffu), (unsigned)(s->prm & 0xffffffffu), 0},
        {(unsigned)(s->eff >> 32), (unsigned)(s->prm >> 32), 0}};
    if (syscall(SYS_capset, &hdr, data) != 0) die("capset: %s", strerror(errno));
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs: %s", strerror(errno));
    if (chdir(cwd) != 0) die("chdir to cwd (\"%s\") set in config.json failed: %s", cwd, strerror(errno));
    umask(022);
    exec_process(s);
}

/* ------------------------------------------------------------------ the parent */

static int put(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, value, strlen(value));
    int saved = errno;
    close(fd);
    errno = saved;
    return w < 0 ? -1 : 0;
}

/* A zygote: a process made ahead for the next container, while nothing waits (making a cgroup and cloning
 * into new namespaces cost 20-40 ms under TCG). It is born in its own cgroup (kc-N: cgroup v2 cannot rename
 * one) and in new mount and PID namespaces, holding the write ends of its stdout and stderr pipes, and waits
 * for its spec on a pipe; its mount namespace follows the agent's (the guest's / is shared) until it has the
 * spec, so the share mounted later reaches it. */
struct zygote {
    pid_t pid;
    int spec, errs, out, err;   /* the agent's ends */
    char cgroup[96];
    int in;                     /* the agent's end of its stdin (a pipe, or the terminal's master), or -1 */
};
static struct zygote z = {0, -1, -1, -1, -1, "", -1};
static unsigned zseq;

static void zygote_main(int specfd, int out, int errfd, int in, const char *slave) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) die("out of memory");
        ssize_t k = read(specfd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) die("read the spec: %s", strerror(errno));
        if (k == 0) break;
        len += (size_t)k;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap + 1); }
    }
    if (len == 0) _exit(0);   /* the agent let this zygote go */
    buf[len] = 0;
    close(specfd);
    char err[1024];
    struct spec *s = spec_parse_text(buf, len, err, sizeof err);
    if (!s) die("%s", err);
    child(s, out, errfd, in, slave);
}

/* a zygote into *into; pidns_fd >= 0: in that PID namespace (a debug container sharing its target's) instead of
 * a new one */
static void zygote_make(struct zygote *into, int pidns_fd, int stdin_pipe, int terminal) {
    char d[96], slave[128] = {0};
    int pin[2] = {-1, -1}, master = -1;
    if (terminal) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) || unlockpt(master) || ptsname_r(master, slave, sizeof slave)) {
            if (master >= 0) close(master);
            return;
        }
    } else if (stdin_pipe && pipe2(pin, O_CLOEXEC)) {
        return;
    }
    snprintf(d, sizeof d, "/sys/fs/cgroup/kc-%u", ++zseq);
    if (mkdir(d, 0755) != 0) return;
    int cg = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int sp[2] = {-1, -1}, ep[2] = {-1, -1}, po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (cg < 0 || pipe2(sp, O_CLOEXEC) || pipe2(ep, O_CLOEXEC) || pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) goto fail;
    int own = -1;
    if (pidns_fd >= 0) {   /* the children's PID namespace, for this one clone; the agent's own afterwards */
        own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own < 0 || setns(pidns_fd, CLONE_NEWPID) != 0) { if (own >= 0) close(own); goto fail; }
    }
    struct kc_clone_args args = {CLONE_NEWNS | (pidns_fd >= 0 ? 0 : CLONE_NEWPID) | KC_CLONE_INTO_CGROUP, 0, 0, 0, SIGCHLD,
                                 0, 0, 0, 0, 0, (unsigned long long)cg};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid != 0 && own >= 0) {
        (void)!setns(own, CLONE_NEWPID);   /* back to its own (an ancestor of any: cannot be refused) */
        close(own);
    }
    if (pid == 0) {
        close(sp[1]); close(ep[0]); close(po[0]); close(pe[0]);
        errpipe = ep[1];
        if (master >= 0) close(master);
        if (pin[1] >= 0) close(pin[1]);
        zygote_main(sp[0], po[1], pe[1], pin[0], slave);
        _exit(127);
    }
    if (pid < 0) goto fail;
    close(cg); close(sp[0]); close(ep[1]); close(po[1]); close(pe[1]);
    if (pin[0] >= 0) close(pin[0]);
    into->pid = pid;
    into->spec = sp[1]; into->errs = ep[0]; into->out = po[0]; into->err = pe[0];
    into->in = master >= 0 ? master : pin[1];
    snprintf(into->cgroup, sizeof into->cgroup, "%s", d);
    return;
fail:
    if (master >= 0) close(master);
    if (pin[0] >= 0) { close(pin[0]); close(pin[1]); }
    if (cg >= 0) close(cg);
    int *fds[] = {sp, ep, po, pe};
    for (int i = 0; i < 4; i++) { if (fds[i][0] >= 0) close(fds[i][0]); if (fds[i][1] >= 0) close(fds[i][1]); }
    rmdir(d);
}

void container_prepare(void) {
    if (z.pid <= 0) zygote_make(&z, -1, 0, 0);
}

static void zygote_forget(void) {
    int *fds[] = {&z.spec, &z.errs, &z.out, &z.err};
    for (int i = 0; i < 4; i++) if (*fds[i] >= 0) { close(*fds[i]); *fds[i] = -1; }
    z.pid = 0;
    z.cgroup[0] = 0;
}

int container_reaped(pid_t pid) {
    if (pid <= 0 || pid != z.pid) return 0;
    char cg[96];
    snprintf(cg, sizeof cg, "%s", z.cgroup);
    zygote_forget();
    rmdir(cg);
    return 1;
}

static int put_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

pid_t container_start(const struct spec *s, int *out, int *errfd, int *in, char *cgpath, size_t cglen, char *err, size_t errlen) {
    cgpath[0] = 0;
    *in = -1;
    if (!s->cgroup || !s->cgroup[0]) { snprintf(err, errlen, "the container spec has no cgroup"); return -1; }
    struct zygote one = {0, -1, -1, -1, -1, "", -1}, *use = &z;
    if (s->pidns || s->stdin_pipe || s->terminal) {
        /* a debug container in its target's PID namespace, or one with a stdin or a terminal: a zygote of its own */
        int nsfd = -1;
        if (s->pidns && (nsfd = open(s->pidns, O_RDONLY | O_CLOEXEC)) < 0) {
            snprintf(err, errlen, "open the target's PID namespace %s: %s", s->pidns, strerror(errno));
            return -1;
        }
        zygote_make(&one, nsfd, s->stdin_pipe, s->terminal);
        if (nsfd >= 0) close(nsfd);
        use = &one;
    } else {
        container_prepare();
    }
    if (use->pid <= 0) { snprintf(err, errlen, "cannot make the container's process: %s", strerror(errno)); return -1; }
    pid_t pid = use->pid;
    int specfd = use->spec, errs = use->errs;
    *out = use->out;
    *errfd = use->err;
    *in = use->in;
    snprintf(cgpath, cglen, "%s", use->cgroup);
    if (use == &z) {
        z.spec = z.errs = z.out = z.err = -1;
        zygote_forget();
    }
    for (int i = 0; i < s->ncg; i++) {
        char f[256];
        snprintf(f, sizeof f, "%s/%s", cgpath, s->cgfile[i]);
        if (strchr(s->cgfile[i], '/') || put(f, s->cgval[i]) != 0) {
            snprintf(err, errlen, "set %s to %s: %s", s->cgfile[i], s->cgval[i], strerror(errno));
            goto failed;
        }
    }
    int wrote = put_all(specfd, s->raw, s->rawlen);
    close(specfd);
    specfd = -1;
    if (wrote != 0) { snprintf(err, errlen, "hand the spec to the container's process: %s", strerror(errno)); goto failed; }
    /* the child's error, or end of file when its exec closed the pipe */
    size_t got = 0;
    err[0] = 0;
    for (;;) {
        struct pollfd p = {errs, POLLIN, 0};
        int r = poll(&p, 1, 60000);
        if (r == 0) { snprintf(err, errlen, "the container's process did not start within 60 s"); got = 1; break; }
        if (r < 0) { if (errno == EINTR) continue; break; }
        ssize_t k = read(errs, err + got, errlen - 1 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
        err[got] = 0;
        if (got >= errlen - 1) break;
    }
    close(errs);
    if (!got) return pid;
    errs = -1;
failed:
    if (specfd >= 0) close(specfd);
    if (errs >= 0) close(errs);
    close(*out); close(*errfd);
    if (*in >= 0) close(*in);
    *out = *errfd = *in = -1;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}
