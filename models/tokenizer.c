/* GPT-2 byte-level BPE tokenizer. Tokens are kept as raw bytes (the vocab's
 * printable spelling mapped back through GPT-2's byte<->unicode table), so
 * a word starts as one token per byte and merges join token ids by rank. */
#include "models/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "models/config.h"
#include "models/text/cleanup.h"
#include "models/tokenizer_unicode.h"

#define S_MAX_FILE ((size_t)64 << 20)

/* Open-addressing hash map: byte string -> id, or pair key -> merge. */
typedef struct {
    uint64_t key;  /* pair (a << 32 | b) for merges; hash for strings */
    int32_t id;    /* token id (strings) or merged id (pairs); -1 = empty slot */
    int32_t rank;  /* merge rank (pairs) */
} s_slot_t;

struct nr_tokenizer {
    int n_ids;              /* largest id + 1 */
    char *pool;             /* raw bytes of every token */
    size_t pool_len, pool_cap;
    size_t *off;            /* (n_ids) offset of token bytes in pool; SIZE_MAX = no token */
    uint32_t *len;          /* (n_ids) */
    unsigned char *special; /* (n_ids) */
    s_slot_t *vocab;        /* raw bytes -> id */
    size_t vocab_cap;
    s_slot_t *merges;       /* (a, b) -> rank, merged id */
    size_t merges_cap;
    int byte_id[256];       /* id of the one-byte token for each byte */
    int unk_bytes;          /* 1 if some byte has no token (corrupt vocab) */
};

/* ---- GPT-2 byte <-> unicode map ---------------------------------------------- */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes ('!'..'~', 0xA1..0xAC,
 * 0xAE..0xFF) stand for themselves; the 68 others (0x00..0x20, 0x7F..0xA0,
 * 0xAD), in order, are U+0100 onwards. Returns the byte for a code point of
 * that map, or -1. */
static int s_unicode_to_byte(uint32_t cp) {
    if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t i = cp - 256;
    if (i < 33) return (int)i;
    if (i < 67) return (int)(127 + i - 33);
    return 0xAD;
}

/* ---- hashing ------------------------------------------------------------------ */

static uint64_t s_mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static int s_vocab_find(const nr_tokenizer_t *t, const char *s, size_t n) {
    if (!t->vocab) return -1;
    uint64_t h = nr_hash_bytes(s, n);
    size_t mask = t->vocab_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const s_slot_t *sl = &t->vocab[i];
        if (sl->id < 0) return -1;
        if (sl->key == h && t->len[sl->id] == n && memcmp(t->pool + t->off[sl->id], s, n) == 0) return sl->id;
    }
}

static void s_vocab_insert(nr_tokenizer_t *t, int id) {
    uint64_t h = nr_hash_bytes(t->pool + t->off[id], t->len[id]);
    size_t mask = t->vocab_cap - 1;
    size_t i = h & mask;
    while (t->vocab[i].id >= 0) i = (i + 1) & mask;
    t->vocab[i].key = h;
    t->vocab[i].id = id;
}

static const s_slot_t *s_merge_find(const nr_tokenizer_t *t, int a, int b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->merges_cap - 1;
    for (size_t i = s_mix(key) & mask;; i = (i + 1) & mask) {
        const s_slot_t *sl = &t->merges[i];
        if (sl->id < 0) return NULL;
        if (sl->key == key) return sl;
    }
}

static size_t s_pow2(size_t n) {
    size_t c = 16;
    while (c < n * 2) c <<= 1;
    return c;
}

/* ---- loading ------------------------------------------------------------------ */

/* Converts a vocab spelling (UTF-8 of mapped code points) to raw bytes in
 * out (at least strlen(s) bytes). Code points outside the byte map (only in
 * added tokens) are kept as their UTF-8. Returns the length or -1 if s is
 * not UTF-8. */
static long s_unmap(const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = nr_utf8_decode((const uint8_t *)s + i, n - i, &cp, NULL);
        if (k == 0) return -1;
        int b = s_unicode_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    return (long)o;
}

static int s_add_token(nr_tokenizer_t *t, const char *spelling, int id, const char *path, char *err, size_t errlen) {
    size_t n = strlen(spelling);
    if (t->pool_len + n > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 20;
        while (cap < t->pool_len + n) cap *= 2;
        char *np = realloc(t->pool, cap);
        if (!np) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
        t->pool = np;
        t->pool_cap = cap;
    }
    long k = s_unmap(spelling, n, t->pool + t->pool_len);
    if (k < 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: token %d is not valid UTF-8", path, id);
    if (t->off[id] != SIZE_MAX) return nr_seterr(err, errlen, NR_EMODEL, "%s: id %d appears twice", path, id);
    t->off[id] = t->pool_len;
    t->len[id] = (uint32_t)k;
    t->pool_len += (size_t)k;
    return 0;
}

/* Fills the vocabulary from a JSON object {"token": id, ...}. */
static int s_load_vocab(nr_tokenizer_t *t, const cJSON *obj, const char *path, char *err, size_t errlen) {
    if (!cJSON_IsObject(obj)) return nr_seterr(err, errlen, NR_EMODEL, "%s: vocabulary is not a JSON object", path);
    int count = 0, max_id = -1;
    for (const cJSON *e = obj->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !e->string || e->valuedouble < 0 || e->valuedouble > 10000000 ||
            e->valuedouble != (double)e->valueint)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: entry \"%.40s\" has no valid id", path,
                             e->string ? e->string : "?");
        if (e->valueint > max_id) max_id = e->valueint;
        count++;
    }
    if (count == 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: empty vocabulary", path);
    t->n_ids = max_id + 1;
    t->off = malloc(sizeof(size_t) * (size_t)t->n_ids);
    t->len = calloc((size_t)t->n_ids, sizeof(uint32_t));
    t->special = calloc((size_t)t->n_ids, 1);
    t->vocab_cap = s_pow2((size_t)count);
    t->vocab = malloc(sizeof(s_slot_t) * t->vocab_cap);
    if (!t->off || !t->len || !t->special || !t->vocab)
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
    for (int i = 0; i < t->n_ids; i++) t->off[i] = SIZE_MAX;
    for (size_t i = 0; i < t->vocab_cap; i++) t->vocab[i].id = -1;
    for (const cJSON *e = obj->child; e; e = e->next) {
        int rc = s_add_token(t, e->string, e->valueint, path, err, errlen);
        if (rc < 0) return rc;
    }
    for (int id = 0; id < t->n_ids; id++)
        if (t->off[id] != SIZE_MAX) {
            if (s_vocab_find(t, t->pool + t->off[id], t->len[id]) >= 0)
                return nr_seterr(err, errlen, NR_EMODEL, "%s: two tokens spell the same bytes (id %d)", path, id);
            s_vocab_insert(t, id);
        }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = s_vocab_find(t, &c, 1);
        if (t->byte_id[b] < 0) t->unk_bytes = 1;
    }
    if (t->unk_bytes)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a byte-level vocabulary (a one-byte token is missing)", path);
    int eot = s_vocab_find(t, "<|endoftext|>", 13);
    if (eot >= 0) t->special[eot] = 1;
    return 0;
}

static int s_merges_alloc(nr_tokenizer_t *t, size_t n) {
    t->merges_cap = s_pow2(n ? n : 1);
    t->merges = malloc(sizeof(s_slot_t) * t->merges_cap);
    if (!t->merges) return NR_ENOMEM;
    for (size_t i = 0; i < t->merges_cap; i++) t->merges[i].id = -1;
    return 0;
}

/* Adds merge `rank`: spellings a and b (NUL-terminated). */
static int s_add_merge(nr_tokenizer_t *t, const char *a, size_t na, const char *b, size_t nb, int rank,
                       const char *path, char *err, size_t errlen) {
    char *buf = malloc(na + nb + 2);
    if (!buf) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for merges");
    long ka = s_unmap(a, na, buf);
    long kb = ka >= 0 ? s_unmap(b, nb, buf + ka) : -1;
    int ia = ka >= 0 ? s_vocab_find(t, buf, (size_t)ka) : -1;
    int ib = kb >= 0 ? s_vocab_find(t, buf + ka, (size_t)kb) : -1;
    int im = kb >= 0 ? s_vocab_find(t, buf, (size_t)(ka + kb)) : -1;
    free(buf);
    if (ia < 0 || ib < 0 || im < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: merge %d (\"%.*s %.*s\") uses a token not in the vocabulary",
                         path, rank + 1, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    size_t mask = t->merges_cap - 1;
    size_t i = s_mix(key) & mask;
    while (t->merges[i].id >= 0) {
        if (t->merges[i].key == key) return 0; /* duplicate: the first (lowest) rank wins */
        i = (i + 1) & mask;
    }
    t->merges[i].key = key;
    t->merges[i].id = im;
    t->merges[i].rank = rank;
    return 0;
}

static int s_load_merges_txt(nr_tokenizer_t *t, char *text, size_t len, const char *path, char *err,
                             size_t errlen) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (s_merges_alloc(t, lines) < 0) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for merges");
    int rank = 0, lineno = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(le - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        if (lineno == 1 && n >= 1 && p[0] == '#') { /* "#version: 0.2" */
        } else if (n > 0) {
            char *sp = memchr(p, ' ', n);
            if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', (size_t)(p + n - sp - 1)))
                return nr_seterr(err, errlen, NR_EMODEL, "%s: line %d is not \"A B\"", path, lineno);
            int rc = s_add_merge(t, p, (size_t)(sp - p), sp + 1, (size_t)(p + n - sp - 1), rank, path, err, errlen);
            if (rc < 0) return rc;
            rank++;
        }
        p = le + 1;
    }
    if (rank == 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: no merges", path);
    return 0;
}

static nr_tokenizer_t *s_new(void) { return calloc(1, sizeof(nr_tokenizer_t)); }

void nr_tokenizer_destroy(nr_tokenizer_t **tok) {
    if (!tok || !*tok) return;
    nr_tokenizer_t *t = *tok;
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->special);
    free(t->vocab);
    free(t->merges);
    free(t);
    *tok = NULL;
}

int nr_tokenizer_load_files(const char *vocab_path, const char *merges_path, nr_tokenizer_t **out, char *err,
                            size_t errlen) {
    if (!vocab_path || !merges_path || !out) return nr_seterr(err, errlen, NR_EINVAL, "tokenizer: bad arguments");
    *out = NULL;
    size_t len = 0;
    char *text = nr_model_read_file(vocab_path, S_MAX_FILE, &len);
    if (!text) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read the vocabulary", vocab_path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return nr_seterr(err, errlen, NR_EMODEL, "%s: not valid JSON", vocab_path);
    nr_tokenizer_t *t = s_new();
    int rc = t ? s_load_vocab(t, root, vocab_path, err, errlen) : nr_seterr(err, errlen, NR_ENOMEM, "no memory");
    cJSON_Delete(root);
    if (rc == 0) {
        text = nr_model_read_file(merges_path, S_MAX_FILE, &len);
        if (!text) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read the merges", merges_path);
        } else {
            rc = s_load_merges_txt(t, text, len, merges_path, err, errlen);
            free(text);
        }
    }
    if (rc < 0) {
        nr_tokenizer_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int nr_tokenizer_load_json(const char *path, nr_tokenizer_t **out, char *err, size_t errlen) {
    if (!path || !out) return nr_seterr(err, errlen, NR_EINVAL, "tokenizer: bad arguments");
    *out = NULL;
    size_t len = 0;
    char *text = nr_model_read_file(path, S_MAX_FILE, &len);
    if (!text) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read", path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return nr_seterr(err, errlen, NR_EMODEL, "%s: not valid JSON", path);
    nr_tokenizer_t *t = s_new();
    int rc = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!t) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory");
    } else if (!cJSON_IsObject(model) || (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0))) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: model is not a BPE model", path);
    } else if ((rc = s_load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path, err, errlen)) < 0) {
    } else if (!cJSON_IsArray(merges) || cJSON_GetArraySize(merges) == 0) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: model.merges is missing or empty", path);
    } else if (s_merges_alloc(t, (size_t)cJSON_GetArraySize(merges)) < 0) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory for merges");
    } else {
        int rank = 0;
        for (const cJSON *m = merges->child; m && rc == 0; m = m->next, rank++) {
            if (cJSON_IsString(m)) { /* "A B" */
                const char *s = m->valuestring, *sp = strchr(s, ' ');
                if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
                    rc = nr_seterr(err, errlen, NR_EMODEL, "%s: merge %d is not \"A B\"", path, rank + 1);
                else
                    rc = s_add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, path, err, errlen);
            } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                       cJSON_IsString(m->child->next)) { /* ["A", "B"] (newer files) */
                const char *a = m->child->valuestring, *b = m->child->next->valuestring;
                rc = s_add_merge(t, a, strlen(a), b, strlen(b), rank, path, err, errlen);
            } else {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: merge %d is malformed", path, rank + 1);
            }
        }
    }
    if (rc == 0) { /* added tokens: mark the special ones */
        const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
        const cJSON *a;
        cJSON_ArrayForEach(a, added) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(a, "special");
            if (cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < t->n_ids && cJSON_IsTrue(sp))
                t->special[id->valueint] = 1;
        }
    }
    cJSON_Delete(root);
    if (rc < 0) {
        nr_tokenizer_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

static int s_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

int nr_tokenizer_load(const char *dir, nr_tokenizer_t **out, char *err, size_t errlen) {
    if (!dir || !out) return nr_seterr(err, errlen, NR_EINVAL, "tokenizer: bad arguments");
    *out = NULL;
    size_t n = strlen(dir) + 32;
    char *v = malloc(n), *m = malloc(n), *j = malloc(n);
    int rc;
    if (!v || !m || !j) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "no memory");
    } else {
        snprintf(v, n, "%s/vocab.json", dir);
        snprintf(m, n, "%s/merges.txt", dir);
        snprintf(j, n, "%s/tokenizer.json", dir);
        if (s_exists(v) && s_exists(m))
            rc = nr_tokenizer_load_files(v, m, out, err, errlen);
        else if (s_exists(j))
            rc = nr_tokenizer_load_json(j, out, err, errlen);
        else
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: no vocab.json + merges.txt and no tokenizer.json", dir);
    }
    free(v);
    free(m);
    free(j);
    return rc;
}

int nr_tokenizer_vocab_size(const nr_tokenizer_t *tok) { return tok ? tok->n_ids : 0; }

int nr_tokenizer_token_id(const nr_tokenizer_t *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    char *buf = malloc(n + 1);
    if (!buf) return -1;
    long k = s_unmap(token, n, buf);
    int id = k >= 0 ? s_vocab_find(tok, buf, (size_t)k) : -1;
    free(buf);
    return id;
}

int nr_tokenizer_is_special(const nr_tokenizer_t *tok, int id) {
    return tok && id >= 0 && id < tok->n_ids && tok->special[id];
}

/* ---- pre-tokenization ------------------------------------------------------------ */

/* 0 other, 1 letter, 2 number. */
static int s_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return 1;
        if (cp >= '0' && cp <= '9') return 2;
        return 0;
    }
    size_t lo = 0, hi = sizeof(s_uranges) / sizeof(s_uranges[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < s_uranges[mid].lo) hi = mid;
        else if (cp > s_uranges[mid].hi) lo = mid + 1;
        else return s_uranges[mid].cls;
    }
    return 0;
}

/* Unicode White_Space (what \s means in Python's regex module and Rust). */
static int s_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Length (in code points) of the pre-token starting at cps[i], following
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t s_pretoken(const uint32_t *cps, size_t n, size_t i) {
    const uint32_t c = cps[i];
    if (c == '\'' && i + 1 < n) {
        uint32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    size_t j = i + (c == ' ' && i + 1 < n ? 1 : 0); /* optional leading space */
    for (int pass = 0; pass < 2; pass++) {
        if (j < n && !s_space(cps[j])) {
            int cls = s_class(cps[j]);
            size_t k = j;
            if (cls == 1 || cls == 2) {
                while (k < n && s_class(cps[k]) == cls) k++;
            } else {
                while (k < n && !s_space(cps[k]) && s_class(cps[k]) == 0) k++;
            }
            return k - i;
        }
        if (j == i) break;
        j = i; /* backtrack: without the optional space */
    }
    /* Whitespace run [i, k). */
    size_t k = i;
    while (k < n && s_space(cps[k])) k++;
    if (k == n) return k - i;         /* \s+(?!\S) at the end */
    if (k - 1 > i) return k - 1 - i;  /* leave the last space for the next word */
    return k - i;                     /* \s+ */
}

/* ---- BPE ------------------------------------------------------------------------- */

static int s_push(int **ids, size_t *n, size_t *cap, int id) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int *p = realloc(*ids, c * sizeof(int));
        if (!p) return -1;
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* Words up to this many bytes use the reference algorithm as written in
 * GPT-2's encoder.py (find the lowest-rank pair, merge all its occurrences
 * left to right, repeat: quadratic); longer ones use a heap of pairs, which
 * gives the same result whenever a merge never creates a pair of lower rank
 * than itself (true of GPT-2's merges.txt, where a token exists before any
 * merge that uses it) in O(n log n), so a long word cannot stall a worker. */
#ifndef S_BPE_HEAP_MIN
#define S_BPE_HEAP_MIN 128
#endif

typedef struct {
    int rank, pos;
} s_heap_t;

static int s_heap_less(const s_heap_t *a, const s_heap_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void s_heap_push(s_heap_t *h, size_t *n, s_heap_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!s_heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static s_heap_t s_heap_pop(s_heap_t *h, size_t *n) {
    s_heap_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && s_heap_less(&h[c + 1], &h[c])) c++;
        if (!s_heap_less(&h[c], &v)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

/* Heap BPE: sym[] ids, nxt/prv links; m symbols. Returns the symbol count
 * compacted into sym[], or -1 on no memory. */
static long s_bpe_heap(const nr_tokenizer_t *t, int *sym, size_t m) {
    int *nxt = malloc(sizeof(int) * m), *prv = malloc(sizeof(int) * m);
    s_heap_t *h = malloc(sizeof(s_heap_t) * 3 * m);
    size_t hn = 0;
    if (!nxt || !prv || !h) {
        free(nxt);
        free(prv);
        free(h);
        return -1;
    }
    for (size_t i = 0; i < m; i++) {
        nxt[i] = i + 1 < m ? (int)i + 1 : -1;
        prv[i] = (int)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const s_slot_t *s = s_merge_find(t, sym[i], sym[i + 1]);
        if (s) s_heap_push(h, &hn, (s_heap_t){s->rank, (int)i});
    }
    while (hn > 0) {
        s_heap_t top = s_heap_pop(h, &hn);
        int i = top.pos, j;
        if (sym[i] < 0 || (j = nxt[i]) < 0) continue;
        const s_slot_t *s = s_merge_find(t, sym[i], sym[j]);
        if (!s || s->rank != top.rank) continue; /* stale entry */
        sym[i] = s->id;
        sym[j] = -1;
        nxt[i] = nxt[j];
        if (nxt[j] >= 0) prv[nxt[j]] = i;
        if (prv[i] >= 0 && (s = s_merge_find(t, sym[prv[i]], sym[i])))
            s_heap_push(h, &hn, (s_heap_t){s->rank, prv[i]});
        if (nxt[i] >= 0 && (s = s_merge_find(t, sym[i], sym[nxt[i]]))) s_heap_push(h, &hn, (s_heap_t){s->rank, i});
    }
    size_t o = 0;
    for (size_t i = 0; i < m; i++)
        if (sym[i] >= 0) sym[o++] = sym[i];
    free(nxt);
    free(prv);
    free(h);
    return (long)o;
}

/* BPE over word bytes; appends the ids. sym is scratch of at least n ints. */
static int s_bpe(const nr_tokenizer_t *t, const unsigned char *w, size_t n, int *sym, int **ids, size_t *nids,
                 size_t *cap) {
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    if (n >= S_BPE_HEAP_MIN) {
        long k = s_bpe_heap(t, sym, n);
        if (k < 0) return NR_ENOMEM;
        m = (size_t)k;
    }
    while (m > 1 && n < S_BPE_HEAP_MIN) {
        int best = -1, best_rank = 0x7fffffff;
        int a = 0, b = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            const s_slot_t *s = s_merge_find(t, sym[i], sym[i + 1]);
            if (s && s->rank < best_rank) {
                best_rank = s->rank;
                best = s->id;
                a = sym[i];
                b = sym[i + 1];
            }
        }
        if (best < 0) break;
        size_t o = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b) {
                sym[o++] = best;
                i += 2;
            } else {
                sym[o++] = sym[i++];
            }
        }
        m = o;
    }
    for (size_t i = 0; i < m; i++)
        if (s_push(ids, nids, cap, sym[i]) < 0) return NR_ENOMEM;
    return 0;
}

int nr_tokenizer_encode(const nr_tokenizer_t *tok, const char *text, size_t len, int **ids, size_t *n_ids,
                        char *err, size_t errlen) {
    if (!tok || !ids || !n_ids || (!text && len)) return nr_seterr(err, errlen, NR_EINVAL, "encode: bad arguments");
    *ids = NULL;
    *n_ids = 0;
    uint32_t *cps = malloc(sizeof(uint32_t) * (len + 1));
    size_t *pos = malloc(sizeof(size_t) * (len + 1)); /* byte offset of each code point */
    int *sym = malloc(sizeof(int) * (len + 1));
    size_t n = 0, cap = 0;
    int rc = 0;
    if (!cps || !pos || !sym) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "encode: no memory");
        goto done;
    }
    for (size_t i = 0; i < len;) {
        size_t k = nr_utf8_decode((const uint8_t *)text + i, len - i, &cps[n], NULL);
        if (k == 0) {
            rc = nr_seterr(err, errlen, NR_ETEXT, "encode: invalid UTF-8 at byte %zu", i);
            goto done;
        }
        pos[n++] = i;
        i += k;
    }
    pos[n] = len;
    for (size_t i = 0; i < n;) {
        size_t k = s_pretoken(cps, n, i);
        rc = s_bpe(tok, (const unsigned char *)text + pos[i], pos[i + k] - pos[i], sym, ids, n_ids, &cap);
        if (rc < 0) {
            nr_seterr(err, errlen, rc, "encode: no memory");
            goto done;
        }
        i += k;
    }
done:
    free(cps);
    free(pos);
    free(sym);
    if (rc < 0) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
    }
    return rc;
}

/* ---- decoding -------------------------------------------------------------------- */

int nr_tokenizer_decode(const nr_tokenizer_t *tok, const int *ids, size_t n_ids, unsigned flags, char **text,
                        size_t *len, char *err, size_t errlen) {
    if (!tok || !text || (!ids && n_ids)) return nr_seterr(err, errlen, NR_EINVAL, "decode: bad arguments");
    *text = NULL;
    size_t raw_len = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= tok->n_ids || tok->off[id] == SIZE_MAX)
            return nr_seterr(err, errlen, NR_EINVAL, "decode: id %d at position %zu is not in the vocabulary (0..%d)",
                             id, i, tok->n_ids - 1);
        if (!((flags & NR_TOKENIZER_SKIP_SPECIAL) && tok->special[id])) raw_len += tok->len[id];
    }
    /* Worst case: every byte becomes U+FFFD (3 bytes). */
    char *raw = malloc(raw_len + 1), *out = malloc(raw_len * 3 + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return nr_seterr(err, errlen, NR_ENOMEM, "decode: no memory");
    }
    size_t r = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int id = ids[i];
        if ((flags & NR_TOKENIZER_SKIP_SPECIAL) && tok->special[id]) continue;
        memcpy(raw + r, tok->pool + tok->off[id], tok->len[id]);
        r += tok->len[id];
    }
    /* bytes.decode("utf-8", errors="replace"): each maximal ill-formed
     * subpart becomes one U+FFFD. */
    size_t o = 0;
    for (size_t i = 0; i < r;) {
        uint32_t cp;
        size_t bad;
        size_t k = nr_utf8_decode((const uint8_t *)raw + i, r - i, &cp, &bad);
        if (k > 0) {
            memcpy(out + o, raw + i, k);
            o += k;
            i += k;
        } else {
            o += nr_utf8_encode(0xFFFD, out + o);
            i += bad;
        }
    }
    out[o] = '\0';
    free(raw);
    if (flags & NR_TOKENIZER_CLEANUP) o = nr_text_clean_up_tokenization(out, o);
    *text = out;
    if (len) *len = o;
    return 0;
}
