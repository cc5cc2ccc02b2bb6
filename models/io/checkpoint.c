/* Checkpoint: the weights of one model as one sorted table of named
 * tensors over one or more open files (safetensors or torch zip), so the
 * loaders never care how the Hub published them. */
#include "models/io/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "models/config.h"
#include "models/io/safetensors.h"
#include "models/io/torchzip.h"

/* Bounds on an index file: its size and the shards it may name. */
#define S_INDEX_MAX_BYTES (64u * 1024u * 1024u)
#define S_MAX_SHARDS 4096

typedef struct {
    char *path;
    nr_safetensors_t *st; /* exactly one of st, tz */
    nr_torchzip_t *tz;
} s_file_t;

typedef struct {
    const nr_named_tensor_t *t;
    size_t file;
} s_entry_t;

struct nr_checkpoint {
    char *path;
    s_file_t *files;
    size_t nfiles;
    s_entry_t *entries; /* sorted by name */
    size_t n;
};

static size_t s_file_count(const s_file_t *f) {
    return f->st ? nr_safetensors_count(f->st) : nr_torchzip_count(f->tz);
}

static const nr_named_tensor_t *s_file_at(const s_file_t *f, size_t i) {
    return f->st ? nr_safetensors_at(f->st, i) : nr_torchzip_at(f->tz, i);
}

static const nr_named_tensor_t *s_file_find(const s_file_t *f, const char *name) {
    return f->st ? nr_safetensors_find(f->st, name) : nr_torchzip_find(f->tz, name);
}

static int s_has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int s_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A torch zip starts with a zip local header; a legacy torch.save file with
 * a pickle PROTO opcode (the torch reader refuses it with a clear word). */
static int s_bytes_look_torch(const unsigned char *b, size_t n) {
    return (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0) || (n >= 1 && b[0] == 0x80);
}

/* By name first (so a damaged file gets the right reader's error), then by
 * content. */
static int s_looks_torch(const char *path) {
    if (s_has_suffix(path, ".safetensors")) return 0;
    if (s_has_suffix(path, ".bin") || s_has_suffix(path, ".pth") || s_has_suffix(path, ".pt")) return 1;
    unsigned char b[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t got = fread(b, 1, sizeof b, fp);
    fclose(fp);
    return s_bytes_look_torch(b, got);
}

/* Appends an empty file slot named `path` to ck. */
static s_file_t *s_new_file(nr_checkpoint_t *ck, const char *path, char *err, size_t errlen) {
    s_file_t *nf = realloc(ck->files, (ck->nfiles + 1) * sizeof(*nf));
    if (!nf) {
        nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    ck->files = nf;
    s_file_t *f = &ck->files[ck->nfiles];
    memset(f, 0, sizeof(*f));
    if (!(f->path = strdup(path))) {
        nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    ck->nfiles++;
    return f;
}

/* Opens one weights file (not an index) as the next file of ck. */
static int s_add_file(nr_checkpoint_t *ck, const char *path, char *err, size_t errlen) {
    s_file_t *f = s_new_file(ck, path, err, errlen);
    if (!f) return NR_ENOMEM;
    if (s_looks_torch(path)) return nr_torchzip_open(path, &f->tz, err, errlen);
    return nr_safetensors_open(path, &f->st, err, errlen);
}

static int s_cmp_entry(const void *a, const void *b) {
    return strcmp(((const s_entry_t *)a)->t->name, ((const s_entry_t *)b)->t->name);
}

/* Builds the sorted table over every file; a name in two files (or twice
 * in one) is refused, since which copy wins would be a guess. */
static int s_index_entries(nr_checkpoint_t *ck, char *err, size_t errlen) {
    size_t total = 0;
    for (size_t i = 0; i < ck->nfiles; i++) total += s_file_count(&ck->files[i]);
    ck->entries = calloc(total ? total : 1, sizeof(*ck->entries));
    if (!ck->entries) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", ck->path);
    for (size_t i = 0; i < ck->nfiles; i++)
        for (size_t j = 0; j < s_file_count(&ck->files[i]); j++)
            ck->entries[ck->n++] = (s_entry_t){s_file_at(&ck->files[i], j), i};
    qsort(ck->entries, ck->n, sizeof(*ck->entries), s_cmp_entry);
    for (size_t i = 1; i < ck->n; i++)
        if (strcmp(ck->entries[i - 1].t->name, ck->entries[i].t->name) == 0)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s is in both %s and %s", ck->path,
                             ck->entries[i].t->name, ck->files[ck->entries[i - 1].file].path,
                             ck->files[ck->entries[i].file].path);
    return 0;
}

/* A shard name from an index: a plain file name beside the index. */
static int s_valid_shard_name(const char *name) {
    return name[0] && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/') && !strchr(name, '\\');
}

/* Opens every shard an index names (each once, in first-seen order) and
 * checks that each listed tensor is in the shard the index says. */
static int s_open_index(nr_checkpoint_t *ck, const char *index_path, char *err, size_t errlen) {
    size_t len = 0;
    char *text = nr_model_read_file(index_path, S_INDEX_MAX_BYTES, &len);
    if (!text)
        return nr_seterr(err, errlen, errno == ENOMEM ? NR_ENOMEM : NR_EMODEL, "%s: cannot read (%s)", index_path,
                         errno == EFBIG ? "larger than 64 MiB" : strerror(errno));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    if (!cJSON_IsObject(map) || !map->child) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: not a shard index (no \"weight_map\" object)", index_path);
        goto done;
    }
    const char *slash = strrchr(index_path, '/');
    int dirlen = slash ? (int)(slash - index_path) : 1;
    const char *dir = slash ? index_path : ".";
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !s_valid_shard_name(e->valuestring)) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: bad shard name (a file beside the index expected)",
                           index_path, e->string);
            goto done;
        }
        char shard[4096];
        snprintf(shard, sizeof shard, "%.*s/%s", dirlen, dir, e->valuestring);
        size_t f = 0;
        while (f < ck->nfiles && strcmp(ck->files[f].path, shard) != 0) f++;
        if (f == ck->nfiles) {
            if (ck->nfiles == S_MAX_SHARDS) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: more than %d shards", index_path, S_MAX_SHARDS);
                goto done;
            }
            if (!s_is_file(shard)) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: shard %s is missing (fetch the checkpoint again)",
                               index_path, e->valuestring);
                goto done;
            }
            if ((rc = s_add_file(ck, shard, err, errlen))) goto done;
        }
        if (!s_file_find(&ck->files[f], e->string)) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s is not in %s, where the index puts it", index_path,
                           e->string, e->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return rc;
}

int nr_checkpoint_open_file(const char *path, nr_checkpoint_t **out, char *err, size_t errlen) {
    if (!out || !path) return nr_seterr(err, errlen, NR_EINVAL, "checkpoint: no file");
    *out = NULL;
    nr_checkpoint_t *ck = calloc(1, sizeof(*ck));
    if (!ck || !(ck->path = strdup(path))) {
        free(ck);
        return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
    }
    int rc;
    if (!s_is_file(path))
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: missing or not a regular file", path);
    else if (s_has_suffix(path, ".json"))
        rc = s_open_index(ck, path, err, errlen);
    else
        rc = s_add_file(ck, path, err, errlen);
    if (!rc) rc = s_index_entries(ck, err, errlen);
    if (rc) {
        nr_checkpoint_close(&ck);
        return rc;
    }
    *out = ck;
    return 0;
}

int nr_checkpoint_open_memory(const void *data, size_t size, const char *name, nr_checkpoint_t **out, char *err,
                              size_t errlen) {
    if (!out || !name || (!data && size)) return nr_seterr(err, errlen, NR_EINVAL, "checkpoint: no data");
    *out = NULL;
    nr_checkpoint_t *ck = calloc(1, sizeof(*ck));
    if (!ck || !(ck->path = strdup(name))) {
        free(ck);
        return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", name);
    }
    s_file_t *f = s_new_file(ck, name, err, errlen);
    int rc = NR_ENOMEM;
    if (f && s_bytes_look_torch(data, size))
        rc = nr_torchzip_open_memory(data, size, name, &f->tz, err, errlen);
    else if (f)
        rc = nr_safetensors_open_memory(data, size, name, &f->st, err, errlen);
    if (!rc) rc = s_index_entries(ck, err, errlen);
    if (rc) {
        nr_checkpoint_close(&ck);
        return rc;
    }
    *out = ck;
    return 0;
}

int nr_checkpoint_open_dir(const char *dir, nr_checkpoint_t **out, char *err, size_t errlen) {
    static const char *const preferred[] = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                            "pytorch_model.bin.index.json"};
    if (!out || !dir) return nr_seterr(err, errlen, NR_EINVAL, "checkpoint: no folder");
    *out = NULL;
    char path[4096];
    for (size_t i = 0; i < sizeof preferred / sizeof preferred[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, preferred[i]);
        if (!s_is_file(path)) continue;
        int rc = nr_checkpoint_open_file(path, out, err, errlen);
        if (!rc)
            nr_log(NR_LOG_INFO, "models: weights from %s (%zu tensors in %zu file%s)", path, (*out)->n,
                   (*out)->nfiles, (*out)->nfiles == 1 ? "" : "s");
        return rc;
    }
    return nr_seterr(err, errlen, NR_EMODEL,
                     "%s: no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                     "pytorch_model.bin.index.json); fetch the checkpoint with models/fetch.sh",
                     dir);
}

void nr_checkpoint_close(nr_checkpoint_t **pck) {
    if (!pck || !*pck) return;
    nr_checkpoint_t *ck = *pck;
    for (size_t i = 0; i < ck->nfiles; i++) {
        nr_safetensors_close(&ck->files[i].st);
        nr_torchzip_close(&ck->files[i].tz);
        free(ck->files[i].path);
    }
    free(ck->files);
    free(ck->entries);
    free(ck->path);
    free(ck);
    *pck = NULL;
}

const char *nr_checkpoint_path(const nr_checkpoint_t *ck) { return ck->path; }

size_t nr_checkpoint_count(const nr_checkpoint_t *ck) { return ck->n; }

const nr_named_tensor_t *nr_checkpoint_at(const nr_checkpoint_t *ck, size_t i) {
    return i < ck->n ? ck->entries[i].t : NULL;
}

static const s_entry_t *s_find(const nr_checkpoint_t *ck, const char *name) {
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->entries[mid].t->name, name);
        if (c == 0) return &ck->entries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const nr_named_tensor_t *nr_checkpoint_find(const nr_checkpoint_t *ck, const char *name) {
    const s_entry_t *e = s_find(ck, name);
    return e ? e->t : NULL;
}

const char *nr_checkpoint_file_of(const nr_checkpoint_t *ck, const nr_named_tensor_t *t) {
    const s_entry_t *e = t ? s_find(ck, t->name) : NULL;
    return e && e->t == t ? ck->files[e->file].path : ck->path;
}

void nr_checkpoint_drop_pages(const nr_checkpoint_t *ck, const nr_named_tensor_t *t) {
    const s_entry_t *e = t ? s_find(ck, t->name) : NULL;
    if (e && e->t == t && ck->files[e->file].st) nr_safetensors_drop_pages(ck->files[e->file].st, t->data, t->nbytes);
}

int nr_checkpoint_load_f32(const nr_checkpoint_t *ck, const char *name, int ndim, const int64_t *shape, float **out,
                           char *err, size_t errlen) {
    *out = NULL;
    const s_entry_t *e = s_find(ck, name);
    if (!e) return nr_seterr(err, errlen, NR_EMODEL, "%s: missing tensor %s", ck->path, name);
    return nr_named_tensor_to_f32(e->t, ck->files[e->file].path, ndim, shape, out, err, errlen);
}
