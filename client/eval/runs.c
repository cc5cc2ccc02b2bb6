/* Reading run results: output folders of .json records, and manifests. */
#define _DEFAULT_SOURCE /* DT_* of readdir */
#include "client/eval/runs.h"
#include "client/eval/file.h"
#include "common/buf.h"
#include "common/error.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void s_item_clear(nr_evitem_t *it) {
    free(it->source), free(it->caption), free(it->state), free(it->audio), free(it->error), free(it->origin);
    memset(it, 0, sizeof *it);
}

void nr_evrun_clear(nr_evrun_t *run) {
    for (size_t i = 0; i < run->n; i++) s_item_clear(&run->items[i]);
    free(run->items);
    free(run->path);
    memset(run, 0, sizeof *run);
}

static int s_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

/* A new item at the end of the run; NULL (message in err) when full or out of memory. */
static nr_evitem_t *s_push(nr_evrun_t *run, char *err, size_t errlen) {
    if (run->n >= NR_EVRUN_MAX_ITEMS) {
        nr_seterr(err, errlen, NR_ETOOBIG, "results %s: more than %d images", run->path, NR_EVRUN_MAX_ITEMS);
        return NULL;
    }
    if (run->n == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 64;
        nr_evitem_t *items = realloc(run->items, cap * sizeof *items);
        if (!items) {
            nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            return NULL;
        }
        run->items = items;
        run->cap = cap;
    }
    nr_evitem_t *it = &run->items[run->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static int s_dup(char **dst, const char *s) {
    if (!s) return 0;
    *dst = strdup(s);
    return *dst ? 0 : NR_ENOMEM;
}

/* dir + "/" + rel, or rel itself when absolute. */
static char *s_join(const char *dir, const char *rel) {
    nr_buf_t b = {0};
    if (rel[0] == '/' || !dir || !*dir) nr_buf_puts(&b, rel);
    else nr_buf_printf(&b, "%s/%s", dir, rel);
    return nr_buf_take(&b, NULL);
}

static char *s_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

/* The audio of a record: the first name in "files" ending in .wav, next
 * to the record (a name with '/' that is not there is tried by its base
 * name). Names with a ".." component are refused. */
static char *s_record_audio(const cJSON *files, const char *dir) {
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        if (!cJSON_IsString(f) || !s_ends_with(f->valuestring, ".wav")) continue;
        const char *name = f->valuestring;
        if (!strcmp(name, "..") || !strncmp(name, "../", 3) || strstr(name, "/../")) continue;
        char *path = s_join(dir, name);
        struct stat st;
        if (path && stat(path, &st) != 0 && strchr(name, '/')) {
            free(path);
            path = s_join(dir, strrchr(name, '/') + 1);
        }
        return path;
    }
    return NULL;
}

static const char *s_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One .json record file; a JSON file that is not a job record (no
 * "state" and no "caption") is counted as ignored in a folder, an error
 * when named directly. */
static int s_load_record(nr_evrun_t *run, const char *path, int named, char *err, size_t errlen) {
    size_t size;
    int code;
    char *text = nr_ev_read_file(path, NR_EVRUN_MAX_RECORD_BYTES, 0, "", &size, &code, err, errlen);
    if (!text) return named ? NR_EIO : (run->ignored++, 0);
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    int rc = 0;
    if (!cJSON_IsObject(root) || (!cJSON_GetObjectItemCaseSensitive(root, "state") &&
                                  !cJSON_GetObjectItemCaseSensitive(root, "caption"))) {
        if (named) rc = nr_seterr(err, errlen, NR_EINVAL, "results %s is not a narrate job record", path);
        else run->ignored++;
        cJSON_Delete(root);
        return rc;
    }
    nr_evitem_t *it = s_push(run, err, errlen);
    char *dir = s_dirname(path);
    if (!it || !dir) {
        free(dir);
        cJSON_Delete(root);
        return it ? nr_seterr(err, errlen, NR_ENOMEM, "out of memory") : NR_ETOOBIG;
    }
    rc = s_dup(&it->source, s_str(root, "source"));
    if (!rc) rc = s_dup(&it->caption, s_str(root, "caption"));
    if (!rc) rc = s_dup(&it->state, s_str(root, "state"));
    if (!rc) rc = s_dup(&it->error, s_str(root, "error"));
    if (!rc) rc = s_dup(&it->origin, path);
    if (!rc) it->audio = s_record_audio(cJSON_GetObjectItemCaseSensitive(root, "files"), dir);
    free(dir);
    cJSON_Delete(root);
    return rc ? nr_seterr(err, errlen, NR_ENOMEM, "out of memory") : 0;
}

/* ---- folders ---- */

typedef struct {
    char **paths;
    size_t n, cap, entries;
} s_list_t;

static int s_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Collects .json files under dir (links not followed). */
static int s_walk(const char *dir, int depth, s_list_t *out, char *err, size_t errlen) {
    if (depth > NR_EVRUN_MAX_DEPTH)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%s: folders nested deeper than %d", dir, NR_EVRUN_MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return nr_seterr(err, errlen, NR_EIO, "cannot read folder %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (++out->entries > NR_EVRUN_MAX_ENTRIES) {
            rc = nr_seterr(err, errlen, NR_ETOOBIG, "results folder holds more than %d entries", NR_EVRUN_MAX_ENTRIES);
            break;
        }
        char *path = s_join(dir, e->d_name);
        struct stat st;
        if (!path) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        else if (lstat(path, &st) != 0) ; /* vanished meanwhile */
        else if (S_ISDIR(st.st_mode)) rc = s_walk(path, depth + 1, out, err, errlen);
        else if (S_ISREG(st.st_mode) && s_ends_with(e->d_name, ".json")) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 64;
                char **p = realloc(out->paths, cap * sizeof *p);
                if (!p) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
                else out->paths = p, out->cap = cap;
            }
            if (!rc) {
                out->paths[out->n++] = path;
                path = NULL;
            }
        }
        free(path);
    }
    closedir(d);
    return rc;
}

static int s_load_folder(nr_evrun_t *run, char *err, size_t errlen) {
    s_list_t list = {0};
    int rc = s_walk(run->path, 0, &list, err, errlen);
    if (!rc) qsort(list.paths, list.n, sizeof *list.paths, s_cmp);
    for (size_t i = 0; !rc && i < list.n; i++) rc = s_load_record(run, list.paths[i], 0, err, errlen);
    for (size_t i = 0; i < list.n; i++) free(list.paths[i]);
    free(list.paths);
    return rc;
}

/* ---- manifests ---- */

enum { S_SOURCE, S_CAPTION, S_STATE, S_AUDIO, S_ERROR, S_NCOLS };

/* The column a header name means, or -1 (other columns are ignored). */
static int s_column(const char *name) {
    static const struct { const char *name; int col; } names[] = {
        {"source", S_SOURCE}, {"source_path", S_SOURCE}, {"path", S_SOURCE}, {"image", S_SOURCE},
        {"file", S_SOURCE}, {"caption", S_CAPTION}, {"text", S_CAPTION}, {"state", S_STATE},
        {"status", S_STATE}, {"audio", S_AUDIO}, {"audio_path", S_AUDIO}, {"audio_file", S_AUDIO},
        {"wav", S_AUDIO}, {"error", S_ERROR},
    };
    char norm[64];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof norm; n++)
        norm[n] = name[n] == ' ' || name[n] == '-' ? '_' : (char)tolower((unsigned char)name[n]);
    norm[n] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i].name, norm)) return names[i].col;
    return -1;
}

/* Fills an item from the values of one row (NULL or "" means absent). */
static int s_row(nr_evrun_t *run, const char *const vals[S_NCOLS], const char *dir, const char *origin, char *err,
                 size_t errlen) {
    nr_evitem_t *it = s_push(run, err, errlen);
    if (!it) return NR_ETOOBIG;
    int rc = 0;
    char **dst[S_NCOLS] = {&it->source, &it->caption, &it->state, NULL, &it->error};
    for (int c = 0; c < S_NCOLS && !rc; c++)
        if (dst[c] && vals[c] && (*vals[c] || c == S_CAPTION)) rc = s_dup(dst[c], vals[c]);
    if (!rc && vals[S_AUDIO] && *vals[S_AUDIO]) {
        /* Relative to the manifest's folder, else as given. */
        struct stat st;
        it->audio = s_join(dir, vals[S_AUDIO]);
        if (it->audio && vals[S_AUDIO][0] != '/' && stat(it->audio, &st) != 0) {
            free(it->audio);
            it->audio = strdup(vals[S_AUDIO]);
        }
        if (!it->audio) rc = NR_ENOMEM;
    }
    if (!rc) rc = s_dup(&it->origin, origin);
    return rc ? nr_seterr(err, errlen, NR_ENOMEM, "out of memory") : 0;
}

static int s_load_jsonl(nr_evrun_t *run, char *text, const char *dir, char *err, size_t errlen) {
    size_t line = 0;
    int rc = 0;
    for (char *p = text; *p && !rc;) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        line++;
        p[len] = '\0';
        char *q = p;
        while (isspace((unsigned char)*q)) q++;
        if (*q) {
            cJSON *obj = cJSON_Parse(q);
            if (!cJSON_IsObject(obj)) {
                cJSON_Delete(obj);
                return nr_seterr(err, errlen, NR_EINVAL, "results %s line %zu: not a JSON object", run->path, line);
            }
            const char *vals[S_NCOLS] = {0};
            const cJSON *kv;
            cJSON_ArrayForEach(kv, obj) {
                int c = s_column(kv->string);
                if (c >= 0 && cJSON_IsString(kv) && !vals[c]) vals[c] = kv->valuestring;
            }
            char origin[64];
            snprintf(origin, sizeof origin, "line %zu", line);
            rc = s_row(run, vals, dir, origin, err, errlen);
            cJSON_Delete(obj);
        }
        p = end ? end + 1 : p + len;
    }
    return rc;
}

/* Splits one CSV record (RFC 4180: "quoted, with "" inside") in place
 * starting at *pos; fields point into text. Returns the field count, or
 * -1 for an unterminated quote; *pos moves past the record's newline. */
static int s_csv_record(char *text, size_t *pos, char **fields, int max) {
    char *p = text + *pos, *w = p;
    int n = 0;
    fields[n++] = w;
    for (;;) {
        if (*p == '"' && w == fields[n - 1]) {
            p++;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
                else if (*p == '"') { p++; break; }
                else *w++ = *p++;
            }
        } else if (*p == ',') {
            *w++ = '\0';
            p++;
            if (n < max) fields[n++] = w;
            else fields[max - 1] = w; /* extra columns fold into the last, ignored */
        } else if (*p == '\n' || *p == '\0' || (*p == '\r' && p[1] == '\n')) {
            int more = *p != '\0';
            p += *p == '\r' ? 2 : more;
            *w = '\0';
            *pos = (size_t)(p - text);
            return n;
        } else {
            *w++ = *p++;
        }
    }
}

#define S_CSV_MAX_COLS 64

static int s_load_csv(nr_evrun_t *run, char *text, size_t size, const char *dir, char *err, size_t errlen) {
    char *fields[S_CSV_MAX_COLS];
    int map[S_CSV_MAX_COLS];
    size_t pos = strncmp(text, "\xEF\xBB\xBF", 3) ? 0 : 3, line = 1; /* a byte order mark */
    int ncols = s_csv_record(text, &pos, fields, S_CSV_MAX_COLS), seen[S_NCOLS] = {0};
    if (ncols < 0) return nr_seterr(err, errlen, NR_EINVAL, "results %s: unterminated quote in the header", run->path);
    for (int i = 0; i < ncols; i++) {
        map[i] = s_column(fields[i]);
        if (map[i] >= 0 && seen[map[i]]++) map[i] = -1; /* the first of two aliases wins */
    }
    if (!seen[S_SOURCE] || !seen[S_CAPTION])
        return nr_seterr(err, errlen, NR_EINVAL,
                         "results %s: the header row needs a source path column and a caption column", run->path);
    while (pos < size) {
        line++;
        if (text[pos] == '\n' || (text[pos] == '\r' && text[pos + 1] == '\n')) {
            pos += text[pos] == '\r' ? 2 : 1;
            continue;
        }
        int n = s_csv_record(text, &pos, fields, S_CSV_MAX_COLS);
        if (n < 0) return nr_seterr(err, errlen, NR_EINVAL, "results %s row %zu: unterminated quote", run->path, line);
        const char *vals[S_NCOLS] = {0};
        for (int i = 0; i < n && i < ncols; i++)
            if (map[i] >= 0) vals[map[i]] = fields[i];
        char origin[64];
        snprintf(origin, sizeof origin, "row %zu", line);
        int rc = s_row(run, vals, dir, origin, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int nr_evrun_load(const char *path, nr_evrun_t *run, char *err, size_t errlen) {
    memset(run, 0, sizeof *run);
    if (!(run->path = strdup(path))) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0) return nr_seterr(err, errlen, NR_EIO, "cannot open results %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        run->kind = "folder";
        return s_load_folder(run, err, errlen);
    }
    if (s_ends_with(path, ".json")) {
        run->kind = "record";
        return s_load_record(run, path, 1, err, errlen);
    }
    int jsonl = s_ends_with(path, ".jsonl") || s_ends_with(path, ".ndjson"), csv = s_ends_with(path, ".csv");
    if (!jsonl && !csv)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "results %s: expected an output folder of narrate submit, a .json record, or a "
                         ".jsonl or .csv manifest", path);
    run->kind = jsonl ? "jsonl" : "csv";
    size_t size;
    int code;
    char *text = nr_ev_read_file(path, NR_EVRUN_MAX_MANIFEST_BYTES, 0, "", &size, &code, err, errlen);
    if (!text) return NR_EIO;
    char *dir = s_dirname(path);
    int rc = !dir ? nr_seterr(err, errlen, NR_ENOMEM, "out of memory")
             : memchr(text, '\0', size) ? nr_seterr(err, errlen, NR_EINVAL, "results %s holds a NUL byte", path)
             : jsonl ? s_load_jsonl(run, text, dir, err, errlen)
                     : s_load_csv(run, text, size, dir, err, errlen);
    free(dir);
    free(text);
    return rc;
}
