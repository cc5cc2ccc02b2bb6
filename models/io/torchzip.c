/* torch.save zip reader (see torchzip.h). The whole file is mmapped and
 * minizip reads the central directory through callbacks over that memory,
 * so both opens share one path; every storage must be stored (method 0) so
 * that tensors point into the mapping. A view whose strides are not
 * row-major (a saved transpose) is copied into reader-owned memory, and
 * only when it has no more elements than its storage, which bounds the
 * copies by the file size. */
#include "models/io/torchzip.h"

#include <errno.h>
#include <fcntl.h>
#include <minizip/unzip.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "models/io/pickle.h"

#define S_MAX_ENTRIES (1u << 20)
#define S_MAX_NAME 1024

typedef struct {
    char *name;     /* below the top folder: "data.pkl", "data/0" */
    uint64_t off;   /* of the entry's bytes in the file (stored entries) */
    uint64_t size;
    int method;
    int usable;     /* stored, not encrypted, inside the file */
} s_entry_t;

struct nr_torchzip {
    char *path;
    const unsigned char *map;
    size_t map_size;
    int mapped;
    nr_named_tensor_t *t;
    size_t n, cap;
    void **owned; /* copies of non-contiguous views */
    size_t nowned, capowned;
    s_entry_t *e; /* only while opening */
    size_t ne;
    size_t visits;
};

/* minizip over memory: the stream is the s_mem_t itself. */
typedef struct {
    const unsigned char *data;
    size_t size, pos;
} s_mem_t;

static voidpf ZCALLBACK s_mopen(voidpf opaque, const void *filename, int mode) {
    (void)filename;
    if (mode & ZLIB_FILEFUNC_MODE_WRITE) return NULL;
    ((s_mem_t *)opaque)->pos = 0;
    return opaque;
}

static uLong ZCALLBACK s_mread(voidpf opaque, voidpf stream, void *buf, uLong size) {
    (void)opaque;
    s_mem_t *m = stream;
    size_t left = m->size - m->pos, n = size < left ? (size_t)size : left;
    if (n) memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (uLong)n;
}

static uLong ZCALLBACK s_mwrite(voidpf opaque, voidpf stream, const void *buf, uLong size) {
    (void)opaque, (void)stream, (void)buf, (void)size;
    return 0;
}

static ZPOS64_T ZCALLBACK s_mtell(voidpf opaque, voidpf stream) {
    (void)opaque;
    return ((s_mem_t *)stream)->pos;
}

static long ZCALLBACK s_mseek(voidpf opaque, voidpf stream, ZPOS64_T offset, int origin) {
    (void)opaque;
    s_mem_t *m = stream;
    uint64_t base = origin == ZLIB_FILEFUNC_SEEK_SET ? 0 : origin == ZLIB_FILEFUNC_SEEK_CUR ? m->pos : m->size;
    if (offset > m->size || base + offset > m->size) return -1;
    m->pos = (size_t)(base + offset);
    return 0;
}

static int ZCALLBACK s_mclose(voidpf opaque, voidpf stream) {
    (void)opaque, (void)stream;
    return 0;
}

static int ZCALLBACK s_merror(voidpf opaque, voidpf stream) {
    (void)opaque, (void)stream;
    return 0;
}

static int s_entry_cmp(const void *a, const void *b) {
    return strcmp(((const s_entry_t *)a)->name, ((const s_entry_t *)b)->name);
}

static const s_entry_t *s_entry(const nr_torchzip_t *tz, const char *name) {
    s_entry_t key = {.name = (char *)name};
    return tz->ne ? bsearch(&key, tz->e, tz->ne, sizeof key, s_entry_cmp) : NULL;
}

/* Lists the entries under the top folder (the first entry's), with the
 * file offsets of stored ones. */
static int s_list(nr_torchzip_t *tz, unzFile uf, char *err, size_t errlen) {
    const char *p = tz->path;
    unz_global_info64 gi;
    if (unzGetGlobalInfo64(uf, &gi) != UNZ_OK) return nr_seterr(err, errlen, NR_EMODEL, "%s: corrupt zip directory", p);
    if (gi.number_entry == 0 || gi.number_entry > S_MAX_ENTRIES)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: zip with %llu entries (1 to %u accepted)", p,
                         (unsigned long long)gi.number_entry, S_MAX_ENTRIES);
    tz->e = calloc((size_t)gi.number_entry, sizeof(*tz->e));
    if (!tz->e) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", p);
    char name[S_MAX_NAME + 1], prefix[S_MAX_NAME + 2] = "";
    size_t plen = 0;
    int zr = unzGoToFirstFile(uf);
    for (uint64_t i = 0; zr == UNZ_OK; i++, zr = unzGoToNextFile(uf)) {
        unz_file_info64 fi;
        if (i >= gi.number_entry)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: zip directory holds more entries than it says", p);
        if (unzGetCurrentFileInfo64(uf, &fi, name, sizeof name, NULL, 0, NULL, 0) != UNZ_OK ||
            fi.size_filename > S_MAX_NAME)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: zip entry %llu: corrupt or overlong name", p,
                             (unsigned long long)i);
        name[fi.size_filename] = 0;
        if (i == 0) {
            const char *slash = strchr(name, '/');
            if (!slash || slash == name)
                return nr_seterr(err, errlen, NR_EMODEL, "%s: first zip entry '%.80s' is not under a top folder", p, name);
            plen = (size_t)(slash - name) + 1;
            memcpy(prefix, name, plen);
            prefix[plen] = 0;
        }
        if (strncmp(name, prefix, plen) != 0 || strlen(name) != fi.size_filename) continue;
        s_entry_t *e = &tz->e[tz->ne];
        if (!(e->name = strdup(name + plen))) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", p);
        tz->ne++;
        e->method = (int)fi.compression_method;
        e->size = fi.uncompressed_size;
        if (fi.compression_method != 0 || (fi.flag & 1) || fi.compressed_size != fi.uncompressed_size) continue;
        if (unzOpenCurrentFile(uf) != UNZ_OK)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: zip entry %s: bad local header", p, name);
        e->off = unzGetCurrentFileZStreamPos64(uf);
        unzCloseCurrentFile(uf); /* nothing read, so no CRC to check */
        e->usable = e->off <= tz->map_size && e->size <= tz->map_size - e->off;
        if (!e->usable)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: zip entry %s runs past the end of the file (truncated)", p, name);
    }
    if (zr != UNZ_END_OF_LIST_OF_FILE) return nr_seterr(err, errlen, NR_EMODEL, "%s: corrupt zip directory", p);
    qsort(tz->e, tz->ne, sizeof(*tz->e), s_entry_cmp);
    for (size_t i = 1; i < tz->ne; i++)
        if (strcmp(tz->e[i - 1].name, tz->e[i].name) == 0)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: zip entry %s%s appears twice", p, prefix, tz->e[i].name);
    return 0;
}

/* The entry `name` (below the top folder) as stored bytes. */
static int s_stored(nr_torchzip_t *tz, const char *name, const s_entry_t **out, char *err, size_t errlen) {
    const s_entry_t *e = s_entry(tz, name);
    *out = NULL;
    if (!e) return nr_seterr(err, errlen, NR_EMODEL, "%s: %s missing from the archive", tz->path, name);
    if (!e->usable)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: %s is compressed (method %d) or encrypted; torch.save stores entries uncompressed: re-save it",
                         tz->path, name, e->method);
    *out = e;
    return 0;
}

static int s_mul(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static int s_addo(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }

static void s_view_str(char *buf, size_t size, const nr_pickle_value_t *v) {
    size_t o = (size_t)snprintf(buf, size, "offset %lld, size (", (long long)v->offset);
    for (int i = 0; i < v->ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)v->shape[i]);
    if (o < size) o += (size_t)snprintf(buf + o, size - o, "), stride (");
    for (int i = 0; i < v->ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)v->stride[i]);
    if (o < size) snprintf(buf + o, size - o, ")");
}

/* Copies a strided view (all indices checked in the caller) row-major. */
static void s_gather(unsigned char *dst, const unsigned char *base, size_t es, const nr_pickle_value_t *v) {
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    for (int i = 0; i < v->ndim; i++) {
        sh[4 - v->ndim + i] = v->shape[i];
        st[4 - v->ndim + i] = v->stride[i];
    }
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t d = 0; d < sh[3]; d++) {
                    int64_t idx = v->offset + a * st[0] + b * st[1] + c * st[2] + d * st[3];
                    memcpy(dst, base + (size_t)idx * es, es);
                    dst += es;
                }
}

static int s_grow_owned(nr_torchzip_t *tz) {
    if (tz->nowned < tz->capowned) return 0;
    size_t nc = tz->capowned ? tz->capowned * 2 : 8;
    void **q = realloc(tz->owned, nc * sizeof(*q));
    if (!q) return NR_ENOMEM;
    tz->owned = q;
    tz->capowned = nc;
    return 0;
}

static int s_add_tensor(nr_torchzip_t *tz, const char *name, const nr_pickle_value_t *v, char *err, size_t errlen) {
    const char *p = tz->path;
    const nr_pickle_value_t *sv = v->storage;
    char key[80];
    snprintf(key, sizeof key, "data/%.*s", (int)sv->len, sv->s);
    const s_entry_t *e = NULL;
    if (!s_entry(tz, key))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: storage %s missing from the archive", p, name, key);
    int rc = s_stored(tz, key, &e, err, errlen);
    if (rc) return rc;
    size_t es = nr_dtype_size(v->dtype);
    uint64_t snumel = (uint64_t)sv->i, sbytes;
    if (s_mul(snumel, es, &sbytes) || sbytes != e->size)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: storage %s holds %llu bytes, not %llu %s elements", p,
                         name, key, (unsigned long long)e->size, (unsigned long long)snumel, nr_dtype_name(v->dtype));
    uint64_t numel = 1, last = (uint64_t)v->offset, span;
    int contiguous = 1;
    uint64_t want = 1; /* row-major stride of the current dim */
    for (int i = v->ndim - 1; i >= 0; i--) {
        uint64_t n = (uint64_t)v->shape[i];
        if (n > 1 && (uint64_t)v->stride[i] != want) contiguous = 0;
        if (s_mul(numel, n, &numel) || (n > 0 && (s_mul(n - 1, (uint64_t)v->stride[i], &span) || s_addo(last, span, &last))) ||
            s_mul(want, n ? n : 1, &want)) {
            numel = UINT64_MAX;
            break;
        }
    }
    char view[200];
    if (numel == 0 ? (uint64_t)v->offset > snumel : (numel == UINT64_MAX || last >= snumel)) {
        s_view_str(view, sizeof view, v);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: view [%s] runs past its storage %s of %llu elements", p,
                         name, view, key, (unsigned long long)snumel);
    }
    const unsigned char *base = tz->map + e->off;
    nr_named_tensor_t t = {.dtype = v->dtype, .ndim = v->ndim};
    memcpy(t.shape, v->shape, sizeof t.shape);
    t.nbytes = (size_t)(numel * es);
    if (numel == 0 || contiguous) {
        t.data = base + (size_t)v->offset * es;
    } else {
        if (numel > snumel) {
            s_view_str(view, sizeof view, v);
            return nr_seterr(err, errlen, NR_EMODEL,
                             "%s: tensor %s: strided view [%s] has more elements than its storage %s (overlapping view refused)",
                             p, name, view, key);
        }
        unsigned char *copy = malloc(t.nbytes);
        if (!copy || s_grow_owned(tz)) {
            free(copy);
            return nr_seterr(err, errlen, NR_ENOMEM, "%s: tensor %s: out of memory", p, name);
        }
        s_gather(copy, base, es, v);
        tz->owned[tz->nowned++] = copy;
        t.data = copy;
    }
    if (tz->n == tz->cap) {
        size_t nc = tz->cap ? tz->cap * 2 : 64;
        nr_named_tensor_t *q = realloc(tz->t, nc * sizeof(*q));
        if (!q) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", p);
        tz->t = q;
        tz->cap = nc;
    }
    if (!(t.name = strdup(name))) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", p);
    tz->t[tz->n++] = t;
    return 0;
}

/* Walks a dict into dotted names: tensors are kept, dicts flattened, plain
 * values (ints, strings, lists of them) skipped. */
static int s_flatten(nr_torchzip_t *tz, const nr_pickle_value_t *d, char *name, size_t nlen, int depth, char *err,
                     size_t errlen) {
    const char *p = tz->path;
    if (depth > NR_PICKLE_MAX_DEPTH)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: dicts nested deeper than %d (or a dict that holds itself)", p,
                         NR_PICKLE_MAX_DEPTH);
    for (size_t i = 0; i + 1 < d->n; i += 2) {
        const nr_pickle_value_t *k = d->items[i], *v = d->items[i + 1];
        if (++tz->visits > NR_PICKLE_MAX_ITEMS)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: more than %u dict entries to walk", p, NR_PICKLE_MAX_ITEMS);
        if (v->kind != NR_PICKLE_TENSOR && v->kind != NR_PICKLE_DICT) continue;
        char kbuf[32];
        const char *ks;
        size_t kl;
        if (k->kind == NR_PICKLE_STR) {
            ks = k->s;
            kl = k->len;
            if (memchr(ks, 0, kl))
                return nr_seterr(err, errlen, NR_EMODEL, "%s: key with a NUL byte refused", p);
        } else if (k->kind == NR_PICKLE_INT) { /* optimizer state is keyed by ints */
            kl = (size_t)snprintf(kbuf, sizeof kbuf, "%lld", (long long)k->i);
            ks = kbuf;
        } else {
            return nr_seterr(err, errlen, NR_EMODEL, "%s: dict key of type %s refused (str or int expected)", p,
                             k->kind == NR_PICKLE_TUPLE ? "tuple" : k->kind == NR_PICKLE_FLOAT ? "float" : "other");
        }
        size_t need = nlen + (nlen ? 1 : 0) + kl;
        if (need > S_MAX_NAME)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor name longer than %d bytes", p, S_MAX_NAME);
        size_t o = nlen;
        if (nlen) name[o++] = '.';
        memcpy(name + o, ks, kl);
        name[need] = 0;
        int rc = v->kind == NR_PICKLE_TENSOR ? s_add_tensor(tz, name, v, err, errlen)
                                             : s_flatten(tz, v, name, need, depth + 1, err, errlen);
        name[nlen] = 0;
        if (rc) return rc;
    }
    return 0;
}

static int s_name_cmp(const void *a, const void *b) {
    return strcmp((*(const nr_named_tensor_t *const *)a)->name, (*(const nr_named_tensor_t *const *)b)->name);
}

static int s_parse(nr_torchzip_t *tz, char *err, size_t errlen) {
    const char *p = tz->path;
    const unsigned char *m = tz->map;
    if (tz->map_size == 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: empty file, not a torch checkpoint", p);
    if (tz->map_size >= 2 && m[0] == 0x80 && m[1] <= 5)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: legacy torch.save format (a bare pickle, PyTorch before 1.6) refused: it cannot be read "
                         "without running code; re-save it with a current PyTorch (torch.save(torch.load(f), f2))",
                         p);
    if (tz->map_size < 4 || m[0] != 'P' || m[1] != 'K')
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a torch zip checkpoint (no zip signature)", p);
    s_mem_t mem = {.data = m, .size = tz->map_size};
    zlib_filefunc64_def ff = {.zopen64_file = s_mopen, .zread_file = s_mread, .zwrite_file = s_mwrite,
                              .ztell64_file = s_mtell, .zseek64_file = s_mseek, .zclose_file = s_mclose,
                              .zerror_file = s_merror, .opaque = &mem};
    unzFile uf = unzOpen2_64(p, &ff);
    if (!uf)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a readable zip (truncated or corrupt: no central directory)", p);
    int rc = s_list(tz, uf, err, errlen);
    unzClose(uf);
    if (rc) return rc;
    const s_entry_t *e = s_entry(tz, "byteorder");
    if (e) {
        if ((rc = s_stored(tz, "byteorder", &e, err, errlen))) return rc;
        const char *b = (const char *)m + e->off;
        if (!((e->size == 6 || (e->size == 7 && b[6] == '\n')) && memcmp(b, "little", 6) == 0))
            return nr_seterr(err, errlen, NR_EMODEL, "%s: byteorder is '%.*s': only little-endian checkpoints are read", p,
                             (int)(e->size < 16 ? e->size : 16), b);
    }
    if ((rc = s_stored(tz, "data.pkl", &e, err, errlen))) return rc;
    nr_pickle_t *pk = NULL;
    if ((rc = nr_pickle_load(m + e->off, (size_t)e->size, p, &pk, err, errlen))) return rc;
    const nr_pickle_value_t *root = nr_pickle_root(pk);
    char name[S_MAX_NAME + 1] = "";
    if (root->kind == NR_PICKLE_TENSOR) /* torch.save(tensor): a style pack, one entry named "" */
        rc = s_add_tensor(tz, name, root, err, errlen);
    else if (root->kind != NR_PICKLE_DICT)
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: data.pkl holds a value other than a dict or a tensor", p);
    else
        rc = s_flatten(tz, root, name, 0, 0, err, errlen);
    nr_pickle_destroy(&pk);
    if (rc) return rc;
    if (tz->n > 1) {
        const nr_named_tensor_t **by = malloc(tz->n * sizeof(*by));
        if (!by) return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", p);
        for (size_t i = 0; i < tz->n; i++) by[i] = &tz->t[i];
        qsort(by, tz->n, sizeof(*by), s_name_cmp);
        for (size_t i = 1; i < tz->n && rc == 0; i++)
            if (strcmp(by[i - 1]->name, by[i]->name) == 0)
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s appears twice", p, by[i]->name);
        free(by);
    }
    return rc;
}

static void s_free_entries(nr_torchzip_t *tz) {
    for (size_t i = 0; i < tz->ne; i++) free(tz->e[i].name);
    free(tz->e);
    tz->e = NULL;
    tz->ne = 0;
}

static int s_open_finish(nr_torchzip_t *tz, nr_torchzip_t **out, char *err, size_t errlen) {
    int rc = s_parse(tz, err, errlen);
    s_free_entries(tz);
    if (rc != 0) {
        nr_torchzip_close(&tz);
        return rc;
    }
    *out = tz;
    return 0;
}

int nr_torchzip_open(const char *path, nr_torchzip_t **out, char *err, size_t errlen) {
    if (!out || !path) return nr_seterr(err, errlen, NR_EINVAL, "torchzip: no path");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nr_seterr(err, errlen, errno == ENOENT ? NR_EMODEL : NR_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return nr_seterr(err, errlen, NR_EIO, "%s: not a regular file", path);
    }
    nr_torchzip_t *tz = calloc(1, sizeof(*tz));
    if (!tz || !(tz->path = strdup(path))) {
        free(tz);
        close(fd);
        return nr_seterr(err, errlen, NR_ENOMEM, "%s: out of memory", path);
    }
    tz->map_size = (size_t)sb.st_size;
    if (tz->map_size > 0) {
        void *mp = mmap(NULL, tz->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mp == MAP_FAILED) {
            int e = errno;
            close(fd);
            nr_torchzip_close(&tz);
            return nr_seterr(err, errlen, NR_EIO, "%s: mmap failed: %s", path, strerror(e));
        }
        tz->map = mp;
        tz->mapped = 1;
    }
    close(fd);
    return s_open_finish(tz, out, err, errlen);
}

int nr_torchzip_open_memory(const void *data, size_t size, const char *name, nr_torchzip_t **out, char *err,
                            size_t errlen) {
    if (!out) return NR_EINVAL;
    *out = NULL;
    nr_torchzip_t *tz = calloc(1, sizeof(*tz));
    if (!tz || !(tz->path = strdup(name ? name : "(memory)"))) {
        free(tz);
        return nr_seterr(err, errlen, NR_ENOMEM, "torchzip: out of memory");
    }
    tz->map = data;
    tz->map_size = data ? size : 0;
    return s_open_finish(tz, out, err, errlen);
}

void nr_torchzip_close(nr_torchzip_t **ptz) {
    if (!ptz || !*ptz) return;
    nr_torchzip_t *tz = *ptz;
    if (tz->mapped) munmap((void *)tz->map, tz->map_size);
    for (size_t i = 0; i < tz->n; i++) free((void *)tz->t[i].name);
    for (size_t i = 0; i < tz->nowned; i++) free(tz->owned[i]);
    s_free_entries(tz);
    free(tz->owned);
    free(tz->t);
    free(tz->path);
    free(tz);
    *ptz = NULL;
}

const char *nr_torchzip_path(const nr_torchzip_t *tz) { return tz->path; }
size_t nr_torchzip_count(const nr_torchzip_t *tz) { return tz->n; }
const nr_named_tensor_t *nr_torchzip_at(const nr_torchzip_t *tz, size_t i) { return i < tz->n ? &tz->t[i] : NULL; }

const nr_named_tensor_t *nr_torchzip_find(const nr_torchzip_t *tz, const char *name) {
    for (size_t i = 0; i < tz->n; i++)
        if (strcmp(tz->t[i].name, name) == 0) return &tz->t[i];
    return NULL;
}
