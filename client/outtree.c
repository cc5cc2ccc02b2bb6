/* The output tree: input paths mirrored under the output folder. */
#include "client/outtree.h"
#include "client/output.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A string map, open addressing: folder names taken ("N" dir \1 name,
 * lower case) and input folders already placed ("D" folder -> output). */
typedef struct {
    char **keys, **vals;
    size_t cap, len;
} s_map_t;

static uint64_t s_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t s_slot(const s_map_t *m, const char *key) {
    size_t i = (size_t)(s_hash(key) & (m->cap - 1));
    while (m->keys[i] && strcmp(m->keys[i], key)) i = (i + 1) & (m->cap - 1);
    return i;
}

static const char *s_get(const s_map_t *m, const char *key, int *found) {
    size_t i = s_slot(m, key);
    *found = m->keys[i] != NULL;
    return m->vals[i];
}

/* Takes ownership of key and val (either may be NULL for val). */
static int s_put(s_map_t *m, char *key, char *val) {
    if (2 * (m->len + 1) > m->cap) {
        s_map_t g = {calloc(m->cap * 2, sizeof(char *)), calloc(m->cap * 2, sizeof(char *)),
                     m->cap * 2, m->len};
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return NR_ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = s_slot(&g, m->keys[i]);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t i = s_slot(m, key);
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

static void s_map_free(s_map_t *m) {
    for (size_t i = 0; i < m->cap; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
}

/* "N" dir \1 lower(name) suffix, malloc'd. */
static char *s_name_key(const char *dir, const char *name, const char *suffix) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 3;
    char *k = malloc(n);
    if (!k) return NULL;
    snprintf(k, n, "N%s\1%s%s", dir, name, suffix);
    for (char *p = k + 2 + strlen(dir); *p; p++) *p = (char)tolower((unsigned char)*p);
    return k;
}

/* 1 when every name of the family (name + each suffix; folders: none) is
 * free in dir, 0 when one is taken, NR_ENOMEM. */
static int s_free(const s_map_t *m, const char *dir, const char *name, int file) {
    static const char *const sfx[] = NR_OUTTREE_SUFFIXES;
    size_t n = file ? 1 + sizeof sfx / sizeof sfx[0] : 1;
    for (size_t i = 0; i < n; i++) {
        char *k = s_name_key(dir, name, i ? sfx[i - 1] : "");
        if (!k) return NR_ENOMEM;
        int found;
        s_get(m, k, &found);
        free(k);
        if (found) return 0;
    }
    return 1;
}

static int s_take(s_map_t *m, const char *dir, const char *name, int file) {
    static const char *const sfx[] = NR_OUTTREE_SUFFIXES;
    size_t n = file ? 1 + sizeof sfx / sizeof sfx[0] : 1;
    for (size_t i = 0; i < n; i++) {
        char *k = s_name_key(dir, name, i ? sfx[i - 1] : "");
        if (!k || s_put(m, k, NULL)) {
            free(k);
            return NR_ENOMEM;
        }
    }
    return 0;
}

/* A name free in dir, made from the component comp[0..len): "-k" goes
 * before a file's extension, after a folder's name. malloc'd. */
static char *s_unique(s_map_t *m, const char *dir, const char *comp, size_t len, int file) {
    char safe[NR_OUTPUT_STEM_MAX + 1];
    nr_output_safe_name(comp, len, safe, sizeof safe);
    const char *dot = file ? strrchr(safe + 1, '.') : NULL;
    size_t base = dot ? (size_t)(dot - safe) : strlen(safe);
    size_t cap = strlen(safe) + 24;
    char *name = malloc(cap);
    if (!name) return NULL;
    snprintf(name, cap, "%s", safe);
    for (unsigned k = 2;; k++) {
        int rc = s_free(m, dir, name, file);
        if (rc < 0) break;
        if (rc == 1) {
            if (s_take(m, dir, name, file)) break;
            return name;
        }
        snprintf(name, cap, "%.*s-%u%s", (int)base, safe, k, safe + base);
    }
    free(name);
    return NULL;
}

int nr_outtree_plan(const char *const *rels, size_t n, char **dirs, char **names) {
    s_map_t m = {calloc(64, sizeof(char *)), calloc(64, sizeof(char *)), 64, 0};
    size_t done = 0;
    if (!m.keys || !m.vals) goto err;
    for (; done < n; done++) {
        const char *rel = rels[done] ? rels[done] : "";
        /* The last non-empty component is the file; the ones before are folders. */
        size_t end = strlen(rel);
        while (end > 0 && rel[end - 1] == '/') end--;
        size_t last = end;
        while (last > 0 && rel[last - 1] != '/') last--;
        char *out = strdup("");
        if (!out) goto err;
        for (size_t p = 0; p < last;) {
            size_t q = p;
            while (q < last && rel[q] != '/') q++;
            size_t len = q - p;
            if (len && !(len == 1 && rel[p] == '.')) {
                char *key = malloc(q + 2);
                if (!key) { free(out); goto err; }
                snprintf(key, q + 2, "D%.*s", (int)q, rel);
                int found;
                const char *v = s_get(&m, key, &found);
                if (found) {
                    free(key);
                    free(out);
                    if (!(out = strdup(v))) goto err;
                } else {
                    char *comp = s_unique(&m, out, rel + p, len, 0);
                    size_t cap = strlen(out) + (comp ? strlen(comp) : 0) + 2;
                    char *next = comp ? malloc(cap) : NULL;
                    if (next) snprintf(next, cap, "%s%s%s", out, *out ? "/" : "", comp);
                    free(comp);
                    char *val = next ? strdup(next) : NULL;
                    if (!val || s_put(&m, key, val)) {
                        free(key);
                        free(val);
                        free(next);
                        free(out);
                        goto err;
                    }
                    free(out);
                    out = next;
                }
            }
            p = q + 1;
        }
        char *name = s_unique(&m, out, rel + last, end - last, 1);
        if (!name) { free(out); goto err; }
        dirs[done] = out;
        names[done] = name;
    }
    s_map_free(&m);
    return 0;
err:
    for (size_t i = 0; i < done; i++) {
        free(dirs[i]);
        free(names[i]);
        dirs[i] = names[i] = NULL;
    }
    if (m.keys && m.vals) s_map_free(&m);
    else {
        free(m.keys);
        free(m.vals);
    }
    return NR_ENOMEM;
}

int nr_outtree_mkdir(const char *out, const char *rel, char *err, size_t errlen) {
    int rc = nr_output_mkdir(out, err, errlen);
    if (rc) return rc;
    int fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return nr_seterr(err, errlen, NR_EIO, "cannot use %s: %s", out, strerror(errno));
    char *copy = strdup(rel ? rel : "");
    if (!copy) {
        close(fd);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    for (char *save = NULL, *c = strtok_r(copy, "/", &save); c && !rc; c = strtok_r(NULL, "/", &save)) {
        if (!nr_output_name_safe(c)) {
            rc = nr_seterr(err, errlen, NR_EINVAL, "unsafe output folder name '%s'", c);
            break;
        }
        if (mkdirat(fd, c, 0777) != 0 && errno != EEXIST) {
            rc = nr_seterr(err, errlen, NR_EIO, "cannot create folder %s/%s: %s", out, rel,
                           strerror(errno));
            break;
        }
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            rc = nr_seterr(err, errlen, NR_EIO, "cannot use folder %s/%s: %s", out, rel,
                           errno == ELOOP || errno == ENOTDIR ? "a part of it is a link or a file"
                                                              : strerror(errno));
        close(fd);
        fd = next;
    }
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}
