/* Input files for `narrate submit`: folder walking and whole-file reads. */
#include "client/files.h"
#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define S_DEPTH_MAX 64

void nr_files_init(nr_files_t *self) { memset(self, 0, sizeof *self); }

void nr_files_clear(nr_files_t *self) {
    if (!self) return;
    for (size_t i = 0; i < self->len; i++) free(self->paths[i]);
    free(self->paths);
    free(self->rel_at);
    for (size_t i = 0; i < self->n_skipped; i++) free(self->skipped[i]);
    free(self->skipped);
    memset(self, 0, sizeof *self);
}

/* Notes a folder left out: "cannot read photos/x: Permission denied". */
static int s_skip(nr_files_t *self, const char *dir, int e) {
    char **p = realloc(self->skipped, (self->n_skipped + 1) * sizeof *p);
    if (!p) return NR_ENOMEM;
    self->skipped = p;
    size_t n = strlen(dir) + 128;
    char *msg = malloc(n);
    if (!msg) return NR_ENOMEM;
    snprintf(msg, n, "cannot read %s: %s", dir, strerror(e));
    self->skipped[self->n_skipped++] = msg;
    return 0;
}

int nr_files_is_image_name(const char *name) {
    static const char *const exts[] = {".jpg",  ".jpeg", ".png",  ".webp", ".tif",
                                       ".tiff", ".gif",  ".bmp",  ".heic", ".heif", ".avif"};
    if (!name) return 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t n = strlen(base);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcasecmp(base + n - e, exts[i]) == 0) return 1;
    }
    return 0;
}

/* Adds path; its part relative to its root starts at path + rel_at. */
static int s_push(nr_files_t *self, char *path, size_t rel_at) {
    if (self->len == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        char **p = realloc(self->paths, cap * sizeof *p);
        if (!p) return NR_ENOMEM;
        self->paths = p;
        size_t *r = realloc(self->rel_at, cap * sizeof *r);
        if (!r) return NR_ENOMEM;
        self->rel_at = r;
        self->cap = cap;
    }
    self->rel_at[self->len] = rel_at;
    self->paths[self->len++] = path;
    return 0;
}

static int s_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *s_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--;
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (!(a == 1 && dir[0] == '/')) p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static int s_walk(nr_files_t *self, const char *dir, size_t rel_at, int depth, char *err,
                  size_t errlen) {
    if (depth > S_DEPTH_MAX)
        return nr_seterr(err, errlen, NR_EIO, "cannot read %s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d && depth > 0) { /* a subfolder: left out, the rest goes on */
        if (s_skip(self, dir, errno)) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        return 0;
    }
    if (!d) return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", dir, strerror(errno));
    size_t start = self->len;
    char **subdirs = NULL;
    size_t n_sub = 0, cap_sub = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden files */
        char *path = s_join(dir, e->d_name);
        if (!path) { rc = NR_ENOMEM; break; }
        struct stat st;
        if (lstat(path, &st) != 0) {
            rc = nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", path, strerror(errno));
            free(path);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            /* Follow links to files, never to folders (no loops). */
            if (stat(path, &st) != 0 || S_ISDIR(st.st_mode)) { free(path); continue; }
        }
        if (S_ISDIR(st.st_mode)) {
            if (n_sub == cap_sub) {
                size_t cap = cap_sub ? cap_sub * 2 : 8;
                char **p = realloc(subdirs, cap * sizeof *p);
                if (!p) { free(path); rc = NR_ENOMEM; break; }
                subdirs = p;
                cap_sub = cap;
            }
            subdirs[n_sub++] = path;
        } else if (S_ISREG(st.st_mode) && nr_files_is_image_name(e->d_name)) {
            if ((rc = s_push(self, path, rel_at))) free(path);
        } else {
            free(path);
        }
    }
    if (rc == 0 && errno != 0 && e == NULL)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", dir, strerror(errno));
    closedir(d);
    if (rc == 0 && n_sub) qsort(subdirs, n_sub, sizeof *subdirs, s_cmp);
    for (size_t i = 0; i < n_sub; i++) {
        if (rc == 0) rc = s_walk(self, subdirs[i], rel_at, depth + 1, err, errlen);
        free(subdirs[i]);
    }
    free(subdirs);
    if (rc == 0 && self->len - start > 1)
        qsort(self->paths + start, self->len - start, sizeof *self->paths, s_cmp);
    if (rc == NR_ENOMEM) nr_seterr(err, errlen, NR_ENOMEM, "out of memory listing %s", dir);
    return rc;
}

int nr_files_collect(nr_files_t *self, const char *path, char *err, size_t errlen) {
    if (!self || !path || !*path) return nr_seterr(err, errlen, NR_EINVAL, "empty path");
    struct stat st;
    if (stat(path, &st) != 0)
        return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        /* Paths found start with the folder's name (trailing '/' dropped)
         * and one '/': what follows is relative to it. */
        size_t a = strlen(path);
        while (a > 1 && path[a - 1] == '/') a--;
        size_t rel_at = a == 1 && path[0] == '/' ? 1 : a + 1;
        return s_walk(self, path, rel_at, 0, err, errlen);
    }
    if (!S_ISREG(st.st_mode))
        return nr_seterr(err, errlen, NR_EIO, "cannot read %s: not a file or folder", path);
    char *copy = strdup(path);
    const char *base = strrchr(path, '/');
    if (!copy || s_push(self, copy, base ? (size_t)(base + 1 - path) : 0)) {
        free(copy);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    return 0;
}

/* Where the part of a listed path to mirror starts: after leading "/"
 * and "./". */
static size_t s_list_rel(const char *p) {
    size_t i = 0;
    for (;;) {
        if (p[i] == '/') i++;
        else if (p[i] == '.' && p[i + 1] == '/') i += 2;
        else return i;
    }
}

int nr_files_collect_list(nr_files_t *self, const char *list, char *err, size_t errlen) {
    uint8_t *data;
    size_t size;
    int rc = nr_files_read(list, NR_FILES_LIST_MAX, &data, &size, err, errlen);
    if (rc) return rc;
    char *text = realloc(data, size + 1);
    if (!text) {
        free(data);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory reading %s", list);
    }
    data = (uint8_t *)text;
    text[size] = '\0';
    for (char *line = text, *next; rc == 0 && line && line < text + size; line = next) {
        next = memchr(line, '\n', (size_t)(text + size - line));
        if (next) *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = '\0';
        if (!n) continue;
        size_t start = self->len, rel = s_list_rel(line);
        struct stat st;
        int bad = stat(line, &st) != 0 ? errno : 0;
        if (!bad && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) bad = ENODEV;
        if (bad) {
            if (s_skip(self, line, bad)) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = s_walk(self, line, 0, 0, err, errlen);
            for (size_t i = start; rc == 0 && i < self->len; i++) self->rel_at[i] = rel;
        } else {
            char *copy = strdup(line);
            if (!copy || s_push(self, copy, rel)) {
                free(copy);
                rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            }
        }
    }
    free(data);
    return rc;
}

int nr_files_read(const char *path, size_t max, uint8_t **data, size_t *size, char *err,
                  size_t errlen) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", path, strerror(errno));
    size_t cap = 65536, len = 0;
    uint8_t *buf = malloc(cap);
    int rc = 0;
    if (!buf) { rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory reading %s", path); goto done; }
    for (;;) {
        if (len == cap) {
            if (cap > max) break;
            size_t ncap = cap * 2;
            if (ncap > max + 1) ncap = max + 1;
            uint8_t *p = realloc(buf, ncap);
            if (!p) { rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory reading %s", path); goto done; }
            buf = p;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) rc = nr_seterr(err, errlen, NR_EIO, "cannot read %s: read error", path);
            break;
        }
        if (len > max) break;
    }
    if (rc == 0 && len > max)
        rc = nr_seterr(err, errlen, NR_ETOOBIG, "%s is larger than %zu bytes", path, max);
done:
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    *size = len;
    return 0;
}

static uint64_t s_rd(const uint8_t *p, int bytes, int le) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[le ? bytes - 1 - i : i];
    return v;
}

int nr_files_tiff_pages(const uint8_t *d, size_t n, int max) {
    if (!d || n < 8 || max < 1) return 1;
    const int le = d[0] == 'I' && d[1] == 'I';
    if (!le && !(d[0] == 'M' && d[1] == 'M')) return 1;
    const uint64_t magic = s_rd(d + 2, 2, le);
    const int big = magic == 43;
    if (magic != 42 && !big) return 1;
    if (big && n < 16) return 1;
    /* Classic: 2-byte count, 12-byte entries, 4-byte next offset; BigTIFF:
     * 8, 20 and 8. */
    const uint64_t hdr = big ? 8 : 2, esz = big ? 20 : 12, nsz = big ? 8 : 4;
    uint64_t off = big ? s_rd(d + 8, 8, le) : s_rd(d + 4, 4, le);
    uint64_t seen[1000]; /* directories met, to stop at a loop */
    if (max > 1000) max = 1000;
    int count = 0;
    while (off && count < max && off <= n && n - off >= hdr) {
        for (int i = 0; i < count; i++)
            if (seen[i] == off) return count;
        seen[count] = off;
        uint64_t entries = s_rd(d + off, (int)hdr, le);
        if (entries > (n - off - hdr) / esz) break;
        uint64_t next = off + hdr + entries * esz;
        if (n - next < nsz) break;
        count++;
        off = s_rd(d + next, (int)nsz, le);
    }
    return count ? count : 1;
}
