/* Test harness: ports, folders, child processes, a real redis-server and
 * STATS/kv helpers for tests (see harness.h). Linux only
 * (PR_SET_PDEATHSIG, /proc-free). */
#include "tests/harness.h"

#include "common/error.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

static _Thread_local char s_error[1024];

static int s_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_error, sizeof s_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *nr_harness_error(void) { return s_error; }

/* ---- time ---- */

long long nr_harness_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nr_harness_sleep_ms(int ms) {
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- files ---- */

char *nr_harness_path(const char *dir, const char *fmt, ...) {
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *path = malloc(n);
    if (!path) return NULL;
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

char *nr_harness_tempdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *path = nr_harness_path(base, "nr-%s-XXXXXX", tag ? tag : "test");
    if (!path) return NULL;
    if (!mkdtemp(path)) {
        s_fail(NR_EIO, "mkdtemp %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

int nr_harness_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : s_fail(NR_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        return unlink(path) == 0 ? 0 : s_fail(NR_EIO, "unlink %s: %s", path, strerror(errno));
    }
    DIR *dir = opendir(path);
    if (!dir) return s_fail(NR_EIO, "opendir %s: %s", path, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *child = nr_harness_path(path, "%s", e->d_name);
        if (!child) {
            rc = NR_ENOMEM;
            break;
        }
        if (nr_harness_rmtree(child) != 0) rc = NR_EIO;
        free(child);
    }
    closedir(dir);
    if (rmdir(path) != 0) rc = s_fail(NR_EIO, "rmdir %s: %s", path, strerror(errno));
    return rc;
}

char *nr_harness_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        s_fail(NR_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (!bigger) {
            free(buf);
            buf = NULL;
        } else {
            buf = bigger;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        s_fail(NR_EIO, "%s: read failed", path);
        return NULL;
    }
    buf[n] = '\0';
    if (size) *size = n;
    return buf;
}

int nr_harness_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return s_fail(NR_EIO, "%s: %s", path, strerror(errno));
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    int bad = fclose(f) != 0 || put != size;
    return bad ? s_fail(NR_EIO, "%s: write failed", path) : 0;
}

void nr_harness_dump_log(const char *path, size_t max_bytes) {
    if (!path) return;
    size_t size = 0;
    char *text = nr_harness_read_file(path, &size);
    if (!text) {
        fprintf(stderr, "---- %s: (cannot read) ----\n", path);
        return;
    }
    size_t from = size > max_bytes ? size - max_bytes : 0;
    fprintf(stderr, "---- %s (last %zu of %zu bytes) ----\n%s\n---- end of %s ----\n", path,
            size - from, size, text + from, path);
    free(text);
}

void nr_harness_dump_logs(const char *dir, const char *const names[], size_t max_bytes) {
    if (!dir) return;
    for (int i = 0; names[i]; i++) {
        char *log = nr_harness_path(dir, "%s", names[i]);
        nr_harness_dump_log(log, max_bytes);
        free(log);
    }
}

/* ---- build and source folders ---- */

char *nr_harness_program(const char *name) {
    const char *build = getenv("NR_BUILD_DIR");
    if (!build || !*build) {
        s_fail(NR_EINVAL, "NR_BUILD_DIR is not set (run the test through ctest)");
        return NULL;
    }
    char *path = nr_harness_path(build, "bin/%s", name);
    if (path && access(path, X_OK) != 0) {
        s_fail(NR_ENOTFOUND, "%s: not built (%s)", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

char *nr_harness_source_path(const char *relative) {
    const char *src = getenv("NR_SOURCE_DIR");
    if (!src || !*src) {
        s_fail(NR_EINVAL, "NR_SOURCE_DIR is not set (run the test through ctest)");
        return NULL;
    }
    char *path = nr_harness_path(src, "%s", relative);
    if (path && access(path, F_OK) != 0) {
        s_fail(NR_ENOTFOUND, "%s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

/* ---- TCP ---- */

static int s_last_port;

int nr_harness_free_port(void) {
    for (int tries = 0; tries < 50; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return s_fail(NR_EIO, "socket: %s", strerror(errno));
        struct sockaddr_in addr = {0};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        int port = -1;
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
            getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
            port = ntohs(addr.sin_port);
        }
        close(fd);
        if (port <= 0) return s_fail(NR_EIO, "bind 127.0.0.1:0: %s", strerror(errno));
        if (port != s_last_port) {
            s_last_port = port;
            return port;
        }
    }
    return s_fail(NR_EIO, "no free port found");
}

static int s_connect(int port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int nr_harness_wait_port(int port, int timeout_ms) {
    long long end = nr_harness_now_ms() + timeout_ms;
    for (;;) {
        int fd = s_connect(port, 1000);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (nr_harness_now_ms() >= end) {
            return s_fail(NR_ETIMEDOUT, "127.0.0.1:%d did not accept within %d ms", port, timeout_ms);
        }
        nr_harness_sleep_ms(20);
    }
}

/* ---- processes ---- */

struct nr_harness_proc_t {
    pid_t pid;
    int exited;
    int status;
    char *log_path;
};

/* argv[0] as an executable path: as is when it has a '/', else the first
 * match in PATH. Caller frees. */
static char *s_resolve(const char *name) {
    if (strchr(name, '/')) return strdup(name);
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char dir[4096];
        if (len == 0) {
            snprintf(dir, sizeof dir, ".");
        } else if (len < sizeof dir) {
            memcpy(dir, p, len);
            dir[len] = '\0';
        } else {
            dir[0] = '\0';
        }
        if (dir[0]) {
            char *full = nr_harness_path(dir, "%s", name);
            if (full && access(full, X_OK) == 0) return full;
            free(full);
        }
        if (!colon) break;
        p = colon + 1;
    }
    return NULL;
}

/* environ with `env` applied; the array is malloc'd, the strings borrowed. */
static char **s_make_env(const char *const env[]) {
    size_t n_base = 0, n_extra = 0;
    while (environ && environ[n_base]) n_base++;
    while (env && env[n_extra]) n_extra++;
    char **out = calloc(n_base + n_extra + 1, sizeof *out);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < n_base; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < n_extra && !overridden; j++) {
            const char *e = strchr(env[j], '=');
            size_t elen = e ? (size_t)(e - env[j]) : strlen(env[j]);
            overridden = elen == klen && strncmp(env[j], environ[i], klen) == 0;
        }
        if (!overridden) out[n++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++) {
        if (strchr(env[j], '=')) out[n++] = (char *)env[j];
    }
    out[n] = NULL;
    return out;
}

nr_harness_proc_t *nr_harness_spawn(const char *const argv[], const char *const env[],
                                    const char *log_path) {
    if (!argv || !argv[0]) {
        s_fail(NR_EINVAL, "spawn: empty argv");
        return NULL;
    }
    nr_harness_proc_t *self = calloc(1, sizeof *self);
    char *exe = s_resolve(argv[0]);
    char **envp = s_make_env(env);
    int log_fd = -1, null_fd = -1, pipe_fd[2] = {-1, -1};
    if (!self || !envp) {
        s_fail(NR_ENOMEM, "spawn: out of memory");
        goto err;
    }
    if (!exe) {
        s_fail(NR_ENOTFOUND, "spawn: %s: not found in PATH", argv[0]);
        goto err;
    }
    if (log_path) {
        self->log_path = strdup(log_path);
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            s_fail(NR_EIO, "spawn: log %s: %s", log_path, strerror(errno));
            goto err;
        }
    }
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || pipe2(pipe_fd, O_CLOEXEC) != 0) {
        s_fail(NR_EIO, "spawn: %s", strerror(errno));
        goto err;
    }
    pid_t parent = getpid();
    /* fork + execve rather than posix_spawn: only a forked child can ask
     * for PR_SET_PDEATHSIG before exec. The child does async-signal-safe
     * calls only; everything it needs was built above. */
    pid_t pid = fork();
    if (pid < 0) {
        s_fail(NR_EIO, "spawn: fork: %s", strerror(errno));
        goto err;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        setpgid(0, 0); /* its own group, so a hard stop also ends its children */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(null_fd, 0);
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        execve(exe, (char *const *)argv, envp);
        int e = errno;
        ssize_t w = write(pipe_fd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so the group exists before we return */
    close(pipe_fd[1]);
    pipe_fd[1] = -1;
    int child_errno = 0;
    ssize_t got;
    do {
        got = read(pipe_fd[0], &child_errno, sizeof child_errno);
    } while (got < 0 && errno == EINTR);
    close(pipe_fd[0]);
    pipe_fd[0] = -1;
    self->pid = pid;
    if (got == (ssize_t)sizeof child_errno) {
        waitpid(pid, NULL, 0);
        s_fail(NR_EIO, "spawn: exec %s: %s", exe, strerror(child_errno));
        goto err;
    }
    if (log_fd >= 0) close(log_fd);
    close(null_fd);
    free(exe);
    free(envp);
    return self;
err:
    if (log_fd >= 0) close(log_fd);
    if (null_fd >= 0) close(null_fd);
    if (pipe_fd[0] >= 0) close(pipe_fd[0]);
    if (pipe_fd[1] >= 0) close(pipe_fd[1]);
    free(exe);
    free(envp);
    if (self) free(self->log_path);
    free(self);
    return NULL;
}

pid_t nr_harness_proc_pid(const nr_harness_proc_t *self) { return self ? self->pid : -1; }

const char *nr_harness_proc_log(const nr_harness_proc_t *self) { return self ? self->log_path : NULL; }

static int s_reap(nr_harness_proc_t *self, int block) {
    if (self->exited) return 1;
    int status = 0;
    pid_t r;
    do {
        r = waitpid(self->pid, &status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == self->pid || (r < 0 && errno == ECHILD)) {
        self->exited = 1;
        self->status = r == self->pid ? status : 0;
        return 1;
    }
    return 0;
}

int nr_harness_proc_running(nr_harness_proc_t *self) { return self && !s_reap(self, 0); }

int nr_harness_proc_kill(nr_harness_proc_t *self, int sig) {
    if (!self || s_reap(self, 0)) return s_fail(NR_ESTATE, "process has already exited");
    if (kill(self->pid, sig) != 0) return s_fail(NR_EIO, "kill %d: %s", (int)self->pid, strerror(errno));
    return 0;
}

int nr_harness_proc_wait(nr_harness_proc_t *self, int timeout_ms, int *status) {
    if (!self) return s_fail(NR_EINVAL, "no process");
    if (timeout_ms < 0) {
        s_reap(self, 1);
    } else {
        long long end = nr_harness_now_ms() + timeout_ms;
        int pause = 1;
        while (!s_reap(self, 0)) {
            if (nr_harness_now_ms() >= end) {
                return s_fail(NR_ETIMEDOUT, "pid %d still runs after %d ms", (int)self->pid, timeout_ms);
            }
            nr_harness_sleep_ms(pause);
            if (pause < 50) pause *= 2;
        }
    }
    if (status) *status = self->status;
    return 0;
}

int nr_harness_proc_stop(nr_harness_proc_t *self, int sig, int timeout_ms, int *status) {
    if (!self) return s_fail(NR_EINVAL, "no process");
    if (!s_reap(self, 0)) {
        kill(self->pid, sig);
        if (nr_harness_proc_wait(self, timeout_ms, status) == 0) {
            kill(-self->pid, SIGKILL); /* anything it left behind in its group */
            return 0;
        }
        kill(-self->pid, SIGKILL);
        kill(self->pid, SIGKILL);
    }
    return nr_harness_proc_wait(self, -1, status);
}

int nr_harness_exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

int nr_harness_exit_signal(int status) { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }

void nr_harness_proc_destroy(nr_harness_proc_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_harness_proc_t *self = *self_p;
    if (!s_reap(self, 0)) {
        kill(-self->pid, SIGKILL);
        kill(self->pid, SIGKILL);
        s_reap(self, 1);
    }
    free(self->log_path);
    free(self);
    *self_p = NULL;
}

int nr_harness_run(const char *const argv[], const char *const env[], const char *log_path,
                   int timeout_ms, int *status) {
    nr_harness_proc_t *p = nr_harness_spawn(argv, env, log_path);
    if (!p) return NR_EIO;
    int rc = nr_harness_proc_wait(p, timeout_ms, status);
    if (rc != 0) {
        char detail[sizeof s_error];
        snprintf(detail, sizeof detail, "%s", s_error);
        nr_harness_proc_destroy(&p);
        return s_fail(rc, "%s", detail);
    }
    nr_harness_proc_destroy(&p);
    return 0;
}

/* ---- redis ---- */

struct nr_harness_redis_t {
    nr_harness_redis_params_t params;
    char *dir;
    int own_dir;
    int port;
    char url[64];
    char **extra; /* copy of params.args */
    nr_harness_proc_t *proc;
};

void nr_harness_redis_default_params(nr_harness_redis_params_t *params) {
    memset(params, 0, sizeof *params);
    params->appendonly = 1;
    params->timeout_ms = 10000;
}

static int s_write_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A buffered reader over the socket for RESP replies. */
typedef struct {
    int fd;
    char buf[8192];
    size_t len, pos;
} s_reader_t;

static int s_getc(s_reader_t *r) {
    if (r->pos == r->len) {
        ssize_t got;
        do {
            got = read(r->fd, r->buf, sizeof r->buf);
        } while (got < 0 && errno == EINTR);
        if (got <= 0) return -1;
        r->len = (size_t)got;
        r->pos = 0;
    }
    return (unsigned char)r->buf[r->pos++];
}

static int s_line(s_reader_t *r, char *line, size_t size) {
    size_t n = 0;
    for (;;) {
        int c = s_getc(r);
        if (c < 0) return -1;
        if (c == '\n') break;
        if (c != '\r' && n + 1 < size) line[n++] = (char)c;
    }
    line[n] = '\0';
    return 0;
}

static void s_append(char *out, size_t size, size_t *used, const char *text, size_t n) {
    if (*used + 1 >= size) return;
    size_t room = size - 1 - *used;
    if (n > room) n = room;
    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

/* Reads one RESP value into out. Returns 0, NR_EREDIS (error reply), NR_EIO. */
static int s_read_reply(s_reader_t *r, char *out, size_t size, size_t *used, int depth) {
    char line[4096];
    if (depth > 8 || s_line(r, line, sizeof line) != 0) return NR_EIO;
    switch (line[0]) {
    case '+':
    case ':':
        s_append(out, size, used, line + 1, strlen(line + 1));
        return 0;
    case '-':
        s_append(out, size, used, line + 1, strlen(line + 1));
        return NR_EREDIS;
    case '$': {
        long n = strtol(line + 1, NULL, 10);
        if (n < 0) {
            s_append(out, size, used, "(nil)", 5);
            return 0;
        }
        for (long i = 0; i < n + 2; i++) {
            int c = s_getc(r);
            if (c < 0) return NR_EIO;
            if (i < n) {
                char ch = (char)c;
                s_append(out, size, used, &ch, 1);
            }
        }
        return 0;
    }
    case '*': {
        long n = strtol(line + 1, NULL, 10);
        if (n < 0) {
            s_append(out, size, used, "(nil)", 5);
            return 0;
        }
        int rc = 0;
        for (long i = 0; i < n; i++) {
            if (i > 0) s_append(out, size, used, "\n", 1);
            int e = s_read_reply(r, out, size, used, depth + 1);
            if (e == NR_EIO) return e;
            if (e) rc = e;
        }
        return rc;
    }
    default:
        return NR_EIO;
    }
}

int nr_harness_redis_command(int port, int argc, const char *const argv[], char *out,
                             size_t out_size) {
    char dummy[8];
    if (!out || out_size == 0) {
        out = dummy;
        out_size = sizeof dummy;
    }
    out[0] = '\0';
    int fd = s_connect(port, 5000);
    if (fd < 0) return s_fail(NR_ECONNECT, "redis 127.0.0.1:%d: %s", port, strerror(errno));
    char head[64];
    int n = snprintf(head, sizeof head, "*%d\r\n", argc);
    int bad = s_write_all(fd, head, (size_t)n) != 0;
    for (int i = 0; i < argc && !bad; i++) {
        size_t len = strlen(argv[i]);
        n = snprintf(head, sizeof head, "$%zu\r\n", len);
        bad = s_write_all(fd, head, (size_t)n) != 0 || s_write_all(fd, argv[i], len) != 0 ||
              s_write_all(fd, "\r\n", 2) != 0;
    }
    int rc = NR_EIO;
    if (!bad) {
        s_reader_t *r = malloc(sizeof *r);
        if (r) {
            r->fd = fd;
            r->len = r->pos = 0;
            size_t used = 0;
            rc = s_read_reply(r, out, out_size, &used, 0);
            free(r);
        }
    }
    close(fd);
    if (rc == NR_EIO) return s_fail(NR_EIO, "redis 127.0.0.1:%d: no reply", port);
    if (rc == NR_EREDIS) return s_fail(NR_EREDIS, "redis: %s", out);
    return 0;
}

int nr_harness_redis_ping(int port) {
    const char *argv[] = {"PING"};
    char out[64];
    int rc = nr_harness_redis_command(port, 1, argv, out, sizeof out);
    if (rc != 0) return rc;
    return strcmp(out, "PONG") == 0 ? 0 : s_fail(NR_EREDIS, "PING answered %s", out);
}

static int s_redis_spawn(nr_harness_redis_t *self) {
    char port[16];
    snprintf(port, sizeof port, "%d", self->port);
    const char *argv[64 + 32];
    int n = 0;
    argv[n++] = self->params.program ? self->params.program : "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = self->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--logfile";
    argv[n++] = "";
    argv[n++] = "--maxmemory-policy";
    argv[n++] = "noeviction";
    argv[n++] = "--appendonly";
    argv[n++] = self->params.appendonly ? "yes" : "no";
    if (self->params.appendonly) {
        argv[n++] = "--appendfsync";
        argv[n++] = "always";
    }
    for (int i = 0; self->extra && self->extra[i] && n < 64 + 30; i++) argv[n++] = self->extra[i];
    argv[n] = NULL;
    char *log = nr_harness_path(self->dir, "redis.log");
    if (!log) return NR_ENOMEM;
    self->proc = nr_harness_spawn(argv, NULL, log);
    if (!self->proc) {
        free(log);
        return NR_EIO;
    }
    int timeout = self->params.timeout_ms > 0 ? self->params.timeout_ms : 10000;
    long long end = nr_harness_now_ms() + timeout;
    int rc;
    while ((rc = nr_harness_redis_ping(self->port)) != 0) {
        if (!nr_harness_proc_running(self->proc)) {
            rc = s_fail(NR_EIO, "redis-server on port %d exited at start (see %s)", self->port, log);
            break;
        }
        if (nr_harness_now_ms() >= end) {
            rc = s_fail(NR_ETIMEDOUT, "redis-server on port %d did not answer PING in %d ms (see %s)",
                        self->port, timeout, log);
            break;
        }
        nr_harness_sleep_ms(20);
    }
    if (rc != 0) {
        char detail[sizeof s_error];
        snprintf(detail, sizeof detail, "%s", s_error);
        nr_harness_dump_log(log, 4000);
        nr_harness_proc_destroy(&self->proc);
        s_fail(rc, "%s", detail);
    }
    free(log);
    return rc;
}

nr_harness_redis_t *nr_harness_redis_new(const nr_harness_redis_params_t *params) {
    nr_harness_redis_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    if (params) {
        self->params = *params;
    } else {
        nr_harness_redis_default_params(&self->params);
    }
    if (self->params.dir) {
        self->dir = strdup(self->params.dir);
        mkdir(self->dir, 0755);
    } else {
        self->dir = nr_harness_tempdir("redis");
        self->own_dir = 1;
    }
    if (!self->dir) goto err;
    size_t n_args = 0;
    while (self->params.args && self->params.args[n_args]) n_args++;
    self->extra = calloc(n_args + 1, sizeof *self->extra);
    if (!self->extra) goto err;
    for (size_t i = 0; i < n_args; i++) {
        if (!(self->extra[i] = strdup(self->params.args[i]))) goto err;
    }
    self->params.args = NULL;
    self->params.dir = NULL;
    int tries = self->params.port ? 1 : 3;
    int rc = NR_EIO;
    for (int t = 0; t < tries && rc != 0; t++) {
        /* A port picked free can be taken by someone else before redis binds it. */
        self->port = self->params.port ? self->params.port : nr_harness_free_port();
        if (self->port <= 0) goto err;
        rc = s_redis_spawn(self);
    }
    if (rc != 0) goto err;
    snprintf(self->url, sizeof self->url, "redis://127.0.0.1:%d", self->port);
    return self;
err:
    nr_harness_redis_destroy(&self);
    return NULL;
}

int nr_harness_redis_port(const nr_harness_redis_t *self) { return self->port; }
const char *nr_harness_redis_url(const nr_harness_redis_t *self) { return self->url; }
const char *nr_harness_redis_dir(const nr_harness_redis_t *self) { return self->dir; }

int nr_harness_redis_alive(nr_harness_redis_t *self) {
    return self && self->proc && nr_harness_proc_running(self->proc) &&
           nr_harness_redis_ping(self->port) == 0;
}

int nr_harness_redis_stop(nr_harness_redis_t *self, int hard) {
    if (!self || !self->proc) return s_fail(NR_ESTATE, "redis is not running");
    int rc = nr_harness_proc_stop(self->proc, hard ? SIGKILL : SIGTERM, 20000, NULL);
    nr_harness_proc_destroy(&self->proc);
    return rc;
}

int nr_harness_redis_start(nr_harness_redis_t *self) {
    if (!self) return s_fail(NR_EINVAL, "no redis");
    if (self->proc && nr_harness_proc_running(self->proc)) return 0;
    nr_harness_proc_destroy(&self->proc);
    /* The old server's port may linger briefly in the kernel; retry a few times. */
    int rc = NR_EIO;
    for (int t = 0; t < 5 && rc != 0; t++) {
        rc = s_redis_spawn(self);
        if (rc != 0) nr_harness_sleep_ms(200);
    }
    return rc;
}

void nr_harness_redis_destroy(nr_harness_redis_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_harness_redis_t *self = *self_p;
    if (self->proc) {
        nr_harness_proc_stop(self->proc, SIGTERM, 10000, NULL);
        nr_harness_proc_destroy(&self->proc);
    }
    if (self->own_dir && self->dir) nr_harness_rmtree(self->dir);
    free(self->dir);
    if (self->extra) {
        for (size_t i = 0; self->extra[i]; i++) free(self->extra[i]);
        free(self->extra);
    }
    free(self);
    *self_p = NULL;
}

/* ---- a cluster ---- */

int nr_harness_cluster_start(nr_harness_cluster_t *self, const char *tag,
                             const nr_harness_redis_params_t *redis_params) {
    memset(self, 0, sizeof *self);
    self->dir = nr_harness_tempdir(tag);
    if (!self->dir) return NR_EIO;
    nr_harness_redis_params_t defaults;
    nr_harness_redis_default_params(&defaults);
    self->redis = nr_harness_redis_new(redis_params ? redis_params : &defaults);
    if (!self->redis) return s_fail(NR_EIO, "redis-server did not start: %s", nr_harness_error());
    self->client_port = nr_harness_free_port();
    self->worker_port = nr_harness_free_port();
    if (self->client_port <= 0 || self->worker_port <= 0)
        return s_fail(NR_EIO, "no free port: %s", nr_harness_error());
    snprintf(self->client_ep, sizeof self->client_ep, "tcp://127.0.0.1:%d", self->client_port);
    snprintf(self->worker_ep, sizeof self->worker_ep, "tcp://127.0.0.1:%d", self->worker_port);
    return 0;
}

int nr_harness_cluster_spawn_broker(nr_harness_cluster_t *self, const char *program,
                                    const char *log_name, const char *const *extra) {
    char redis_port[16];
    snprintf(redis_port, sizeof redis_port, "%d", nr_harness_redis_port(self->redis));
    /* The tests' workers serve the stage "test" besides the real ones
     * (a --stages in extra comes later and wins). */
    const char *argv[48] = {program, "--client-endpoint", self->client_ep, "--worker-endpoint",
                            self->worker_ep, "--redis-host", "127.0.0.1", "--redis-port", redis_port,
                            "--stages", NR_HARNESS_STAGES};
    int n = 11;
    for (int i = 0; extra && extra[i]; i++) {
        if (n >= 47) return s_fail(NR_EINVAL, "too many broker flags");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    char *log = nr_harness_path(self->dir, "%s", log_name);
    if (!log) return s_fail(NR_ENOMEM, "no memory");
    self->broker = nr_harness_spawn(argv, NULL, log);
    free(log);
    if (!self->broker) return s_fail(NR_EIO, "broker did not start: %s", nr_harness_error());
    int rc = nr_harness_wait_port(self->client_port, 20000);
    if (rc == 0) rc = nr_harness_wait_port(self->worker_port, 20000);
    if (rc) return s_fail(rc, "broker is not listening: %s", nr_harness_error());
    return 0;
}

int nr_harness_cluster_spawn_worker(nr_harness_cluster_t *self, const char *program,
                                    const char *name, const char *const *extra) {
    if (self->n_workers >= NR_HARNESS_MAX_WORKERS)
        return s_fail(NR_EINVAL, "more than %d workers", NR_HARNESS_MAX_WORKERS);
    const char *argv[64] = {program, "--broker", self->worker_ep, "--name", name};
    int n = 5;
    const char *const *lists[2] = {self->worker_args, extra};
    for (int l = 0; l < 2; l++) {
        for (int i = 0; lists[l] && lists[l][i]; i++) {
            if (n >= 63) return s_fail(NR_EINVAL, "too many worker flags");
            argv[n++] = lists[l][i];
        }
    }
    argv[n] = NULL;
    int index = self->n_workers++; /* counted even when it fails: its log may say why */
    char *log = nr_harness_path(self->dir, "worker-%d.log", index);
    if (!log) return s_fail(NR_ENOMEM, "no memory");
    self->workers[index] = nr_harness_spawn(argv, NULL, log);
    free(log);
    if (!self->workers[index]) return s_fail(NR_EIO, "worker %s did not start: %s", name, nr_harness_error());
    return index;
}

void nr_harness_cluster_stop(nr_harness_cluster_t *self) {
    for (int i = 0; i < self->n_workers; i++) {
        if (self->workers[i]) nr_harness_proc_stop(self->workers[i], SIGTERM, 5000, NULL);
        nr_harness_proc_destroy(&self->workers[i]);
    }
    if (self->broker) nr_harness_proc_stop(self->broker, SIGTERM, 10000, NULL);
    nr_harness_proc_destroy(&self->broker);
    nr_harness_redis_destroy(&self->redis);
    if (self->dir && !getenv("NR_TEST_KEEP")) nr_harness_rmtree(self->dir);
    free(self->dir);
    memset(self, 0, sizeof *self);
}

/* ---- asking the broker through nr_client ---- */

const char *nr_harness_kv(const nr_msg_t *msg, const char *key) {
    const char *v = nr_proto_kv_get(msg, key);
    return v ? v : "";
}

long nr_harness_kv_long(const nr_msg_t *msg, const char *key) {
    const char *v = nr_proto_kv_get(msg, key);
    return v ? strtol(v, NULL, 10) : -1;
}

void *nr_harness_fake_worker(void *zctx, const char *endpoint, const char *stage, const char *name,
                             uint32_t capacity) {
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    if (!s) {
        s_fail(NR_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, endpoint) != 0) {
        s_fail(NR_EIO, "zmq_connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_READY;
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    snprintf(m.name, sizeof m.name, "%s", name);
    m.capacity = capacity;
    char err[256];
    const int rc = nr_proto_send(s, NULL, 0, &m, err, sizeof err);
    nr_proto_msg_clear(&m);
    if (rc) {
        s_fail(rc, "READY: %s", err);
        zmq_close(s);
        return NULL;
    }
    return s;
}

int nr_harness_job_final(const char *state) {
    return !strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
}

long nr_harness_stat(nr_client_t *client, const char *key) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    long v = -1;
    if (nr_client_stats(client, &reply) == 0) v = nr_harness_kv_long(&reply, key);
    nr_proto_msg_clear(&reply);
    return v;
}

long nr_harness_wait_workers(nr_client_t *client, const char *stage, long n, int timeout_ms) {
    char key[64];
    snprintf(key, sizeof key, "workers.%s", stage);
    long long end = nr_harness_now_ms() + timeout_ms;
    long have = -1;
    while (nr_harness_now_ms() < end) {
        long v = nr_harness_stat(client, key);
        if (v >= 0) have = v; /* a poll without an answer keeps the last count */
        if (have >= n) break;
        nr_harness_sleep_ms(50);
    }
    return have;
}
