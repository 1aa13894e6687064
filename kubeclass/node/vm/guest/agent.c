/* kubeclass guest agent: PID 1 of a VM Pod's guest (kubeclass/node/vm).
 *
 * It mounts the guest's pseudo filesystems, loads the kernel modules listed in /modules.list, finds the
 * virtio-serial port named "kubeclass.agent" and serves the node agent on it; `setup` mounts the host's
 * share (9p, tag "kcshare", at the path given by kc.share= on the kernel command line). Each container of the Pod
 * is created by the agent itself (container.c: no OCI runtime binary in the guest), in its own mount and PID
 * namespace and guest cgroup, sharing the VM's network, IPC and UTS namespaces. Like conmon on the host, the agent holds each
 * container's stdout and stderr and writes them in the CRI log format to the log file the host named (on
 * the share, so `kubectl logs` reads it where it reads a runc container's), and writes the exit code to the
 * exit file the host named, then "oom" beside it when the guest's memory cgroup killed the container.
 *
 * Protocol (documented for the host in kubeclass/node/vm/machine.py), one line per message, tab-separated:
 *   host -> guest   ID VERB ARG...
 *   guest -> host   ID ok [DATA...] | ID err MESSAGE
 * Verbs: ping; mount (the share); setup HOSTNAME UNIX_NANOS ENTROPY_HEX; run CID LOG EXITFILE RUNTIMELOG SPEC;
 *        kill CID SIGNO; stats [CID...]; poweroff; attach CID (its output from now on, then exit); detach ID;
 *        exec CID TTY(0|1) STDIN(0|1) ARGV_HEX (argv NUL-separated) -> ID ok PID, then the session's stream on the
 *          same ID: `ID out HEX`, `ID err HEX` as the command writes, `ID exit CODE` last (128+signal if killed);
 *        stdin ID HEX, close ID (its stdin), resize ID ROWS COLS, signal ID SIGNO: to a session, no answer;
 *        net MAC ADDRESS/PREFIX GATEWAY MTU -> ok IFNAME: the VM's network interface takes the Pod's address
 *          (and the MAC of the Pod's veth, whose traffic the host redirects to the VM's tap), default route via GATEWAY.
 * Written to be small: one static binary, no threads; memory is allocated only while a spec is read.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container.h"
#include "execs.h"

#define VERSION "3"
#define MAXC 64
#define LINE 16384          /* CRI partial-record size, as conmon's buffer */
#define PATHMAX 1024
#define LINEMAX (2 << 20)   /* a request: a run request carries its container's spec */

struct stream {
    int fd;
    char buf[LINE];
    size_t len;
};

struct ctr {
    int used;
    char cid[128];
    pid_t pid;              /* the container's process (PID 1 of its PID namespace) */
    char log[PATHMAX], exitfile[PATHMAX], cgroup[PATHMAX];
    int logfd;
    struct stream out, err;
    int reaped, status;
    struct timespec reaped_at;
    char attached[4][32];   /* request ids of `attach` sessions that get its output as it comes */
    int in, master;         /* its stdin (a pipe's write end, or the terminal's master), the terminal's master */
};

static struct ctr ctrs[MAXC];

#define MAXE 16
struct exe {
    int used;
    char id[32];
    pid_t pid;
    int in, out, err, master;   /* master: the terminal, for out and in */
    int reaped, status;
    struct timespec reaped_at;
};
static struct exe exes[MAXE];
static int ctl = -1;
static char share[PATHMAX] = "/run/kubeclass/share";

static void say(const char *fmt, ...) {
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        char m[1100];
        int k = snprintf(m, sizeof m, "<3>kubeclass-agent: %.*s", n, b);
        (void)!write(fd, m, k);
        close(fd);
    }
}

/* a write that may wait up to about 2 s for a full or disconnected port, then gives up */
static void writeall(int fd, const char *p, size_t n) {
    int waits = 0;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN && waits++ < 20) { struct pollfd q = {fd, POLLOUT, 0}; if (poll(&q, 1, 100) <= 0) usleep(100000); continue; }
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void reply(const char *id, const char *fmt, ...) {
    char b[4096];
    int n = snprintf(b, sizeof b, "%s\t", id);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(b + n, sizeof b - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof b - 2) n = sizeof b - 2;
    b[n++] = '\n';
    if (ctl >= 0) writeall(ctl, b, n);
}

static int write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, data, strlen(data));
    close(fd);
    return w < 0 ? -1 : 0;
}

/* a small file's text in buf (NUL-terminated): the bytes read, -1 when it cannot be opened */
static ssize_t read_file(const char *path, char *buf, size_t size) {
    memset(buf, 0, size);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    return n;
}

static int write_atomic(const char *path, const char *data) {
    char tmp[PATHMAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    writeall(fd, data, strlen(data));
    fsync(fd);
    close(fd);
    return rename(tmp, path);
}

/* ------------------------------------------------------------------ boot */

static char cmdline[4096];

static void read_cmdline(void) {
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (n > 0) cmdline[n] = 0;
    cmdline[strcspn(cmdline, "\n")] = 0;
}

/* "<module>.<param>=<value>" words of the kernel command line become that module's parameters, as modprobe
 * passes them (microvm's virtio_mmio.device=... entries) */
static void module_params(const char *path, char *out, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char mod[64];
    size_t m = strcspn(base, ".");
    if (m >= sizeof mod) m = sizeof mod - 1;
    memcpy(mod, base, m);
    mod[m] = 0;
    for (char *s = mod; *s; s++) if (*s == '-') *s = '_';
    out[0] = 0;
    size_t used = 0;
    for (const char *w = cmdline; *w;) {
        size_t len = strcspn(w, " ");
        if (len > m + 1 && strncmp(w, mod, m) == 0 && w[m] == '.' && used + len - m + 1 < size) {
            if (used) out[used++] = ' ';
            memcpy(out + used, w + m + 1, len - m - 1);
            used += len - m - 1;
            out[used] = 0;
        }
        w += len;
        while (*w == ' ') w++;
    }
}

static void load_modules(void) {
    FILE *f = fopen("/modules.list", "re");
    if (!f) return;
    char line[PATHMAX];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { say("module %s: %s", line, strerror(errno)); continue; }
        char params[1024];
        module_params(line, params, sizeof params);
        if (syscall(SYS_finit_module, fd, params, 0) != 0 && errno != EEXIST)
            say("module %s: %s", line, strerror(errno));
        close(fd);
    }
    fclose(f);
}

static void cmdline_share(void) {
    char *p = strstr(cmdline, "kc.share=");
    if (!p) return;
    p += 9;
    size_t k = strcspn(p, " ");
    if (k > 0 && k < sizeof share) { memcpy(share, p, k); share[k] = 0; }
}

static void mkdirs(const char *path) {
    char p[PATHMAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') { *s = 0; mkdir(p, 0755); *s = '/'; }
    mkdir(p, 0755);
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    struct ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &r) == 0) {
        r.ifr_flags |= IFF_UP | IFF_RUNNING;
        ioctl(s, SIOCSIFFLAGS, &r);
    }
    close(s);
}

/* the VM's network interface: the first one besides lo (virtio_net probes it after its module loads) */
static int find_netif(char *name, size_t size) {
    for (int tries = 0; tries < 300; tries++) {
        DIR *d = opendir("/sys/class/net");
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.' || !strcmp(e->d_name, "lo") || strlen(e->d_name) >= size) continue;
                snprintf(name, size, "%s", e->d_name);
                closedir(d);
                return 0;
            }
            closedir(d);
        }
        usleep(10000);
    }
    return -1;
}

static void do_net(const char *id, char **a, int n) {
    if (n < 4) { reply(id, "err\tnet needs MAC ADDRESS/PREFIX GATEWAY MTU"); return; }
    char ifname[IFNAMSIZ], addr[64];
    unsigned int mac[6];
    if (sscanf(a[0], "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) != 6) {
        reply(id, "err\tbad MAC %s", a[0]); return;
    }
    snprintf(addr, sizeof addr, "%s", a[1]);
    char *slash = strchr(addr, '/');
    int prefix = slash ? atoi(slash + 1) : 32;
    if (slash) *slash = 0;
    struct in_addr ip, gw;
    if (inet_pton(AF_INET, addr, &ip) != 1 || prefix < 0 || prefix > 32) { reply(id, "err\tbad address %s", a[1]); return; }
    if (inet_pton(AF_INET, a[2], &gw) != 1) { reply(id, "err\tbad gateway %s", a[2]); return; }
    if (find_netif(ifname, sizeof ifname) != 0) { reply(id, "err\tthe VM has no network interface"); return; }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) { reply(id, "err\tsocket: %s", strerror(errno)); return; }
    struct ifreq r;
    const char *step = "";
    memset(&r, 0, sizeof r);
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", ifname);
    r.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (int i = 0; i < 6; i++) r.ifr_hwaddr.sa_data[i] = (char)mac[i];
    if (ioctl(s, SIOCSIFHWADDR, &r) != 0) { step = "set its MAC"; goto fail; }
    int mtu = atoi(a[3]);
    if (mtu >= 576) {
        memset(&r, 0, sizeof r);
        snprintf(r.ifr_name, sizeof r.ifr_name, "%s", ifname);
        r.ifr_mtu = mtu;
        if (ioctl(s, SIOCSIFMTU, &r) != 0) { step = "set its MTU"; goto fail; }
    }
    memset(&r, 0, sizeof r);
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", ifname);
    struct sockaddr_in *sin = (struct sockaddr_in *)&r.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr = ip;
    if (ioctl(s, SIOCSIFADDR, &r) != 0) { step = "set its address"; goto fail; }
    sin = (struct sockaddr_in *)&r.ifr_netmask;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = prefix ? htonl(0xffffffffu << (32 - prefix)) : 0;
    if (ioctl(s, SIOCSIFNETMASK, &r) != 0) { step = "set its netmask"; goto fail; }
    if (ioctl(s, SIOCGIFFLAGS, &r) != 0) { step = "read its flags"; goto fail; }
    r.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &r) != 0) { step = "bring it up"; goto fail; }
    if (gw.s_addr) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_gateway)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_gateway)->sin_addr = gw;
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = ifname;
        if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST) { step = "add the default route"; goto fail; }
    }
    close(s);
    reply(id, "ok\t%s", ifname);
    return;
fail:
    reply(id, "err\t%s: %s: %s", ifname, step, strerror(errno));
    close(s);
}

static int open_port(void) {
    /* /sys/class/virtio-ports/vportNpM/name holds the port's name; its device node is /dev/vportNpM */
    for (int tries = 0; tries < 500; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                char p[300], name[64] = {0};
                snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0) continue;
                ssize_t n = read(fd, name, sizeof name - 1);
                close(fd);
                if (n > 0 && strncmp(name, "kubeclass.agent", 15) == 0) {
                    snprintf(p, sizeof p, "/dev/%s", e->d_name);
                    closedir(d);
                    return open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
                }
            }
            closedir(d);
        }
        usleep(10000);
    }
    return -1;
}

static void boot(void) {
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    mkdir("/dev/pts", 0755);
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620,gid=5");
    mkdir("/dev/shm", 01777);
    mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mkdir("/run", 0755);
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    mkdir("/tmp", 01777);
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate");
    write_file("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory +pids");
    mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL);   /* the share, mounted later, reaches a waiting zygote */
    write_file("/proc/sys/kernel/dmesg_restrict", "0");   /* the guest kernel serves this Pod alone */
    read_cmdline();
    load_modules();
    loopback_up();
    cmdline_share();
    mkdirs(share);
    container_prepare();
}

/* the share is mounted by `setup`, not at boot: QEMU cannot snapshot a VM whose 9p export is mounted, and
 * a VM started from a snapshot (template.py) is set up like a freshly booted one */
static int mount_share(void) {
    static int mounted;
    if (mounted) return 0;
    if (mount("kcshare", share, "9p", 0, "trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client") != 0)
        return -1;
    mounted = 1;
    return 0;
}

/* fresh entropy from the host, credited and the CRNG reseeded: VMs started from one snapshot would
 * otherwise share its random state */
static void add_entropy(const char *hex) {
    size_t n = strlen(hex) / 2;
    if (n == 0 || n > 256) return;
    struct { int entropy_count; int buf_size; unsigned char buf[256]; } e;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) return;
        e.buf[i] = (unsigned char)b;
    }
    e.entropy_count = (int)(n * 8);
    e.buf_size = (int)n;
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    if (ioctl(fd, RNDADDENTROPY, &e) != 0) say("RNDADDENTROPY: %s", strerror(errno));
    ioctl(fd, RNDRESEEDCRNG);
    close(fd);
}

/* ------------------------------------------------------------------ containers */

static struct ctr *find(const char *cid) {
    for (int i = 0; i < MAXC; i++)
        if (ctrs[i].used && strcmp(ctrs[i].cid, cid) == 0) return &ctrs[i];
    return NULL;
}

static void cri_write(struct ctr *c, const char *stream, int full, const char *p, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[96];
    int h = snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ %s %c ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec, stream, full ? 'F' : 'P');
    char rec[LINE + 128];
    memcpy(rec, head, h);
    memcpy(rec + h, p, n);
    rec[h + n] = '\n';
    if (c->logfd >= 0) writeall(c->logfd, rec, h + n + 1);
}

static void emit(const char *id, const char *kind, const char *data, size_t n);

/* read what a stream has; complete lines become F records, a full buffer a P record; at EOF the rest. What is read
 * also goes, as it is, to the container's attach sessions */
static void drain(struct ctr *c, struct stream *s, const char *name) {
    for (;;) {
        ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) {
            if (s->len) cri_write(c, name, 0, s->buf, s->len);
            s->len = 0;
            close(s->fd);
            s->fd = -1;
            return;
        }
        for (int k = 0; k < 4; k++)
            for (size_t off = 0; c->attached[k][0] && off < (size_t)n; off += 8192)
                emit(c->attached[k], name[3] == 'o' ? "out" : "err", s->buf + s->len + off,
                     (size_t)n - off < 8192 ? (size_t)n - off : 8192);
        s->len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < s->len; i++)
            if (s->buf[i] == '\n') { cri_write(c, name, 1, s->buf + start, i - start); start = i + 1; }
        if (start == 0 && s->len == sizeof s->buf) { cri_write(c, name, 0, s->buf, s->len); s->len = 0; continue; }
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
    }
}

static long oom_kills(const char *cgdir) {
    char p[PATHMAX + 32], b[512] = {0};
    snprintf(p, sizeof p, "%s/memory.events", cgdir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) return 0;
    char *k = strstr(b, "oom_kill ");
    return k ? atol(k + 9) : 0;
}

/* a container's cgroup, once its processes are gone (they die with its PID 1; give them a moment) */
static void remove_cgroup(const char *cg) {
    if (!cg[0]) return;
    for (int i = 0; i < 50 && rmdir(cg) != 0 && errno == EBUSY; i++) usleep(2000);
}

/* a container that could not start: the reason in RUNTIMELOG as runc's JSON log line, and in the answer */
static void failed(const char *id, const char *rtlog, char *msg) {
    for (char *p = msg; *p; p++) if ((unsigned char)*p < 32) *p = ' ';   /* one line, one field */
    char line[4200];
    size_t n = (size_t)snprintf(line, sizeof line, "{\"level\":\"error\",\"msg\":\"");
    for (const char *p = msg; *p && n < sizeof line - 8; p++) {
        if (*p == '"' || *p == '\\') line[n++] = '\\';
        line[n++] = *p;
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    int fd = open(rtlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd >= 0) { writeall(fd, line, n); close(fd); }
    reply(id, "err\t%s", msg);
}

static void finish(struct ctr *c) {
    int code = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 128 + WTERMSIG(c->status);
    if (c->out.fd >= 0) drain(c, &c->out, "stdout");
    if (c->err.fd >= 0) drain(c, &c->err, "stderr");
    if (c->out.fd >= 0) { close(c->out.fd); c->out.fd = -1; }
    if (c->err.fd >= 0) { close(c->err.fd); c->err.fd = -1; }
    if (c->logfd >= 0) { fsync(c->logfd); close(c->logfd); c->logfd = -1; }
    if (oom_kills(c->cgroup) > 0) {
        char p[PATHMAX + 8];
        snprintf(p, sizeof p, "%s.oom", c->exitfile);
        write_atomic(p, "oom");
    }
    char b[32];
    snprintf(b, sizeof b, "%d", code);
    write_atomic(c->exitfile, b);
    remove_cgroup(c->cgroup);
    reply("0", "event\texit\t%s\t%d", c->cid, code);
    for (int k = 0; k < 4; k++)
        if (c->attached[k][0]) { reply(c->attached[k], "exit\t%d", code); c->attached[k][0] = 0; }
    if (c->in >= 0) { close(c->in); c->in = -1; }
    c->master = -1;
    c->used = 0;
}

/* the container an attach session (by its request id) is attached to */
static struct ctr *attached_to(const char *id) {
    for (int i = 0; i < MAXC; i++)
        for (int k = 0; ctrs[i].used && k < 4; k++)
            if (!strcmp(ctrs[i].attached[k], id)) return &ctrs[i];
    return NULL;
}

/* attach CID: this request's id gets the container's output from now on ("out HEX" / "err HEX"), then "exit CODE";
 * detach ID ends that. With a stdin (spec "stdin") or a terminal, "stdin ID HEX" writes to it, "close ID" closes it
 * (stdinOnce), "resize ID ROWS COLS" sizes the terminal */
static void do_attach(const char *id, char **a, int n) {
    if (n != 1) { reply(id, "err\tattach takes 1 argument"); return; }
    struct ctr *c = find(a[0]);
    if (!c || c->reaped) { reply(id, "err\tcontainer %s is not running", a[0]); return; }
    for (int k = 0; k < 4; k++)
        if (!c->attached[k][0]) {
            snprintf(c->attached[k], sizeof c->attached[k], "%s", id);
            reply(id, "ok");
            return;
        }
    reply(id, "err\tcontainer %s has 4 attach sessions already", a[0]);
}

static void do_detach(char **a, int n) {
    if (n != 1) return;
    for (int i = 0; i < MAXC; i++)
        for (int k = 0; ctrs[i].used && k < 4; k++)
            if (!strcmp(ctrs[i].attached[k], a[0])) ctrs[i].attached[k][0] = 0;
}

/* run CID LOG EXITFILE RUNTIMELOG SPEC: the container the spec describes (guestspec.py's format, hex-encoded),
 * its stdout and stderr held here and written to LOG in the CRI format; answered with its pid once it has
 * exec'd (the spec travels in the request: reading a file over 9p costs 15-35 ms under TCG) */
static void do_run(const char *id, char **a, int n) {
    if (n != 5) { reply(id, "err\trun takes 5 arguments"); return; }
    if (find(a[0])) { reply(id, "err\tcontainer %s exists", a[0]); return; }
    struct ctr *c = NULL;
    for (int i = 0; i < MAXC; i++) if (!ctrs[i].used) { c = &ctrs[i]; break; }
    if (!c) { reply(id, "err\ttoo many containers"); return; }
    char err[2048];
    struct spec *sp = spec_parse(a[4], err, sizeof err);
    if (!sp) { failed(id, a[3], err); return; }
    memset(c, 0, sizeof *c);
    snprintf(c->cid, sizeof c->cid, "%s", a[0]);
    snprintf(c->log, sizeof c->log, "%s", a[1]);
    snprintf(c->exitfile, sizeof c->exitfile, "%s", a[2]);
    int lf = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (lf < 0) { spec_free(sp); snprintf(err, sizeof err, "open %s: %s", c->log, strerror(errno)); failed(id, a[3], err); return; }
    int out, errfd, in;
    pid_t pid = container_start(sp, &out, &errfd, &in, c->cgroup, sizeof c->cgroup, err, sizeof err);
    int terminal = spec_terminal(sp);
    spec_free(sp);
    if (pid < 0) {
        close(lf);
        remove_cgroup(c->cgroup);
        failed(id, a[3], err);
        return;
    }
    c->in = in;
    c->master = -1;
    if (terminal && in >= 0) {   /* all its output comes through the terminal */
        close(out);
        close(errfd);
        out = fcntl(in, F_DUPFD_CLOEXEC, 3);
        errfd = -1;
        c->master = in;
    }
    if (in >= 0) fcntl(in, F_SETFL, O_NONBLOCK);   /* a container that does not read never stalls the agent */
    fcntl(out, F_SETFL, O_NONBLOCK);
    if (errfd >= 0) fcntl(errfd, F_SETFL, O_NONBLOCK);
    c->used = 1;
    c->pid = pid;
    c->logfd = lf;
    c->out.fd = out;
    c->err.fd = errfd;
    reply(id, "ok\t%d", (int)pid);
}

static void do_kill(const char *id, char **a, int n) {
    if (n != 2) { reply(id, "err\tkill takes 2 arguments"); return; }
    struct ctr *c = find(a[0]);
    if (!c) { reply(id, "ok\tgone"); return; }
    if (!c->reaped) kill(c->pid, atoi(a[1]));
    reply(id, "ok");
}

static void do_setup(const char *id, char **a, int n) {
    if (n != 3) { reply(id, "err\tsetup takes 3 arguments"); return; }
    if (mount_share() != 0) { reply(id, "err\tmount 9p share at %s: %s", share, strerror(errno)); return; }
    add_entropy(a[2]);
    sethostname(a[0], strlen(a[0]));
    long long ns = atoll(a[1]);
    if (ns > 0) {
        struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
        clock_settime(CLOCK_REALTIME, &ts);
    }
    reply(id, "ok");
}

/* a guest cgroup's (full path) memory.current, working set (memory.current - inactive_file) and cpu usage_usec, as
 * "\tMEM\tWS\tUSEC" ("\t-\t-\t-" when it cannot be read) */
static int cgroup_stats(const char *cg, char *out, size_t size) {
    char path[PATHMAX + 32], b[8192];
    long long mem = -1, inactive = 0, usec = -1;
    snprintf(path, sizeof path, "%s/memory.current", cg);
    if (read_file(path, b, sizeof b) > 0) mem = atoll(b);
    snprintf(path, sizeof path, "%s/memory.stat", cg);
    if (read_file(path, b, sizeof b) >= 0) {
        char *p = strstr(b, "\ninactive_file ");
        if (p) inactive = atoll(p + 15);
    }
    snprintf(path, sizeof path, "%s/cpu.stat", cg);
    if (read_file(path, b, sizeof b) >= 0 && !strncmp(b, "usage_usec ", 11)) usec = atoll(b + 11);
    if (mem < 0 || usec < 0) return snprintf(out, size, "\t-\t-\t-");
    return snprintf(out, size, "\t%lld\t%lld\t%lld", mem, mem > inactive ? mem - inactive : 0, usec);
}

static void do_stats(const char *id, char **a, int n) {
    /* MemTotal, MemAvailable (kB) and the guest's total busy CPU time (USER_HZ ticks); then, for each container
     * named, its cgroup's three cgroup_stats fields */
    char b[4096];
    long total = 0, avail = 0;
    unsigned long long user = 0, nice = 0, sys = 0;
    if (read_file("/proc/meminfo", b, sizeof b) >= 0) {
        char *p = strstr(b, "MemTotal:");
        if (p) total = atol(p + 9);
        p = strstr(b, "MemAvailable:");
        if (p) avail = atol(p + 13);
    }
    if (read_file("/proc/stat", b, sizeof b) >= 0) sscanf(b, "cpu %llu %llu %llu", &user, &nice, &sys);
    char cgs[4096] = {0};
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof cgs - 64; i++) {
        struct ctr *c = find(a[i]);
        used += (size_t)(c && !c->reaped && c->cgroup[0] ? cgroup_stats(c->cgroup, cgs + used, sizeof cgs - used)
                                                           : snprintf(cgs + used, sizeof cgs - used, "\t-\t-\t-"));
    }
    reply(id, "ok\t%ld\t%ld\t%llu%s", total, avail, user + nice + sys, cgs);
}

static void do_poweroff(const char *id) {
    for (int i = 0; i < MAXC; i++)
        if (ctrs[i].used && !ctrs[i].reaped) kill(ctrs[i].pid, SIGKILL);
    reply(id, "ok");
    sync();
    reboot(RB_POWER_OFF);
}

/* ------------------------------------------------------------------ exec sessions */

static struct exe *find_exe(const char *id) {
    for (int i = 0; i < MAXE; i++)
        if (exes[i].used && strcmp(exes[i].id, id) == 0) return &exes[i];
    return NULL;
}

/* one stream message: ID KIND HEX */
static void emit(const char *id, const char *kind, const char *data, size_t n) {
    static char b[64 + 2 * 8192 + 2];
    static const char digits[] = "0123456789abcdef";
    int h = snprintf(b, 64, "%s\t%s\t", id, kind);
    for (size_t i = 0; i < n; i++) {
        b[h + 2 * i] = digits[(unsigned char)data[i] >> 4];
        b[h + 2 * i + 1] = digits[(unsigned char)data[i] & 15];
    }
    b[h + 2 * n] = '\n';
    if (ctl >= 0) writeall(ctl, b, h + 2 * n + 1);
}

static void do_exec(const char *id, char **a, int n) {
    if (n != 4) { reply(id, "err\texec takes 4 arguments"); return; }
    struct ctr *c = find(a[0]);
    if (!c || c->reaped) { reply(id, "err\tcontainer %s is not running", a[0]); return; }
    struct exe *e = NULL;
    for (int i = 0; i < MAXE; i++) if (!exes[i].used) { e = &exes[i]; break; }
    if (!e) { reply(id, "err\ttoo many exec sessions in this Pod (%d)", MAXE); return; }
    static char args[LINEMAX / 2];
    long len = hex_decode(a[3], args, sizeof args - 1);
    if (len <= 0) { reply(id, "err\tthe command is not hex"); return; }
    args[len] = 0;
    char *argv[256];
    int argc = 0;
    for (long i = 0; i < len && argc < 255; i += (long)strlen(args + i) + 1) argv[argc++] = args + i;
    argv[argc] = NULL;
    char err[512];
    memset(e, 0, sizeof *e);
    pid_t pid = exec_start(c->pid, c->cgroup, a[1][0] == '1', a[2][0] == '1', argv, &e->in, &e->out, &e->err, &e->master,
                           err, sizeof err);
    if (pid < 0) { reply(id, "err\t%s", err); return; }
    e->used = 1;
    e->pid = pid;
    snprintf(e->id, sizeof e->id, "%s", id);
    if (e->out >= 0) fcntl(e->out, F_SETFL, O_NONBLOCK);
    if (e->err >= 0) fcntl(e->err, F_SETFL, O_NONBLOCK);
    if (e->master >= 0) fcntl(e->master, F_SETFL, O_NONBLOCK);
    reply(id, "ok\t%d", (int)pid);
}

/* stdin / close / resize / signal ID ...: to a running session, no answer (a late one finds no session) */

static void container_session(const char *verb, char **a, int n) {
    struct ctr *c = attached_to(a[0]);
    if (!c || c->reaped) return;
    if (!strcmp(verb, "stdin") && n == 2 && c->in >= 0) {
        static char data[LINEMAX / 2];
        long len = hex_decode(a[1], data, sizeof data);
        if (len > 0) writeall(c->in, data, (size_t)len);
    } else if (!strcmp(verb, "close") && c->in >= 0 && c->master < 0) {
        close(c->in);
        c->in = -1;
    } else if (!strcmp(verb, "resize") && n == 3 && c->master >= 0) {
        struct winsize ws = {(unsigned short)atoi(a[1]), (unsigned short)atoi(a[2]), 0, 0};
        ioctl(c->master, TIOCSWINSZ, &ws);
    }
}

static void do_session(const char *verb, char **a, int n) {
    if (n < 1) return;
    struct exe *e = find_exe(a[0]);
    if (!e) { container_session(verb, a, n); return; }
    if (!strcmp(verb, "stdin") && n == 2) {
        static char data[LINEMAX / 2];
        long len = hex_decode(a[1], data, sizeof data);
        int fd = e->master >= 0 ? e->master : e->in;
        if (len > 0 && fd >= 0) writeall(fd, data, (size_t)len);
    } else if (!strcmp(verb, "close")) {
        if (e->master >= 0) { char eot = 4; writeall(e->master, &eot, 1); }
        else if (e->in >= 0) { close(e->in); e->in = -1; }
    } else if (!strcmp(verb, "resize") && n == 3 && e->master >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)atoi(a[1]), .ws_col = (unsigned short)atoi(a[2])};
        ioctl(e->master, TIOCSWINSZ, &ws);
    } else if (!strcmp(verb, "signal") && n == 2 && !e->reaped) {
        kill(-e->pid, atoi(a[1]));   /* its process group: what it started goes too */
    }
}

static void exe_read(struct exe *e, int *fd, const char *kind) {
    char b[8192];
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(*fd, b, sizeof b);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {   /* EOF, or EIO from a terminal whose last user closed it */
            if (*fd == e->master) e->master = -1;
            close(*fd);
            *fd = -1;
            return;
        }
        emit(e->id, kind, b, (size_t)n);
    }
}

static void exe_finish(struct exe *e) {
    if (e->out >= 0) exe_read(e, &e->out, "out");
    if (e->err >= 0) exe_read(e, &e->err, "err");
    if (e->master >= 0) exe_read(e, &e->master, "out");
    int code = WIFEXITED(e->status) ? WEXITSTATUS(e->status) : 128 + WTERMSIG(e->status);
    reply(e->id, "exit\t%d", code);
    int *fds[] = {&e->in, &e->out, &e->err, &e->master};
    for (int i = 0; i < 4; i++) if (*fds[i] >= 0) { close(*fds[i]); *fds[i] = -1; }
    e->used = 0;
}

static void handle(char *line) {
    char *a[16];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, "\t", &save); t && n < 16; t = strtok_r(NULL, "\t", &save)) a[n++] = t;
    if (n < 2) return;
    const char *id = a[0], *verb = a[1];
    if (!strcmp(verb, "ping")) {
        char up[64];
        read_file("/proc/uptime", up, sizeof up);
        up[strcspn(up, " ")] = 0;
        reply(id, "ok\t%s\t%s", VERSION, up);
    } else if (!strcmp(verb, "mount")) {
        if (mount_share() == 0) reply(id, "ok");
        else reply(id, "err\tmount 9p share at %s: %s", share, strerror(errno));
    } else if (!strcmp(verb, "setup")) do_setup(id, a + 2, n - 2);
    else if (!strcmp(verb, "run")) do_run(id, a + 2, n - 2);
    else if (!strcmp(verb, "kill")) do_kill(id, a + 2, n - 2);
    else if (!strcmp(verb, "stats")) do_stats(id, a + 2, n - 2);
    else if (!strcmp(verb, "poweroff")) do_poweroff(id);
    else if (!strcmp(verb, "exec")) do_exec(id, a + 2, n - 2);
    else if (!strcmp(verb, "net")) do_net(id, a + 2, n - 2);
    else if (!strcmp(verb, "attach")) do_attach(id, a + 2, n - 2);
    else if (!strcmp(verb, "detach")) do_detach(a + 2, n - 2);
    else if (!strcmp(verb, "stdin") || !strcmp(verb, "close") || !strcmp(verb, "resize") || !strcmp(verb, "signal"))
        do_session(verb, a + 2, n - 2);
    else reply(id, "err\tunknown verb %s", verb);
}

/* ------------------------------------------------------------------ main loop */

int main(void) {
    if (getpid() != 1) { fprintf(stderr, "kubeclass guest agent: must run as PID 1 of a VM\n"); return 2; }
    boot();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGPIPE);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    ctl = open_port();
    if (ctl < 0) { say("no virtio-serial port named kubeclass.agent"); reboot(RB_POWER_OFF); }
    say("ready (share %s)", share);
    static char in[LINEMAX];
    size_t inlen = 0;
    for (;;) {
        struct pollfd p[2 + 2 * MAXC + 2 * MAXE];
        struct ctr *owner[2 + 2 * MAXC + 2 * MAXE];
        struct exe *eowner[2 + 2 * MAXC + 2 * MAXE];
        int np = 0;
        memset(eowner, 0, sizeof eowner);
        p[np].fd = ctl; p[np].events = POLLIN; owner[np++] = NULL;
        p[np].fd = sfd; p[np].events = POLLIN; owner[np++] = NULL;
        int waiting = 0;
        for (int i = 0; i < MAXC; i++) {
            struct ctr *c = &ctrs[i];
            if (!c->used) continue;
            if (c->out.fd >= 0) { p[np].fd = c->out.fd; p[np].events = POLLIN; owner[np++] = c; }
            if (c->err.fd >= 0) { p[np].fd = c->err.fd; p[np].events = POLLIN; owner[np++] = c; }
            if (c->reaped) waiting = 1;
        }
        for (int i = 0; i < MAXE; i++) {
            struct exe *e = &exes[i];
            if (!e->used) continue;
            int fds[] = {e->out, e->err, e->master};
            for (int k = 0; k < 3; k++)
                if (fds[k] >= 0) { p[np].fd = fds[k]; p[np].events = POLLIN; owner[np] = NULL; eowner[np++] = e; }
            if (e->reaped) waiting = 1;
        }
        container_prepare();   /* after a container started: the next one's cgroup, while nothing waits */
        int r = poll(p, np, waiting ? 100 : -1);
        if (r < 0 && errno != EINTR) { say("poll: %s", strerror(errno)); sleep(1); }
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP))) {
            ssize_t k = read(ctl, in + inlen, sizeof in - inlen - 1);
            if (k > 0) {
                inlen += (size_t)k;
                char *s = in, *nl;
                while ((nl = memchr(s, '\n', in + inlen - s))) { *nl = 0; handle(s); s = nl + 1; }
                inlen -= (size_t)(s - in);
                memmove(in, s, inlen);
                if (inlen == sizeof in - 1) inlen = 0;   /* a line too long: dropped */
            } else if (k == 0 || (p[0].revents & POLLHUP)) {
                usleep(100000);   /* the host side is not connected: wait for it */
            }
        }
        for (int i = 2; r > 0 && i < np; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            struct exe *e = eowner[i];
            if (e) {
                if (p[i].fd == e->out) exe_read(e, &e->out, "out");
                else if (p[i].fd == e->err) exe_read(e, &e->err, "err");
                else if (p[i].fd == e->master) exe_read(e, &e->master, "out");
                continue;
            }
            struct ctr *c = owner[i];
            if (p[i].fd == c->out.fd) drain(c, &c->out, "stdout");
            else if (p[i].fd == c->err.fd) drain(c, &c->err, "stderr");
        }
        if (r > 0 && (p[1].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
            }
            int st;
            pid_t pid;
            while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                if (container_reaped(pid)) say("the waiting container process %d ended (status %d)", (int)pid, st);
                for (int i = 0; i < MAXE; i++)
                    if (exes[i].used && !exes[i].reaped && exes[i].pid == pid) {
                        exes[i].reaped = 1;
                        exes[i].status = st;
                        clock_gettime(CLOCK_MONOTONIC, &exes[i].reaped_at);
                    }
                for (int i = 0; i < MAXC; i++)
                    if (ctrs[i].used && !ctrs[i].reaped && ctrs[i].pid == pid) {
                        ctrs[i].reaped = 1;
                        ctrs[i].status = st;
                        clock_gettime(CLOCK_MONOTONIC, &ctrs[i].reaped_at);
                    }
            }
        }
        /* a reaped container is finished once its output is drained (at most 2 s later) */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        for (int i = 0; i < MAXC; i++) {
            struct ctr *c = &ctrs[i];
            if (!c->used || !c->reaped) continue;
            if ((c->out.fd < 0 && c->err.fd < 0) || now.tv_sec - c->reaped_at.tv_sec >= 2) finish(c);
        }
        /* so is an exec session (a child it left behind may hold its output open) */
        for (int i = 0; i < MAXE; i++) {
            struct exe *e = &exes[i];
            if (!e->used || !e->reaped) continue;
            if ((e->out < 0 && e->err < 0 && e->master < 0) || now.tv_sec - e->reaped_at.tv_sec >= 2) exe_finish(e);
        }
    }
}
