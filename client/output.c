/* Writing results safely: sanitized names, atomic writes, JSON records. */
#include "client/output.h"
#include "common/error.h"
#include "common/utf8.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Non-ASCII code points kept in file names: not C1 controls, NBSP or soft
 * hyphen, not the spaces, zero-width and bidirectional controls of General
 * Punctuation (U+202E could make "gpj.exe" look like "exe.jpg"), not
 * variation selectors, BOM, private use or specials. */
static int s_cp_ok(uint32_t cp) {
    if (cp < 0xA1 || cp == 0xAD) return 0;
    if (cp >= 0x2000 && cp <= 0x206F) return 0;
    if (cp == 0x3000 || cp == 0xFEFF) return 0;
    if (cp >= 0xFE00 && cp <= 0xFE0F) return 0;
    if (cp >= 0xE000 && cp <= 0xF8FF) return 0;
    if (cp >= 0xFFF0 && cp <= 0xFFFF) return 0;
    if (cp >= 0xE0000) return 0; /* tags, variation selectors supplement, private use */
    return 1;
}

int nr_output_safe_name(const char *name, size_t len, char *out, size_t size) {
    if (!out || size <= NR_OUTPUT_STEM_MAX) return NR_EINVAL;
    const unsigned char *s = (const unsigned char *)(name ? name : "");
    if (!name) len = 0;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t clen = 1;
        uint32_t cp = 0;
        int keep;
        if (c < 0x80) {
            keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.';
        } else {
            clen = nr_utf8_decode(s + i, len - i, &cp, NULL);
            if (clen == 0) clen = 1; /* invalid: one '_' per byte */
            keep = clen > 1 && s_cp_ok(cp);
        }
        if (n + (keep ? clen : 1) > NR_OUTPUT_STEM_MAX) break;
        if (keep) {
            memcpy(out + n, s + i, clen);
            n += clen;
        } else {
            out[n++] = '_';
        }
        i += clen;
    }
    out[n] = '\0';
    if (n == 0) {
        snprintf(out, size, "image");
    } else if (out[0] == '.') {
        out[0] = '_';
    }
    return 0;
}

int nr_output_stem(const char *path, char *out, size_t size) {
    if (!out || size <= NR_OUTPUT_STEM_MAX) return NR_EINVAL;
    if (!path) path = "";
    /* Last component, ignoring trailing slashes. */
    size_t end = strlen(path);
    while (end > 0 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    /* Drop the extension (a dot that is not the first byte). */
    size_t stop = end;
    for (size_t i = end; i > start + 1; i--)
        if (path[i - 1] == '.') { stop = i - 1; break; }
    return nr_output_safe_name(path + start, stop - start, out, size);
}

int nr_output_name_safe(const char *name) {
    if (!name || !*name || name[0] == '.') return 0;
    size_t n = strlen(name);
    return n < 255 && !strchr(name, '/');
}

int nr_output_mkdir(const char *dir, char *err, size_t errlen) {
    if (!dir || !*dir) return nr_seterr(err, errlen, NR_EINVAL, "empty output folder name");
    char *path = strdup(dir);
    if (!path) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    int rc = 0;
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST) {
                rc = nr_seterr(err, errlen, NR_EIO, "cannot create folder %s: %s", path, strerror(errno));
                break;
            }
            *p = saved;
            if (!saved) break;
        }
    }
    struct stat st;
    if (rc == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = nr_seterr(err, errlen, NR_EIO, "cannot use %s as the output folder: not a folder", dir);
    free(path);
    return rc;
}

/* Writes all of data to fd; 0 or -1 with errno set. */
static int s_write_all(int fd, const void *data, size_t size) {
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        size -= (size_t)w;
    }
    return 0;
}

/* What a name in a folder is now (lstat, links not followed). */
typedef enum { S_NEW, S_REGULAR, S_LINK, S_OTHER } s_kind_t;

static s_kind_t s_kind_at(int dirfd, const char *name, mode_t *mode) {
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return S_NEW;
    *mode = st.st_mode;
    if (S_ISREG(st.st_mode)) return S_REGULAR;
    if (S_ISLNK(st.st_mode)) return S_LINK;
    return S_OTHER;
}

static const char *s_kind_name(mode_t mode) {
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

/* Writes data into a new temporary file in the folder dirfd, then renames
 * it to `name` there (renameat: the same folder whatever happens to its
 * path meanwhile). What is at `name` must be nothing or a regular file, or
 * a link when links_ok (the rename replaces the link itself, never what it
 * points to); anything else (a device, a FIFO, a folder) is refused.
 * `shown` is the path used in messages. */
static int s_write_atomic(int dirfd, const char *name, int links_ok, const char *shown,
                          const void *data, size_t size, char *err, size_t errlen) {
    mode_t mode = 0;
    s_kind_t kind = s_kind_at(dirfd, name, &mode);
    if (kind == S_OTHER || (kind == S_LINK && !links_ok))
        return nr_seterr(err, errlen, NR_EIO,
                         "refusing to replace %s: it is %s, not a regular file", shown,
                         s_kind_name(mode));
    char tmp[64];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        uint32_t r[2];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
            r[0] = (uint32_t)getpid() ^ (uint32_t)rand();
            r[1] = (uint32_t)rand() + (uint32_t)tries;
        }
        snprintf(tmp, sizeof tmp, ".narrate-%08x%08x", r[0], r[1]);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0)
        return nr_seterr(err, errlen, NR_EIO, "cannot write next to %s: %s", shown, strerror(errno));
    int rc = 0;
    if (s_write_all(fd, data, size) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", shown, strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    if (rc == 0 && fchmod(fd, 0666 & ~mask) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", shown, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", shown, strerror(errno));
    /* Looked at again just before the rename: a device or FIFO put there
     * since is still not replaced (the window left is the rename itself). */
    if (rc == 0) {
        kind = s_kind_at(dirfd, name, &mode);
        if (kind == S_OTHER || (kind == S_LINK && !links_ok))
            rc = nr_seterr(err, errlen, NR_EIO,
                           "refusing to replace %s: it is %s, not a regular file", shown,
                           s_kind_name(mode));
    }
    if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", shown, strerror(errno));
    if (rc) unlinkat(dirfd, tmp, 0);
    return rc;
}

/* Opens `dir` as a folder (O_DIRECTORY: anything else is refused). */
static int s_open_dir(const char *dir, char *err, size_t errlen) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return nr_seterr(err, errlen, NR_EIO, "cannot use %s as the output folder: %s", dir,
                         errno == ENOTDIR ? "not a folder" : strerror(errno));
    return fd;
}

int nr_output_write(const char *dir, const char *name, const void *data, size_t size, char *err,
                    size_t errlen) {
    if (!dir || !*dir || !nr_output_name_safe(name) || (size && !data))
        return nr_seterr(err, errlen, NR_EINVAL, "unsafe output file name '%s'", name ? name : "");
    size_t n = strlen(dir) + strlen(name) + 2;
    char *shown = malloc(n);
    if (!shown) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    snprintf(shown, n, "%s/%s", dir, name);
    int rc = s_open_dir(dir, err, errlen);
    if (rc >= 0) {
        int dirfd = rc;
        rc = s_write_atomic(dirfd, name, 1, shown, data, size, err, errlen);
        close(dirfd);
    }
    free(shown);
    return rc;
}

int nr_output_is_stdout(const char *path) {
    return path && (!strcmp(path, "-") || !strcmp(path, "/dev/stdout"));
}

/* Streams data into an existing FIFO (waits for its reader, as a FIFO
 * does); O_NOFOLLOW and the fstat check keep it to the FIFO looked at. */
static int s_write_fifo(const char *path, const void *data, size_t size, char *err,
                        size_t errlen) {
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode))
        rc = nr_seterr(err, errlen, NR_EIO, "refusing to write %s: it is no longer a FIFO", path);
    else if (s_write_all(fd, data, size) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: %s", path, strerror(errno));
    return rc;
}

int nr_output_write_path(const char *path, const void *data, size_t size, char *err,
                         size_t errlen) {
    if (!path || !*path || (size && !data))
        return nr_seterr(err, errlen, NR_EINVAL, "empty output file name");
    if (nr_output_is_stdout(path)) {
        fflush(stdout);
        if (s_write_all(STDOUT_FILENO, data, size) != 0)
            return nr_seterr(err, errlen, NR_EIO, "cannot write to standard output: %s",
                             strerror(errno));
        return 0;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISFIFO(st.st_mode))
        return s_write_fifo(path, data, size, err, errlen);
    char *dir = strdup(path);
    if (!dir) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    const char *name = path;
    if (!slash) {
        snprintf(dir, strlen(path) + 1, ".");
    } else {
        name = path + (slash - dir) + 1;
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    }
    int rc;
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s: it names a folder", path);
    } else if ((rc = s_open_dir(dir, err, errlen)) >= 0) {
        int dirfd = rc;
        rc = s_write_atomic(dirfd, name, 0, path, data, size, err, errlen);
        close(dirfd);
    }
    free(dir);
    return rc;
}

/* Code points that change what a terminal shows: bidirectional
 * embeddings, overrides and isolates. */
static int s_cp_bidi(uint32_t cp) {
    return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
           cp == 0x200F || cp == 0x061C;
}

void nr_output_plain(nr_buf_t *self, const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned char c = *p;
        if (c == '\\') {
            nr_buf_puts(self, "\\\\");
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            nr_buf_printf(self, "\\x%02x", c);
            p++;
        } else if (c < 0x80) {
            nr_buf_putn(self, (const char *)p, 1);
            p++;
        } else {
            uint32_t cp;
            size_t n = nr_utf8_decode(p, 4, &cp, NULL); /* stops at the NUL */
            if (n == 0) {
                nr_buf_printf(self, "\\x%02x", c);
                p++;
            } else if (cp < 0xA0) { /* C1 controls (0x9B is CSI) */
                for (size_t i = 0; i < n; i++) nr_buf_printf(self, "\\x%02x", p[i]);
                p += n;
            } else if (s_cp_bidi(cp)) {
                nr_buf_printf(self, "\\u%04x", (unsigned)cp);
                p += n;
            } else {
                nr_buf_putn(self, (const char *)p, n);
                p += n;
            }
        }
    }
}

void nr_output_json_string(nr_buf_t *self, const char *s) {
    if (!s) {
        nr_buf_puts(self, "null");
        return;
    }
    nr_buf_puts(self, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            nr_buf_putn(self, esc, 2);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': nr_buf_puts(self, "\\n"); break;
            case '\r': nr_buf_puts(self, "\\r"); break;
            case '\t': nr_buf_puts(self, "\\t"); break;
            default: nr_buf_printf(self, "\\u%04x", c); break;
            }
            p++;
        } else if (c < 0x80) {
            nr_buf_putn(self, (const char *)p, 1);
            p++;
        } else {
            uint32_t cp;
            size_t n = nr_utf8_decode(p, 4, &cp, NULL); /* stops at the NUL */
            if (n) {
                nr_buf_putn(self, (const char *)p, n);
                p += n;
            } else {
                nr_buf_puts(self, "\xEF\xBF\xBD");
                p++;
            }
        }
    }
    nr_buf_puts(self, "\"");
}

static const char *s_get(const nr_msg_t *m, const char *key) {
    if (!m) return NULL;
    for (uint32_t i = 0; i < m->kv_len; i++)
        if (m->kv[i].key && !strcmp(m->kv[i].key, key)) return m->kv[i].value;
    return NULL;
}

/* A JSON number when `v` is a plain integer, else a string (or null). */
static void s_json_value(nr_buf_t *b, const char *v) {
    int numeric = v && *v && strlen(v) < 19;
    for (const char *p = v; numeric && *p; p++)
        if (!isdigit((unsigned char)*p) && !(p == v && *p == '-' && p[1])) numeric = 0;
    if (numeric && v[0] == '0' && v[1]) numeric = 0;
    if (numeric && v[0] == '-' && v[1] == '0') numeric = 0;
    if (numeric) nr_buf_puts(b, v);
    else nr_output_json_string(b, v);
}

static void s_field(nr_buf_t *b, const char *name, const char *value, int number) {
    nr_buf_printf(b, ",\"%s\":", name);
    if (number) s_json_value(b, value);
    else nr_output_json_string(b, value);
}

/* Writes {"stage": value of "<stage>.<suffix>", ...} over the route's stages. */
static void s_per_stage(nr_buf_t *b, const char *name, const nr_msg_t *r, const char *route,
                        const char *suffix) {
    nr_buf_printf(b, ",\"%s\":{", name);
    int first = 1;
    const char *p = route ? route : "";
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char key[NR_PROTO_KEY_MAX + 1], stage[NR_PROTO_NAME_MAX + 1];
        if (len > 0 && len <= NR_PROTO_NAME_MAX) {
            memcpy(stage, p, len);
            stage[len] = '\0';
            snprintf(key, sizeof key, "%s.%s", stage, suffix);
            const char *v = s_get(r, key);
            if (v) {
                nr_buf_printf(b, "%s", first ? "" : ",");
                nr_output_json_string(b, stage);
                nr_buf_puts(b, ":");
                s_json_value(b, v);
                first = 0;
            }
        }
        if (!comma) break;
        p = comma + 1;
    }
    nr_buf_puts(b, "}");
}

void nr_output_record_json(nr_buf_t *b, const char *id, const nr_msg_t *r,
                           const nr_output_extra_t *extra) {
    const char *rid = s_get(r, "id");
    const char *route = s_get(r, "route");
    int local = extra && extra->error;
    nr_buf_puts(b, "{\"id\":");
    nr_output_json_string(b, rid ? rid : id);
    s_field(b, "source", extra ? extra->source : NULL, 0);
    s_field(b, "state", local ? "failed" : extra && extra->state ? extra->state : s_get(r, "state"), 0);
    s_field(b, "stage", s_get(r, "stage"), 0);
    s_field(b, "route", route, 0);
    s_field(b, "run", s_get(r, "run"), 0);
    s_field(b, "caption", s_get(r, "text.caption"), 0);
    s_field(b, "prompt", s_get(r, "text.prompt"), 0);     /* what the caption was prompted with */
    s_field(b, "language", s_get(r, "opt.language"), 0); /* PaliGemma's caption language, as submitted */
    nr_buf_puts(b, ",\"model\":{\"vision\":");
    nr_output_json_string(b, s_get(r, "vision.model"));
    nr_buf_puts(b, ",\"text\":");
    nr_output_json_string(b, s_get(r, "text.model"));
    nr_buf_puts(b, "},\"family\":{\"vision\":");
    nr_output_json_string(b, s_get(r, "vision.family"));
    nr_buf_puts(b, ",\"text\":");
    nr_output_json_string(b, s_get(r, "text.family"));
    nr_buf_puts(b, "}");
    s_field(b, "voice", s_get(r, "speech.voice"), 0);
    s_field(b, "duration_ms", s_get(r, "speech.duration_ms"), 1);
    s_per_stage(b, "timings_ms", r, route, "ms");
    s_per_stage(b, "attempts", r, route, "attempts");
    const char *error = local ? extra->error : s_get(r, "error");
    const char *message = local ? extra->error_message : s_get(r, "error_message");
    s_field(b, "error", error && *error ? error : NULL, 0);
    s_field(b, "error_message", message && *message ? message : NULL, 0);
    s_field(b, "created_ms", s_get(r, "created_ms"), 1);
    s_field(b, "updated_ms", s_get(r, "updated_ms"), 1);
    nr_buf_puts(b, ",\"options\":{");
    int first = 1;
    for (uint32_t i = 0; r && i < r->kv_len; i++) {
        if (strncmp(r->kv[i].key, "opt.", 4) != 0) continue;
        nr_buf_puts(b, first ? "" : ",");
        nr_output_json_string(b, r->kv[i].key + 4);
        nr_buf_puts(b, ":");
        nr_output_json_string(b, r->kv[i].value);
        first = 0;
    }
    nr_buf_puts(b, "},\"files\":[");
    for (size_t i = 0; extra && extra->files && extra->files[i]; i++) {
        nr_buf_puts(b, i ? "," : "");
        nr_output_json_string(b, extra->files[i]);
    }
    nr_buf_puts(b, "]");
    if (extra && extra->json_extra) nr_buf_printf(b, ",%s", extra->json_extra);
    nr_buf_puts(b, "}");
}
