/* Gemma / PaliGemma BPE tokenizer from tokenizer.json, following the Rust
 * tokenizers library (tokenizers/src/models/bpe/{model,word}.rs,
 * tokenizer/added_vocabulary.rs, decoders/{byte_fallback,strip}.rs): added
 * tokens are split off the raw text, the rest is normalized, split on the
 * normalized added tokens, pre-tokenized and merged pair by pair, lowest
 * merge rank first (leftmost on ties), from one symbol per character (or
 * per byte through <0xNN> when the character is not in the vocabulary). */
#include "models/text/gemma_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "models/config.h"

#define S_MAX_FILE ((size_t)256 << 20) /* the real file is about 34 MB */
#define S_MAX_ID 2000000               /* ids beyond this are a corrupt file (Gemma has 257k) */
#define S_MAX_OPS 16                   /* steps of a normalizer or decoder sequence */
#define S_MAX_GROWTH 64.0              /* how much a normalizer or decoder may lengthen text */
#define S_MAX_ADDED_LEN 1024           /* bytes of an added token: bounds matching work per text byte */

/* ---- hash maps ------------------------------------------------------------------- */

/* String -> value (open addressing, keys borrowed from the tokenizer's storage). */
typedef struct {
    const char *s;
    uint32_t len;
    int32_t val; /* -1: empty slot */
} s_sslot_t;

typedef struct {
    s_sslot_t *slots;
    size_t cap;
} s_smap_t;

/* 64-bit key -> two values; key 0 is the empty slot (keys are stored + 1). */
typedef struct {
    uint64_t key;
    int32_t a, b;
} s_kslot_t;

typedef struct {
    s_kslot_t *slots;
    size_t cap, n;
} s_kmap_t;

static size_t s_pow2(size_t n) {
    size_t c = 16;
    while (c < n * 2) c <<= 1;
    return c;
}

static uint64_t s_mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static int s_smap_init(s_smap_t *m, size_t n) {
    m->cap = s_pow2(n);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return NR_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].val = -1;
    return 0;
}

static s_sslot_t *s_smap_slot(const s_smap_t *m, const char *s, size_t n) {
    if (!m->slots) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = nr_hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        s_sslot_t *sl = &m->slots[i];
        if (sl->val < 0 || (sl->len == n && memcmp(sl->s, s, n) == 0)) return sl;
    }
}

static int s_smap_get(const s_smap_t *m, const char *s, size_t n) {
    const s_sslot_t *sl = s_smap_slot(m, s, n);
    return sl ? sl->val : -1;
}

/* Inserts or overwrites (a later duplicate JSON key wins, as in serde). */
static void s_smap_put(s_smap_t *m, const char *s, size_t n, int val) {
    s_sslot_t *sl = s_smap_slot(m, s, n);
    sl->s = s;
    sl->len = (uint32_t)n;
    sl->val = val;
}

static int s_kmap_init(s_kmap_t *m, size_t n) {
    m->cap = s_pow2(n);
    m->n = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : NR_ENOMEM;
}

static s_kslot_t *s_kmap_slot(const s_kmap_t *m, uint64_t key) {
    if (!m->slots) return NULL;
    size_t mask = m->cap - 1;
    key++;
    for (size_t i = s_mix(key) & mask;; i = (i + 1) & mask) {
        s_kslot_t *sl = &m->slots[i];
        if (sl->key == 0 || sl->key == key) return sl;
    }
}

static const s_kslot_t *s_kmap_get(const s_kmap_t *m, uint64_t key) {
    const s_kslot_t *sl = s_kmap_slot(m, key);
    return sl && sl->key ? sl : NULL;
}

/* The map is sized for its final count at init, so it never fills. */
static void s_kmap_put(s_kmap_t *m, uint64_t key, int32_t a, int32_t b) {
    s_kslot_t *sl = s_kmap_slot(m, key);
    if (!sl->key) m->n++;
    sl->key = key + 1;
    sl->a = a;
    sl->b = b;
}

static uint64_t s_pair(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* ---- the tokenizer ---------------------------------------------------------------- */

typedef enum { S_REPLACE, S_PREPEND, S_BYTE_FALLBACK, S_FUSE, S_STRIP } s_kind_t;

/* One normalizer or decoder step. */
typedef struct {
    s_kind_t kind;
    char *pat, *content; /* Replace: pattern -> content; Prepend: content; Strip: content (one char) */
    size_t npat, ncontent;
    int start, stop; /* Strip */
} s_op_t;

/* Added tokens matched in text: a byte trie (node, byte) -> child. */
typedef struct {
    s_kmap_t child;
    int32_t *term; /* (nodes) index into added[] ending here, or -1 */
    size_t nodes;
    uint8_t first[32]; /* bitmap of first bytes */
} s_trie_t;

typedef struct {
    char *content, *norm; /* norm: the normalized spelling (normalized tokens), else NULL */
    size_t len, nlen;
    int id, special, normalized;
} s_added_t;

struct nr_gemma_tokenizer {
    int n_ids;            /* largest id + 1 */
    char *pool;           /* model vocabulary spellings */
    size_t *off;          /* (n_ids) offset in pool; SIZE_MAX = not in the model vocabulary */
    uint32_t *len;        /* (n_ids) */
    int32_t *added_of_id; /* (n_ids) index into added[] or -1 */
    s_smap_t vocab;       /* model spelling -> id */
    s_kmap_t merges;      /* (a, b) -> rank, merged id */
    int byte_id[256];     /* <0xNN> ids, -1 when missing */
    int unk_id;           /* -1 without unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    s_added_t *added;
    size_t n_added;
    s_smap_t added_map; /* content -> index into added[] */
    s_trie_t raw_trie, norm_trie;
    s_op_t norm[S_MAX_OPS];
    int n_norm;
    s_op_t dec[S_MAX_OPS];
    int n_dec, has_decoder;
    char *split; /* pre_tokenizer Split pattern (MergedWithPrevious), or NULL */
    size_t nsplit;
};

/* ---- growable buffers --------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} s_buf_t;

static int s_buf_add(s_buf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return NR_ENOMEM;
        b->s = p;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

typedef struct {
    int *v;
    size_t n, cap;
} s_ids_t;

static int s_ids_add(s_ids_t *a, int id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int *p = realloc(a->v, cap * sizeof *p);
        if (!p) return NR_ENOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* ---- normalizer ------------------------------------------------------------------------ */

/* Replaces every non-overlapping occurrence of pat (left to right) in s[0..n). */
static int s_replace(const char *s, size_t n, const char *pat, size_t npat, const char *content, size_t ncontent,
                     s_buf_t *out) {
    size_t i = 0, from = 0;
    while (i + npat <= n) {
        if (memcmp(s + i, pat, npat) == 0) {
            if (s_buf_add(out, s + from, i - from) || s_buf_add(out, content, ncontent)) return NR_ENOMEM;
            i += npat;
            from = i;
        } else {
            i++;
        }
    }
    return s_buf_add(out, s + from, n - from);
}

/* Runs the normalizer on s[0..n) into out (reset first). */
static int s_normalize(const nr_gemma_tokenizer_t *t, const char *s, size_t n, s_buf_t *out) {
    out->n = 0;
    if (s_buf_add(out, s, n)) return NR_ENOMEM;
    s_buf_t tmp = {0};
    for (int k = 0; k < t->n_norm; k++) {
        const s_op_t *op = &t->norm[k];
        tmp.n = 0;
        int rc = 0;
        if (op->kind == S_REPLACE) {
            rc = s_replace(out->s, out->n, op->pat, op->npat, op->content, op->ncontent, &tmp);
        } else if (out->n > 0) { /* Prepend only to a non-empty string */
            rc = s_buf_add(&tmp, op->content, op->ncontent);
            if (!rc) rc = s_buf_add(&tmp, out->s, out->n);
        } else {
            continue;
        }
        if (rc) {
            free(tmp.s);
            return rc;
        }
        s_buf_t sw = *out;
        *out = tmp;
        tmp = sw;
    }
    free(tmp.s);
    return 0;
}

/* ---- BPE ------------------------------------------------------------------------------ */

typedef struct {
    int32_t c, prev, next;
    uint32_t len; /* 0: merged into its left neighbour */
} s_sym_t;

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} s_merge_t;

/* Min-heap on (rank, pos). */
static int s_less(const s_merge_t *a, const s_merge_t *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void s_heap_push(s_merge_t *h, size_t *n, s_merge_t m) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!s_less(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static s_merge_t s_heap_pop(s_merge_t *h, size_t *n) {
    s_merge_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && s_less(&h[c + 1], &h[c])) c++;
        if (!s_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void s_sym_add(s_sym_t *sy, size_t *n, int c, size_t len) {
    size_t i = (*n)++;
    sy[i] = (s_sym_t){c, (int32_t)i - 1, -1, (uint32_t)len};
    if (i > 0) sy[i - 1].next = (int32_t)i;
}

static void s_push_merge(const nr_gemma_tokenizer_t *t, s_merge_t *h, size_t *nh, const s_sym_t *sy, size_t pos,
                         size_t next) {
    const s_kslot_t *m = s_kmap_get(&t->merges, s_pair(sy[pos].c, sy[next].c));
    if (m) s_heap_push(h, nh, (s_merge_t){(uint32_t)m->a, (uint32_t)pos, m->b});
}

/* The BPE model on one word (s[0..n), valid UTF-8): appends its ids. */
static int s_bpe(const nr_gemma_tokenizer_t *t, const char *s, size_t n, s_ids_t *out) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int id = s_smap_get(&t->vocab, s, n);
        if (id >= 0) return s_ids_add(out, id);
    }
    /* At most one symbol per byte; at most one queued merge per symbol plus
     * two per merge done, so 3n entries bound the heap. */
    s_sym_t *sy = malloc(n * sizeof *sy);
    s_merge_t *h = malloc(3 * n * sizeof *h);
    if (!sy || !h) {
        free(sy);
        free(h);
        return NR_ENOMEM;
    }
    size_t ns = 0, nh = 0;
    int unk = -1;
    size_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = nr_utf8_decode((const uint8_t *)s + i, n - i, &cp, NULL);
        if (k == 0) k = 1; /* not reached: the text was validated */
        int id = s_smap_get(&t->vocab, s + i, k);
        if (id >= 0) {
            if (unk >= 0) {
                s_sym_add(sy, &ns, unk, unk_len);
                unk = -1;
            }
            s_sym_add(sy, &ns, id, k);
        } else {
            int all = t->byte_fallback;
            for (size_t j = 0; j < k && all; j++) all = t->byte_id[(uint8_t)s[i + j]] >= 0;
            if (all) {
                /* As upstream: a pending unknown is not flushed before the bytes. */
                for (size_t j = 0; j < k; j++) s_sym_add(sy, &ns, t->byte_id[(uint8_t)s[i + j]], 1);
            } else if (t->unk_id >= 0) {
                if (unk >= 0 && t->fuse_unk) {
                    unk_len += k;
                } else {
                    if (unk >= 0) s_sym_add(sy, &ns, unk, unk_len);
                    unk = t->unk_id;
                    unk_len = k;
                }
            }
        }
        i += k;
    }
    if (unk >= 0) s_sym_add(sy, &ns, unk, unk_len);

    for (size_t i = 0; i + 1 < ns; i++) s_push_merge(t, h, &nh, sy, i, i + 1);
    while (nh > 0) {
        s_merge_t top = s_heap_pop(h, &nh);
        s_sym_t *cur = &sy[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        size_t next = (size_t)cur->next;
        /* A stale entry: the pair there changed since it was queued. */
        const s_kslot_t *m = s_kmap_get(&t->merges, s_pair(cur->c, sy[next].c));
        if (!m || m->b != top.new_id) continue;
        cur->c = top.new_id;
        cur->len += sy[next].len;
        cur->next = sy[next].next;
        sy[next].len = 0;
        if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) s_push_merge(t, h, &nh, sy, (size_t)cur->prev, top.pos);
        if (cur->next >= 0) s_push_merge(t, h, &nh, sy, top.pos, (size_t)cur->next);
    }
    int rc = 0;
    for (size_t i = 0; i < ns && rc == 0; i++)
        if (sy[i].len) rc = s_ids_add(out, sy[i].c);
    free(sy);
    free(h);
    return rc;
}

/* Pre-tokenizer, then BPE on each piece. */
static int s_words(const nr_gemma_tokenizer_t *t, const char *s, size_t n, s_ids_t *out) {
    if (!t->split) return s_bpe(t, s, n, out);
    size_t from = 0;
    for (size_t i = 0; i + t->nsplit <= n;) {
        if (memcmp(s + i, t->split, t->nsplit) == 0) {
            i += t->nsplit;
            int rc = s_bpe(t, s + from, i - from, out); /* the match closes the piece */
            if (rc) return rc;
            from = i;
        } else {
            i++;
        }
    }
    return s_bpe(t, s + from, n - from, out);
}

/* ---- added tokens -------------------------------------------------------------------------- */

/* Longest added token of the trie starting at s[0..n): its index, with its
 * length in *mlen, or -1. */
static int s_trie_match(const s_trie_t *tr, const char *s, size_t n, size_t *mlen) {
    if (!tr->nodes || !(tr->first[(uint8_t)s[0] >> 3] & (1u << ((uint8_t)s[0] & 7)))) return -1;
    int best = -1;
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        const s_kslot_t *c = s_kmap_get(&tr->child, ((uint64_t)node << 8) | (uint8_t)s[i]);
        if (!c) break;
        node = (uint32_t)c->a;
        if (tr->term[node] >= 0) {
            best = tr->term[node];
            *mlen = i + 1;
        }
    }
    return best;
}

/* Splits s[0..n) on the trie's tokens (leftmost, longest); the pieces between
 * go to the normalized pass (normalize = 1) or the pre-tokenizer and model. */
static int s_split_added(const nr_gemma_tokenizer_t *t, const s_trie_t *tr, const char *s, size_t n, int normalize,
                         s_ids_t *out);

static int s_piece(const nr_gemma_tokenizer_t *t, const char *s, size_t n, int normalize, s_ids_t *out) {
    if (!normalize) return s_words(t, s, n, out);
    s_buf_t b = {0};
    int rc = s_normalize(t, s, n, &b);
    if (!rc) rc = s_split_added(t, &t->norm_trie, b.s, b.n, 0, out);
    free(b.s);
    return rc;
}

static int s_split_added(const nr_gemma_tokenizer_t *t, const s_trie_t *tr, const char *s, size_t n, int normalize,
                         s_ids_t *out) {
    size_t from = 0;
    for (size_t i = 0; i < n;) {
        size_t mlen = 0;
        int a = s_trie_match(tr, s + i, n - i, &mlen);
        if (a < 0) {
            i++;
            continue;
        }
        int rc = from < i ? s_piece(t, s + from, i - from, normalize, out) : 0;
        if (rc || (rc = s_ids_add(out, t->added[a].id))) return rc;
        i += mlen;
        from = i;
    }
    return from < n || n == 0 ? s_piece(t, s + from, n - from, normalize, out) : 0;
}

int nr_gemma_tokenizer_encode(const nr_gemma_tokenizer_t *tok, const char *text, size_t len, int **ids,
                              size_t *n_ids, char *err, size_t errlen) {
    if (!tok || !ids || !n_ids || (!text && len)) return nr_seterr(err, errlen, NR_EINVAL, "gemma tokenizer: bad argument");
    *ids = NULL;
    *n_ids = 0;
    size_t bad = 0;
    if (len && nr_utf8_validate((const uint8_t *)text, len, &bad) != 0)
        return nr_seterr(err, errlen, NR_ETEXT, "text is not UTF-8 (byte %zu)", bad);
    s_ids_t out = {0};
    int rc = s_split_added(tok, &tok->raw_trie, len ? text : "", len, 1, &out);
    if (rc == 0 && !out.v && !(out.v = malloc(sizeof *out.v))) rc = NR_ENOMEM; /* never NULL on success */
    if (rc) {
        free(out.v);
        return nr_seterr(err, errlen, rc, "gemma tokenizer: out of memory");
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ---- decoding -------------------------------------------------------------------------------- */

/* A list of tokens: their bytes one after the other, and where each ends. */
typedef struct {
    s_buf_t bytes;
    size_t *end;
    size_t n, cap;
} s_toks_t;

static void s_toks_free(s_toks_t *l) {
    free(l->bytes.s);
    free(l->end);
    *l = (s_toks_t){0};
}

static const char *s_tok(const s_toks_t *l, size_t i, size_t *n) {
    size_t from = i ? l->end[i - 1] : 0;
    *n = l->end[i] - from;
    return l->bytes.s + from;
}

/* Closes the token made of the bytes appended since the previous one. */
static int s_toks_close(s_toks_t *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        size_t *p = realloc(l->end, cap * sizeof *p);
        if (!p) return NR_ENOMEM;
        l->end = p;
        l->cap = cap;
    }
    l->end[l->n++] = l->bytes.n;
    return 0;
}

static int s_toks_add(s_toks_t *l, const char *s, size_t n) {
    return s_buf_add(&l->bytes, s, n) ? NR_ENOMEM : s_toks_close(l);
}

static int s_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> the byte, else -1. Two characters parsed as Rust's
 * u8::from_str_radix(_, 16) does (which also takes "+N"). */
static int s_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = s_hex((uint8_t)s[3]), lo = s_hex((uint8_t)s[4]);
    if (s[3] == '+' && lo >= 0) return lo;
    return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

/* ByteFallback: each run of byte tokens becomes its text when it is valid
 * UTF-8, else one U+FFFD per byte. */
static int s_flush_bytes(s_toks_t *out, s_buf_t *bytes) {
    if (bytes->n == 0) return 0;
    int rc = 0;
    if (nr_utf8_validate((const uint8_t *)bytes->s, bytes->n, NULL) == 0) {
        rc = s_toks_add(out, bytes->s, bytes->n);
    } else {
        for (size_t i = 0; i < bytes->n && !rc; i++) rc = s_toks_add(out, "\xEF\xBF\xBD", 3);
    }
    bytes->n = 0;
    return rc;
}

static int s_dec_step(const s_op_t *op, const s_toks_t *in, s_toks_t *out) {
    int rc = 0;
    if (op->kind == S_FUSE) return in->n ? s_toks_add(out, in->bytes.s, in->bytes.n) : s_toks_add(out, "", 0);
    if (op->kind == S_BYTE_FALLBACK) {
        s_buf_t bytes = {0};
        for (size_t i = 0; i < in->n && !rc; i++) {
            size_t n;
            const char *s = s_tok(in, i, &n);
            int b = s_byte_token(s, n);
            if (b >= 0) {
                char c = (char)b;
                rc = s_buf_add(&bytes, &c, 1);
            } else if (!(rc = s_flush_bytes(out, &bytes))) {
                rc = s_toks_add(out, s, n);
            }
        }
        if (!rc) rc = s_flush_bytes(out, &bytes);
        free(bytes.s);
        return rc;
    }
    for (size_t i = 0; i < in->n && !rc; i++) {
        size_t n;
        const char *s = s_tok(in, i, &n);
        if (op->kind == S_REPLACE) {
            rc = s_replace(s, n, op->pat, op->npat, op->content, op->ncontent, &out->bytes);
            if (!rc) rc = s_toks_close(out);
            continue;
        }
        /* Strip: up to start leading and stop trailing copies of one character. */
        size_t from = 0, to = n, c = op->ncontent;
        for (int k = 0; k < op->start && from + c <= to && memcmp(s + from, op->content, c) == 0; k++) from += c;
        for (int k = 0; k < op->stop && to >= from + c && memcmp(s + to - c, op->content, c) == 0; k++) to -= c;
        rc = s_toks_add(out, s + from, to - from);
    }
    return rc;
}

int nr_gemma_tokenizer_decode(const nr_gemma_tokenizer_t *tok, const int *ids, size_t n_ids, unsigned flags,
                              char **text, size_t *len, char *err, size_t errlen) {
    if (!tok || !text || (!ids && n_ids)) return nr_seterr(err, errlen, NR_EINVAL, "gemma tokenizer: bad argument");
    *text = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_ids)
            return nr_seterr(err, errlen, NR_EINVAL, "token id %d out of range (vocabulary %d)", ids[i], tok->n_ids);
    s_toks_t cur = {0}, next = {0};
    int rc = 0;
    for (size_t i = 0; i < n_ids && !rc; i++) {
        const char *s = NULL;
        size_t n = 0;
        int a = tok->added_of_id[ids[i]];
        if (a >= 0) {
            const s_added_t *ad = &tok->added[a];
            s = ad->norm ? ad->norm : ad->content;
            n = ad->norm ? ad->nlen : ad->len;
        } else if (tok->off[ids[i]] != SIZE_MAX) {
            s = tok->pool + tok->off[ids[i]];
            n = tok->len[ids[i]];
        } else {
            continue; /* an id no token has: dropped, as upstream */
        }
        if (flags & NR_GEMMA_TOKENIZER_SKIP_SPECIAL) {
            int k = s_smap_get(&tok->added_map, s, n);
            if (k >= 0 && tok->added[k].special) continue;
        }
        rc = s_toks_add(&cur, s, n);
    }
    for (int k = 0; k < tok->n_dec && !rc; k++) {
        rc = s_dec_step(&tok->dec[k], &cur, &next);
        s_toks_free(&cur);
        cur = next;
        next = (s_toks_t){0};
    }
    /* The tokens' bytes lie one after the other: with a decoder the text is
     * their concatenation, without one they are joined with spaces. */
    s_buf_t all = {0};
    if (tok->has_decoder) {
        all = cur.bytes;
        cur.bytes = (s_buf_t){0};
    }
    for (size_t i = 0; i < cur.n && !rc && !tok->has_decoder; i++) {
        size_t n;
        const char *s = s_tok(&cur, i, &n);
        if (i > 0) rc = s_buf_add(&all, " ", 1);
        if (!rc) rc = s_buf_add(&all, s, n);
    }
    if (!rc && !all.s) rc = s_buf_add(&all, "", 0);
    s_toks_free(&cur);
    s_toks_free(&next);
    if (rc) {
        free(all.s);
        return nr_seterr(err, errlen, rc, "gemma tokenizer: out of memory");
    }
    *text = all.s;
    if (len) *len = all.n;
    return 0;
}

/* ---- queries ----------------------------------------------------------------------------------- */

int nr_gemma_tokenizer_vocab_size(const nr_gemma_tokenizer_t *tok) { return tok ? tok->n_ids : 0; }

int nr_gemma_tokenizer_token_id(const nr_gemma_tokenizer_t *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    int a = s_smap_get(&tok->added_map, token, n);
    return a >= 0 ? tok->added[a].id : s_smap_get(&tok->vocab, token, n);
}

const char *nr_gemma_tokenizer_token(const nr_gemma_tokenizer_t *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_ids) return NULL;
    if (tok->added_of_id[id] >= 0) return tok->added[tok->added_of_id[id]].content;
    return tok->off[id] == SIZE_MAX ? NULL : tok->pool + tok->off[id];
}

int nr_gemma_tokenizer_is_special(const nr_gemma_tokenizer_t *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_ids || tok->added_of_id[id] < 0) return 0;
    return tok->added[tok->added_of_id[id]].special;
}

/* ---- loading ------------------------------------------------------------------------------------- */

static void s_ops_free(s_op_t *ops, int n) {
    for (int i = 0; i < n; i++) {
        free(ops[i].pat);
        free(ops[i].content);
    }
}

void nr_gemma_tokenizer_destroy(nr_gemma_tokenizer_t **tok) {
    if (!tok || !*tok) return;
    nr_gemma_tokenizer_t *t = *tok;
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->added_of_id);
    free(t->vocab.slots);
    free(t->merges.slots);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->added);
    free(t->added_map.slots);
    free(t->raw_trie.child.slots);
    free(t->raw_trie.term);
    free(t->norm_trie.child.slots);
    free(t->norm_trie.term);
    s_ops_free(t->norm, t->n_norm);
    s_ops_free(t->dec, t->n_dec);
    free(t->split);
    free(t);
    *tok = NULL;
}

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} s_ctx_t;

#define S_BAD(c, ...) nr_seterr((c)->err, (c)->errlen, NR_EMODEL, __VA_ARGS__)

static const cJSON *s_get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static char *s_dup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* {"String": "x"} -> a copy of x; Regex patterns are not supported. */
static int s_string_pattern(const s_ctx_t *c, const cJSON *pat, const char *where, char **out, size_t *n) {
    const cJSON *s = s_get(pat, "String");
    if (!cJSON_IsString(s) || !s->valuestring[0])
        return S_BAD(c, "%s: %s: only a non-empty {\"String\": ...} pattern is supported", c->path, where);
    *n = strlen(s->valuestring);
    *out = s_dup(s->valuestring, *n);
    return *out ? 0 : NR_ENOMEM;
}

static int s_content(const s_ctx_t *c, const cJSON *o, const char *key, const char *where, char **out, size_t *n) {
    const cJSON *s = s_get(o, key);
    if (!cJSON_IsString(s)) return S_BAD(c, "%s: %s: missing \"%s\"", c->path, where, key);
    *n = strlen(s->valuestring);
    *out = s_dup(s->valuestring, *n);
    return *out ? 0 : NR_ENOMEM;
}

/* Parses a normalizer or decoder (one step or a Sequence) into ops. */
static int s_parse_ops(const s_ctx_t *c, const cJSON *j, int decoder, s_op_t *ops, int *n) {
    const char *where = decoder ? "decoder" : "normalizer";
    const cJSON *type = s_get(j, "type");
    if (!cJSON_IsString(type)) return S_BAD(c, "%s: %s without a type", c->path, where);
    const char *ty = type->valuestring;
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = s_get(j, decoder ? "decoders" : "normalizers");
        if (!cJSON_IsArray(list)) return S_BAD(c, "%s: %s Sequence without a list", c->path, where);
        const cJSON *e;
        cJSON_ArrayForEach(e, list) {
            int rc = s_parse_ops(c, e, decoder, ops, n);
            if (rc) return rc;
        }
        return 0;
    }
    if (*n >= S_MAX_OPS) return S_BAD(c, "%s: %s has more than %d steps", c->path, where, S_MAX_OPS);
    s_op_t *op = &ops[*n];
    *op = (s_op_t){0};
    int rc;
    if (strcmp(ty, "Replace") == 0) {
        op->kind = S_REPLACE;
        rc = s_string_pattern(c, s_get(j, "pattern"), where, &op->pat, &op->npat);
        if (!rc) rc = s_content(c, j, "content", where, &op->content, &op->ncontent);
    } else if (!decoder && strcmp(ty, "Prepend") == 0) {
        op->kind = S_PREPEND;
        rc = s_content(c, j, "prepend", where, &op->content, &op->ncontent);
    } else if (decoder && strcmp(ty, "ByteFallback") == 0) {
        op->kind = S_BYTE_FALLBACK;
        rc = 0;
    } else if (decoder && strcmp(ty, "Fuse") == 0) {
        op->kind = S_FUSE;
        rc = 0;
    } else if (decoder && strcmp(ty, "Strip") == 0) {
        op->kind = S_STRIP;
        const cJSON *st = s_get(j, "start"), *sp = s_get(j, "stop");
        rc = s_content(c, j, "content", where, &op->content, &op->ncontent);
        uint32_t cp;
        if (!rc && (nr_utf8_decode((const uint8_t *)op->content, op->ncontent, &cp, NULL) != op->ncontent ||
                    !op->ncontent || !cJSON_IsNumber(st) || !cJSON_IsNumber(sp) || st->valuedouble < 0 ||
                    sp->valuedouble < 0 || st->valuedouble > 1e6 || sp->valuedouble > 1e6))
            rc = S_BAD(c, "%s: decoder Strip needs one character and counts start, stop", c->path);
        if (!rc) {
            op->start = st->valueint;
            op->stop = sp->valueint;
        }
    } else {
        return S_BAD(c, "%s: %s type \"%s\" is not supported", c->path, where, ty);
    }
    (*n)++; /* counted even on error so that its strings are freed */
    return rc;
}

/* The most a sequence of steps can multiply a text's length by: a Replace
 * by content/pattern, a Prepend by 1 + its length (a piece is at least one
 * byte). Bounded at load so that hostile steps cannot blow text up. */
static double s_growth(const s_op_t *ops, int n) {
    double g = 1.0;
    for (int i = 0; i < n; i++) {
        if (ops[i].kind == S_REPLACE && ops[i].ncontent > ops[i].npat) g *= (double)ops[i].ncontent / (double)ops[i].npat;
        if (ops[i].kind == S_PREPEND) g *= 1.0 + (double)ops[i].ncontent;
    }
    return g;
}

static int s_parse_pre_tokenizer(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return 0;
    const cJSON *type = s_get(j, "type"), *beh = s_get(j, "behavior"), *inv = s_get(j, "invert");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "Split") != 0 || !cJSON_IsString(beh) ||
        strcmp(beh->valuestring, "MergedWithPrevious") != 0 || cJSON_IsTrue(inv))
        return S_BAD(c, "%s: pre_tokenizer: only null or Split (MergedWithPrevious, not inverted) is supported",
                     c->path);
    return s_string_pattern(c, s_get(j, "pattern"), "pre_tokenizer", &t->split, &t->nsplit);
}

/* Vocabulary: spellings into one pool, id -> spelling and spelling -> id. */
static int s_parse_vocab(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const cJSON *vocab, int max_added) {
    if (!cJSON_IsObject(vocab)) return S_BAD(c, "%s: model.vocab is not an object", c->path);
    size_t count = 0, bytes = 0;
    int max_id = max_added;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !e->string || e->valuedouble < 0 || e->valuedouble > S_MAX_ID ||
            e->valuedouble != (double)e->valueint)
            return S_BAD(c, "%s: model.vocab: bad id for \"%.40s\"", c->path, e->string ? e->string : "");
        if (e->valueint > max_id) max_id = e->valueint;
        count++;
        bytes += strlen(e->string) + 1;
    }
    if (count == 0) return S_BAD(c, "%s: model.vocab is empty", c->path);
    t->n_ids = max_id + 1;
    size_t ni = (size_t)t->n_ids;
    t->pool = malloc(bytes);
    t->off = malloc(ni * sizeof *t->off);
    t->len = malloc(ni * sizeof *t->len);
    t->added_of_id = malloc(ni * sizeof *t->added_of_id);
    if (!t->pool || !t->off || !t->len || !t->added_of_id || s_smap_init(&t->vocab, count)) return NR_ENOMEM;
    for (size_t i = 0; i < ni; i++) {
        t->off[i] = SIZE_MAX;
        t->added_of_id[i] = -1;
    }
    size_t at = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        size_t n = strlen(e->string);
        int id = e->valueint;
        memcpy(t->pool + at, e->string, n + 1);
        int old = s_smap_get(&t->vocab, e->string, n);
        if (old >= 0) t->off[old] = SIZE_MAX; /* a duplicate key: the last one wins */
        if (t->off[id] != SIZE_MAX) return S_BAD(c, "%s: model.vocab: id %d appears twice", c->path, id);
        t->off[id] = at;
        t->len[id] = (uint32_t)n;
        s_smap_put(&t->vocab, t->pool + at, n, id);
        at += n + 1;
    }
    return 0;
}

static int s_add_merge(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const char *a, size_t na, const char *b,
                       size_t nb, int rank, s_buf_t *tmp) {
    int ia = s_smap_get(&t->vocab, a, na), ib = s_smap_get(&t->vocab, b, nb);
    tmp->n = 0;
    if (s_buf_add(tmp, a, na) || s_buf_add(tmp, b, nb)) return NR_ENOMEM;
    int im = s_smap_get(&t->vocab, tmp->s, tmp->n);
    if (ia < 0 || ib < 0 || im < 0)
        return S_BAD(c, "%s: model.merges[%d]: \"%.*s\" + \"%.*s\" is not in the vocabulary", c->path, rank,
                     (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b);
    s_kmap_put(&t->merges, s_pair(ia, ib), rank, im); /* a repeated pair: the last rank wins, as upstream */
    return 0;
}

static int s_parse_merges(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const cJSON *merges) {
    if (!cJSON_IsArray(merges)) return S_BAD(c, "%s: model.merges is missing or not a list", c->path);
    int rc = s_kmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges));
    s_buf_t tmp = {0};
    int rank = 0;
    for (const cJSON *m = merges->child; m && rc == 0; m = m->next) {
        if (cJSON_IsString(m) != cJSON_IsString(merges->child)) { /* one form or the other, as upstream */
            rc = S_BAD(c, "%s: model.merges[%d] mixes \"a b\" and [a, b] forms", c->path, rank);
        } else if (cJSON_IsString(m)) { /* "a b"; "#version" lines are skipped, as upstream */
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (strncmp(s, "#version", 8) == 0) continue;
            if (!sp || strchr(sp + 1, ' '))
                rc = S_BAD(c, "%s: model.merges[%d]: \"%.40s\" is not two tokens and one space", c->path, rank, s);
            else
                rc = s_add_merge(t, c, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, &tmp);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) { /* ["a", "b"] */
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            rc = s_add_merge(t, c, a, strlen(a), b, strlen(b), rank, &tmp);
        } else {
            rc = S_BAD(c, "%s: model.merges[%d] is neither \"a b\" nor [a, b]", c->path, rank);
        }
        rank++;
    }
    free(tmp.s);
    return rc;
}

static int s_trie_build(nr_gemma_tokenizer_t *t, s_trie_t *tr, int normalized) {
    size_t total = 1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized) total += normalized ? t->added[i].nlen : t->added[i].len;
    if (total == 1) return 0;
    tr->term = malloc(total * sizeof *tr->term);
    if (!tr->term || s_kmap_init(&tr->child, total)) return NR_ENOMEM;
    tr->term[0] = -1;
    tr->nodes = 1;
    for (size_t i = 0; i < t->n_added; i++) {
        const s_added_t *a = &t->added[i];
        if (a->normalized != normalized) continue;
        const char *s = normalized ? a->norm : a->content;
        size_t n = normalized ? a->nlen : a->len;
        if (n == 0) continue;
        tr->first[(uint8_t)s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)s[0] & 7));
        uint32_t node = 0;
        for (size_t k = 0; k < n; k++) {
            uint64_t key = ((uint64_t)node << 8) | (uint8_t)s[k];
            const s_kslot_t *ch = s_kmap_get(&tr->child, key);
            if (!ch) {
                tr->term[tr->nodes] = -1;
                s_kmap_put(&tr->child, key, (int32_t)tr->nodes, 0);
                node = (uint32_t)tr->nodes++;
            } else {
                node = (uint32_t)ch->a;
            }
        }
        tr->term[node] = (int32_t)i;
    }
    return 0;
}

/* added_tokens: validated against the vocabulary; normalized ones get their
 * normalized spelling (matched after normalization, and what decode shows). */
static int s_parse_added(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const cJSON *list) {
    size_t n = list ? (size_t)cJSON_GetArraySize(list) : 0;
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added || s_smap_init(&t->added_map, n)) return NR_ENOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *id = s_get(e, "id"), *content = s_get(e, "content");
        if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= t->n_ids || !cJSON_IsString(content) ||
            !content->valuestring[0])
            return S_BAD(c, "%s: added_tokens[%zu]: bad id or content", c->path, t->n_added);
        if (strlen(content->valuestring) > S_MAX_ADDED_LEN)
            return S_BAD(c, "%s: added_tokens[%zu]: content longer than %d bytes", c->path, t->n_added, S_MAX_ADDED_LEN);
        const char *flags[] = {"single_word", "lstrip", "rstrip"};
        for (int k = 0; k < 3; k++)
            if (cJSON_IsTrue(s_get(e, flags[k])))
                return S_BAD(c, "%s: added token \"%.40s\": %s is not supported", c->path, content->valuestring,
                             flags[k]);
        s_added_t *a = &t->added[t->n_added];
        a->id = id->valueint;
        a->len = strlen(content->valuestring);
        a->content = s_dup(content->valuestring, a->len);
        if (!a->content) return NR_ENOMEM;
        t->n_added++;
        a->special = cJSON_IsTrue(s_get(e, "special"));
        const cJSON *norm = s_get(e, "normalized");
        a->normalized = norm ? cJSON_IsTrue(norm) : !a->special;
        int model_id = s_smap_get(&t->vocab, a->content, a->len);
        if (model_id >= 0 && model_id != a->id)
            return S_BAD(c, "%s: added token \"%.40s\" has id %d but the vocabulary gives %d", c->path, a->content,
                         a->id, model_id);
        if (model_id < 0 && t->off[a->id] != SIZE_MAX)
            return S_BAD(c, "%s: added token \"%.40s\" has id %d, which is \"%.40s\" in the vocabulary", c->path,
                         a->content, a->id, t->pool + t->off[a->id]);
        if (t->added_of_id[a->id] >= 0 || s_smap_get(&t->added_map, a->content, a->len) >= 0)
            return S_BAD(c, "%s: added token \"%.40s\" (id %d) appears twice", c->path, a->content, a->id);
        t->added_of_id[a->id] = (int32_t)(t->n_added - 1);
        s_smap_put(&t->added_map, a->content, a->len, (int)(t->n_added - 1));
        if (a->normalized && t->n_norm) {
            s_buf_t b = {0};
            if (s_normalize(t, a->content, a->len, &b)) return NR_ENOMEM;
            if (b.n != a->len || memcmp(b.s, a->content, b.n) != 0) {
                a->norm = b.s;
                a->nlen = b.n;
            } else {
                free(b.s);
            }
        }
        if (a->normalized && !a->norm) {
            a->norm = s_dup(a->content, a->len);
            a->nlen = a->len;
            if (!a->norm) return NR_ENOMEM;
        }
    }
    return 0;
}

static int s_parse(nr_gemma_tokenizer_t *t, const s_ctx_t *c, const cJSON *root) {
    const cJSON *model = s_get(root, "model");
    if (!cJSON_IsObject(model)) return S_BAD(c, "%s: no \"model\" object", c->path);
    const cJSON *type = s_get(model, "type");
    if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0))
        return S_BAD(c, "%s: model.type is not BPE", c->path);
    const cJSON *dropout = s_get(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return S_BAD(c, "%s: model.dropout is not supported", c->path);
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = s_get(model, affix[k]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && !a->valuestring[0]))
            return S_BAD(c, "%s: model.%s is not supported", c->path, affix[k]);
    }
    t->fuse_unk = cJSON_IsTrue(s_get(model, "fuse_unk"));
    t->byte_fallback = cJSON_IsTrue(s_get(model, "byte_fallback"));
    t->ignore_merges = cJSON_IsTrue(s_get(model, "ignore_merges"));

    /* The largest added id sizes the id tables along with the vocabulary. */
    const cJSON *added = s_get(root, "added_tokens"), *e;
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return S_BAD(c, "%s: added_tokens is not a list", c->path);
    if (cJSON_IsNull(added)) added = NULL;
    int max_added = -1;
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = s_get(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > S_MAX_ID)
            return S_BAD(c, "%s: added_tokens: bad id", c->path);
        if (id->valueint > max_added) max_added = id->valueint;
    }
    int rc = s_parse_vocab(t, c, s_get(model, "vocab"), max_added);
    if (rc) return rc;
    if ((rc = s_parse_merges(t, c, s_get(model, "merges")))) return rc;

    const cJSON *unk = s_get(model, "unk_token");
    t->unk_id = -1;
    if (cJSON_IsString(unk)) {
        t->unk_id = s_smap_get(&t->vocab, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) return S_BAD(c, "%s: model.unk_token \"%.40s\" is not in the vocabulary", c->path, unk->valuestring);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = s_smap_get(&t->vocab, name, 6);
    }

    const cJSON *norm = s_get(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && (rc = s_parse_ops(c, norm, 0, t->norm, &t->n_norm))) return rc;
    if ((rc = s_parse_pre_tokenizer(t, c, s_get(root, "pre_tokenizer")))) return rc;
    const cJSON *dec = s_get(root, "decoder");
    t->has_decoder = dec && !cJSON_IsNull(dec);
    if (t->has_decoder && (rc = s_parse_ops(c, dec, 1, t->dec, &t->n_dec))) return rc;
    if (s_growth(t->norm, t->n_norm) > S_MAX_GROWTH || s_growth(t->dec, t->n_dec) > S_MAX_GROWTH)
        return S_BAD(c, "%s: normalizer or decoder lengthens text more than %.0fx", c->path, S_MAX_GROWTH);

    if ((rc = s_parse_added(t, c, added))) return rc;
    if ((rc = s_trie_build(t, &t->raw_trie, 0)) || (rc = s_trie_build(t, &t->norm_trie, 1))) return rc;
    return 0;
}

int nr_gemma_tokenizer_parse(const char *json, size_t len, const char *name, nr_gemma_tokenizer_t **out, char *err,
                             size_t errlen) {
    if (!json || !out) return nr_seterr(err, errlen, NR_EINVAL, "gemma tokenizer: bad argument");
    *out = NULL;
    if (!name) name = "tokenizer.json";
    s_ctx_t c = {name, err, errlen};
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return nr_seterr(err, errlen, NR_EMODEL, "%s: not valid JSON", name);
    nr_gemma_tokenizer_t *t = calloc(1, sizeof *t);
    int rc = t ? s_parse(t, &c, root) : NR_ENOMEM;
    cJSON_Delete(root);
    if (rc) {
        if (rc == NR_ENOMEM) nr_seterr(err, errlen, rc, "%s: out of memory", name);
        nr_gemma_tokenizer_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int nr_gemma_tokenizer_load(const char *tokenizer_json_path, nr_gemma_tokenizer_t **out, char *err, size_t errlen) {
    if (!tokenizer_json_path || !out) return nr_seterr(err, errlen, NR_EINVAL, "gemma tokenizer: bad argument");
    *out = NULL;
    size_t len = 0;
    char *text = nr_model_read_file(tokenizer_json_path, S_MAX_FILE, &len);
    if (!text)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: missing, unreadable or larger than %zu MB", tokenizer_json_path,
                         S_MAX_FILE >> 20);
    int rc = nr_gemma_tokenizer_parse(text, len, tokenizer_json_path, out, err, errlen);
    free(text);
    return rc;
}
