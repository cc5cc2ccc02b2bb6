/* safetensors reader: mmap + cJSON header parse + full validation. Layout:
 * u64 little-endian N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data section; offsets are relative to the data section. */
#include "models/io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

struct nr_safetensors {
    char *path;
    const unsigned char *map;
    size_t map_size;
    int mapped;
    nr_named_tensor_t *t;
    size_t n;
    char *names; /* all names, NUL-separated */
};

static int s_cmp_begin(const void *a, const void *b) {
    const nr_named_tensor_t *x = a, *y = b;
    const unsigned char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py ? 1 : 0;
}

/* Parses and validates the header; fills st->t. */
static int s_parse(nr_safetensors_t *st, char *err, size_t errlen) {
    const char *p = st->path;
    if (st->map_size < 8)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a safetensors file (%zu bytes, less than the 8-byte header length)",
                         p, st->map_size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->map[i];
    if (hlen < 2 || hlen > NR_SAFETENSORS_MAX_HEADER)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: bad safetensors header length %llu (file %zu bytes)", p,
                         (unsigned long long)hlen, st->map_size);
    if (hlen > st->map_size - 8)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: truncated: header length %llu exceeds the file (%zu bytes)", p,
                         (unsigned long long)hlen, st->map_size);
    const char *json = (const char *)st->map + 8;
    const unsigned char *data = st->map + 8 + hlen;
    size_t data_size = st->map_size - 8 - (size_t)hlen;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: safetensors header is not a well-formed JSON object", p);
    }
    /* Only whitespace may follow the object (the format pads with spaces). */
    for (const char *q = end ? end : json + hlen; q < json + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\0') {
            cJSON_Delete(root);
            return nr_seterr(err, errlen, NR_EMODEL, "%s: trailing bytes after the safetensors JSON header", p);
        }
    }
    size_t count = 0, names_len = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        if (!it->string) continue;
        if (strcmp(it->string, "__metadata__") == 0) continue;
        count++;
        names_len += strlen(it->string) + 1;
    }
    int rc = 0;
    st->t = calloc(count ? count : 1, sizeof(*st->t));
    st->names = malloc(names_len ? names_len : 1);
    if (!st->t || !st->names) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory reading the header", p);
    }
    char *np = st->names;
    size_t k = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        if (!it->string || strcmp(it->string, "__metadata__") == 0) {
            if (it->string && !cJSON_IsObject(it)) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: __metadata__ is not an object", p);
                goto out;
            }
            continue;
        }
        const char *name = it->string;
        nr_named_tensor_t *t = &st->t[k];
        size_t nl = strlen(name) + 1;
        memcpy(np, name, nl);
        t->name = np;
        np += nl;
        if (!cJSON_IsObject(it)) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: entry is not an object", p, name);
            goto out;
        }
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: needs dtype (string), shape (array), data_offsets ([begin, end])",
                           p, name);
            goto out;
        }
        int d = nr_dtype_from_name(dt->valuestring);
        if (d < 0) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: unknown dtype %s", p,
                           name, dt->valuestring);
            goto out;
        }
        t->dtype = (nr_dtype_t)d;
        int nd = cJSON_GetArraySize(sh);
        if (nd > NR_TENSOR_MAX_DIMS) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: %d dimensions (at most %d supported)", p, name, nd,
                           NR_TENSOR_MAX_DIMS);
            goto out;
        }
        t->ndim = nd;
        uint64_t numel = 1;
        int i = 0;
        for (cJSON *e = sh->child; e; e = e->next, i++) {
            double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (v < 0 || v > 9.0e15 || v != floor(v)) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: bad shape entry %d", p, name, i);
                goto out;
            }
            t->shape[i] = (int64_t)v;
            if (t->shape[i] != 0 && numel > (UINT64_MAX / 16) / (uint64_t)t->shape[i]) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: shape too large", p, name);
                goto out;
            }
            numel *= (uint64_t)t->shape[i];
        }
        double b = cJSON_IsNumber(off->child) ? off->child->valuedouble : -1;
        double e = cJSON_IsNumber(off->child->next) ? off->child->next->valuedouble : -1;
        if (b < 0 || e < b || b != floor(b) || e != floor(e) || e > 1.8e19) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: bad data_offsets", p, name);
            goto out;
        }
        uint64_t ub = (uint64_t)b, ue = (uint64_t)e;
        if (ue > data_size) {
            rc = nr_seterr(err, errlen, NR_EMODEL,
                           "%s: tensor %s: data_offsets [%llu, %llu] outside the data section (%zu bytes): file truncated or corrupt",
                           p, name, (unsigned long long)ub, (unsigned long long)ue, data_size);
            goto out;
        }
        uint64_t want = numel * nr_dtype_size(t->dtype);
        if (want != ue - ub) {
            rc = nr_seterr(err, errlen, NR_EMODEL,
                           "%s: tensor %s: shape x dtype size is %llu bytes but data_offsets span %llu", p, name,
                           (unsigned long long)want, (unsigned long long)(ue - ub));
            goto out;
        }
        t->data = data + ub;
        t->nbytes = (size_t)want;
        k++;
    }
    st->n = k;
    for (size_t i = 0; i < st->n; i++)
        for (size_t j = i + 1; j < st->n; j++)
            if (strcmp(st->t[i].name, st->t[j].name) == 0) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s appears twice in the header", p, st->t[i].name);
                goto out;
            }
    /* Sort by begin and check that ranges do not overlap. */
    qsort(st->t, st->n, sizeof(*st->t), s_cmp_begin);
    for (size_t i = 1; i < st->n; i++) {
        const unsigned char *prev_end = (const unsigned char *)st->t[i - 1].data + st->t[i - 1].nbytes;
        if ((const unsigned char *)st->t[i].data < prev_end) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensors %s and %s overlap", p, st->t[i - 1].name,
                           st->t[i].name);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* The end both opens share: parses the header; hands st over in *out, or
 * frees it on error. */
static int s_open_finish(nr_safetensors_t *st, nr_safetensors_t **out, char *err, size_t errlen) {
    int rc = s_parse(st, err, errlen);
    if (rc != 0) {
        nr_safetensors_close(&st);
        return rc;
    }
    *out = st;
    return 0;
}

int nr_safetensors_open(const char *path, nr_safetensors_t **out, char *err, size_t errlen) {
    if (!out || !path) return nr_seterr(err, errlen, NR_EINVAL, "safetensors: no path");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nr_seterr(err, errlen, errno == ENOENT ? NR_EMODEL : NR_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return nr_seterr(err, errlen, NR_EIO, "%s: not a regular file", path);
    }
    nr_safetensors_t *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        free(st);
        close(fd);
        return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
    }
    st->map_size = (size_t)sb.st_size;
    if (st->map_size > 0) {
        void *m = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            nr_safetensors_close(&st);
            return nr_seterr(err, errlen, NR_EIO, "%s: mmap failed: %s", path, strerror(e));
        }
        st->map = m;
        st->mapped = 1;
    }
    close(fd);
    return s_open_finish(st, out, err, errlen);
}

int nr_safetensors_open_memory(const void *data, size_t size, const char *name, nr_safetensors_t **out, char *err,
                               size_t errlen) {
    if (!out) return NR_EINVAL;
    *out = NULL;
    nr_safetensors_t *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(name ? name : "(memory)"))) {
        free(st);
        return nr_seterr(err, errlen, NR_ENOMEM, "safetensors: out of memory");
    }
    st->map = data;
    st->map_size = data ? size : 0;
    return s_open_finish(st, out, err, errlen);
}

void nr_safetensors_drop_pages(const nr_safetensors_t *st, const void *data, size_t n) {
    if (!st || !st->mapped || !data) return;
    const uintptr_t lo = (uintptr_t)data, hi = lo + n, m = (uintptr_t)st->map;
    if (lo < m || hi > m + st->map_size || hi < lo) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (lo + page - 1) / page * page, b = hi / page * page;
    /* a private read-only file mapping: the pages come back from the file */
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void nr_safetensors_close(nr_safetensors_t **pst) {
    if (!pst || !*pst) return;
    nr_safetensors_t *st = *pst;
    if (st->mapped) munmap((void *)st->map, st->map_size);
    free(st->t);
    free(st->names);
    free(st->path);
    free(st);
    *pst = NULL;
}

const char *nr_safetensors_path(const nr_safetensors_t *st) { return st->path; }
size_t nr_safetensors_count(const nr_safetensors_t *st) { return st->n; }
const nr_named_tensor_t *nr_safetensors_at(const nr_safetensors_t *st, size_t i) {
    return i < st->n ? &st->t[i] : NULL;
}

const nr_named_tensor_t *nr_safetensors_find(const nr_safetensors_t *st, const char *name) {
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

int nr_safetensors_load_f32(const nr_safetensors_t *st, const char *name, int ndim, const int64_t *shape,
                            float **out, char *err, size_t errlen) {
    *out = NULL;
    const nr_named_tensor_t *t = nr_safetensors_find(st, name);
    if (!t) return nr_seterr(err, errlen, NR_EMODEL, "%s: missing tensor %s", st->path, name);
    return nr_named_tensor_to_f32(t, st->path, ndim, shape, out, err, errlen);
}

int nr_safetensors_write(const char *path, const nr_named_tensor_t *tensors, size_t n, char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, tensors[i].name);
        cJSON_AddStringToObject(e, "dtype", nr_dtype_name(tensors[i].dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < tensors[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)tensors[i].shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += tensors[i].nbytes;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
    size_t jl = strlen(json);
    size_t padded = (jl + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    int rc = 0;
    if (!f) {
        free(json);
        return nr_seterr(err, errlen, NR_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    unsigned char hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (fwrite(hl, 1, 8, f) != 8 || fwrite(json, 1, jl, f) != jl) rc = NR_EIO;
    for (size_t i = jl; i < padded && rc == 0; i++)
        if (fputc(' ', f) == EOF) rc = NR_EIO;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (tensors[i].nbytes && fwrite(tensors[i].data, 1, tensors[i].nbytes, f) != tensors[i].nbytes) rc = NR_EIO;
    if (fclose(f) != 0) rc = NR_EIO;
    free(json);
    if (rc) return nr_seterr(err, errlen, NR_EIO, "%s: write failed", path);
    return 0;
}
