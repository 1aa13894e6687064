/* kubeclass guest agent: creating a container inside the guest, in-process (as Kata's agent does, with no
 * OCI runtime binary in the guest: under TCG, loading and running crun cost 0.2-0.45 s per container).
 *
 * The node agent turns the container's OCI config.json into a line-based spec (kubeclass/node/vm/guestspec.py,
 * which documents the format), so that this side parses no JSON. What it does, in runc's order:
 *   parent: create the container's cgroup below the Pod's with its limits; clone into new mount and PID
 *           namespaces; move the child into the cgroup; let it go; wait until it has exec'd or failed.
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

#define MAXGROUPS 256

struct mnt { char *type, *src, *dst, *data; unsigned long flags; int ro; };

struct spec {
    char *buf;
    char *root, *cwd, *cgroup;
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
    free(s->buf); free(s->argv); free(s->envp); free(s->rl); free(s->mounts);
    free(s->masked); free(s->rdonly); free(s->cgfile); free(s->cgval);
    free(s);
}

const char *spec_cgroup(const struct spec *s) { return s->cgroup ? s->cgroup : ""; }

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

struct spec *spec_parse(const char *hex, char *err, size_t errlen) {
    size_t hl = strlen(hex);
    if (hl % 2) { snprintf(err, errlen, "the container spec is not hex"); return NULL; }
    struct spec *s = calloc(1, sizeof *s);
    char *buf = malloc(hl / 2 + 1);
    if (!s || !buf) { free(s); free(buf); snprintf(err, errlen, "out of memory"); return NULL; }
    size_t len = 0;
    for (size_t i = 0; i < hl; i += 2) {
        int a = hexval(hex[i]), b = hexval(hex[i + 1]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) { free(s); free(buf); snprintf(err, errlen, "the container spec is not hex"); return NULL; }
        buf[len++] = (char)(a << 4 | b);
    }
    buf[len] = 0;
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
        }
        else if (!strcmp(key, "mask")) { NEED(1); s->masked[s->nmasked++] = f[1]; }
        else if (!strcmp(key, "readonly")) { NEED(1); s->rdonly[s->nrdonly++] = f[1]; }
        else if (!strcmp(key, "cgroup")) { NEED(1); s->cgroup = f[1]; }
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

static void remount(int rootfd, const char *dst, unsigned long flags) {
    int fd = in_root(rootfd, dst, O_PATH);
    if (fd < 0) die("open %s in the container's root: %s", dst, strerror(errno));
    if (mount(NULL, fdpath(fd), NULL, MS_BIND | MS_REMOUNT | flags | kept_flags(fd), NULL) != 0)
        die("remount %s: %s", dst, strerror(errno));
    close(fd);
}

static void do_mount(int rootfd, const struct mnt *m) {
    int bind = (m->flags & MS_BIND) != 0;
    int dir = 1;
    if (bind) {
        struct stat st;
        if (stat(m->src, &st) != 0) die("mount %s to %s: stat %s: %s", m->src, m->dst, m->src, strerror(errno));
        dir = S_ISDIR(st.st_mode);
    }
    int fd = make_in_root(rootfd, m->dst, dir);
    if (fd < 0) die("mount %s to %s: make the mount point: %s", m->src, m->dst, strerror(errno));
    if (bind) {
        if (mount(m->src, fdpath(fd), NULL, MS_BIND | (m->flags & MS_REC), NULL) != 0)
            die("mount %s to %s: %s", m->src, m->dst, strerror(errno));
        unsigned long extra = m->flags & ~(MS_BIND | MS_REC);
        if (m->ro || extra) { close(fd); remount(rootfd, m->dst, extra | (m->ro ? MS_RDONLY : 0)); return; }
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
    remount(rootfd, path, MS_RDONLY);
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
        struct stat st;
        if (stat(arg0, &st) != 0) die("exec: \"%s\": stat %s: %s", arg0, arg0, goerr(errno));
        execve(arg0, s->argv, s->envp);
        die("exec: \"%s\": %s", arg0, goerr(errno));
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
        struct stat st;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            execve(full, s->argv, s->envp);   /* every lookup costs a 9p round trip: no access(2) first */
            if (errno != EACCES) die("exec: \"%s\": %s", arg0, goerr(errno));
            denied = 1;
        }
        d = colon ? colon + 1 : NULL;
    }
    die(denied ? "exec: \"%s\": permission denied" : "exec: \"%s\": executable file not found in $PATH", arg0);
}

static void child(const struct spec *s, int go, int out, int errfd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char b;
    if (read(go, &b, 1) != 1) _exit(1);   /* the parent gave up */
    close(go);
    setsid();
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0) die("stdio: %s", strerror(errno));
    if (null > 2) close(null);

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

static int make_cgroup(const struct spec *s, char *err, size_t errlen) {
    if (!s->cgroup || !s->cgroup[0]) return 0;
    char d[4096];
    int n = snprintf(d, sizeof d, "/sys/fs/cgroup/%s", s->cgroup[0] == '/' ? s->cgroup + 1 : s->cgroup);
    if (n >= (int)sizeof d || strstr(d, "/../") || strstr(d, "/./")) { snprintf(err, errlen, "bad cgroup path"); return -1; }
    /* each level below the root: made, and its controllers handed down to the level below */
    for (char *p = d + strlen("/sys/fs/cgroup/");; p++) {
        if (*p == '/' || *p == 0) {
            char save = *p;
            *p = 0;
            if (mkdir(d, 0755) != 0 && errno != EEXIST) { snprintf(err, errlen, "mkdir %s: %s", d, strerror(errno)); return -1; }
            if (save) {
                char sc[4200];
                snprintf(sc, sizeof sc, "%s/cgroup.subtree_control", d);
                put(sc, "+cpu +memory +pids");
            }
            *p = save;
            if (!save) break;
        }
    }
    for (int i = 0; i < s->ncg; i++) {
        if (strchr(s->cgfile[i], '/')) { snprintf(err, errlen, "bad cgroup file %s", s->cgfile[i]); return -1; }
        char f[4400];
        snprintf(f, sizeof f, "%s/%s", d, s->cgfile[i]);
        if (put(f, s->cgval[i]) != 0) { snprintf(err, errlen, "set %s to %s: %s", s->cgfile[i], s->cgval[i], strerror(errno)); return -1; }
    }
    return 0;
}

pid_t container_start(const struct spec *s, int out, int errfd, char *err, size_t errlen) {
    if (make_cgroup(s, err, errlen) != 0) return -1;
    int go[2], ep[2];
    if (pipe2(go, O_CLOEXEC) != 0) { snprintf(err, errlen, "pipe: %s", strerror(errno)); return -1; }
    if (pipe2(ep, O_CLOEXEC) != 0) { close(go[0]); close(go[1]); snprintf(err, errlen, "pipe: %s", strerror(errno)); return -1; }
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(go[1]);
        close(ep[0]);
        errpipe = ep[1];
        child(s, go[0], out, errfd);
        _exit(127);
    }
    close(go[0]);
    close(ep[1]);
    if (pid < 0) {
        snprintf(err, errlen, "clone: %s", strerror(errno));
        close(go[1]); close(ep[0]);
        return -1;
    }
    if (s->cgroup && s->cgroup[0]) {
        char procs[4200], v[32];
        snprintf(procs, sizeof procs, "/sys/fs/cgroup/%s/cgroup.procs", s->cgroup[0] == '/' ? s->cgroup + 1 : s->cgroup);
        snprintf(v, sizeof v, "%d", (int)pid);
        if (put(procs, v) != 0) {
            snprintf(err, errlen, "join cgroup %s: %s", s->cgroup, strerror(errno));
            close(go[1]); close(ep[0]);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
    }
    (void)!write(go[1], "g", 1);
    close(go[1]);
    /* the child's error, or end of file when its exec closed the pipe */
    size_t got = 0;
    err[0] = 0;
    for (;;) {
        struct pollfd p = {ep[0], POLLIN, 0};
        int r = poll(&p, 1, 60000);
        if (r == 0) { snprintf(err, errlen, "the container's process did not start within 60 s"); got = 1; kill(pid, SIGKILL); break; }
        if (r < 0) { if (errno == EINTR) continue; break; }
        ssize_t k = read(ep[0], err + got, errlen - 1 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
        err[got] = 0;
        if (got >= errlen - 1) break;
    }
    close(ep[0]);
    if (got) {
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}
