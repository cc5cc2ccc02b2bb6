/* BERT WordPiece tokenizer (see wordpiece.h). Text is worked on as arrays
 * of code points; vocabulary look-ups are on UTF-8 bytes through two hash
 * maps: vocab.txt's tokens (what WordPiece may use) and the added and
 * special tokens (matched in the text before anything else). */
#include "models/text/wordpiece.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "models/config.h"
#include "models/text/cleanup.h"
#include "models/text/wordpiece_unicode.h"

#define S_MAX_FILE ((size_t)16 << 20) /* vocab.txt, tokenizer.json */
#define S_MAX_JSON ((size_t)1 << 20)  /* tokenizer_config.json and the small ones */
#define S_MAX_TOKENS 1000000
#define S_MAX_TOKEN_BYTES 1024
#define S_MAX_ADDED 10000

typedef struct {
    uint64_t h;
    const char *s; /* borrowed; NULL = empty slot */
    uint32_t len;
    int32_t id;
} s_slot_t;

typedef struct {
    s_slot_t *slot;
    size_t cap, n;
} s_map_t;

typedef struct {
    char *s;      /* UTF-8 */
    uint32_t *cp; /* code points */
    size_t n_cp;
    int id;
    int special; /* special token (skipped by decode, kept from lower-casing) */
    int protect; /* kept from lower-casing (special, or non-special "normalized") */
} s_added_t;

struct nr_wordpiece {
    int n_ids;             /* largest id + 1 */
    int vocab_count;       /* distinct tokens of the vocabulary (transformers' vocab_size) */
    char **vstr;           /* (n_ids) vocabulary spelling, NULL = none or shadowed by a later duplicate */
    const char **name;     /* (n_ids) what decode prints: added content, else vstr, else NULL (unk) */
    unsigned char *special;  /* (n_ids) */
    unsigned char *boundary; /* (n_ids) added token decoded as a piece of its own */
    s_map_t vocab, added;
    s_added_t *adds;
    size_t n_adds;
    char *spec[NR_WORDPIECE_N_SPECIAL]; /* special token strings; NULL = none */
    char **extra;                        /* additional_special_tokens */
    size_t n_extra;
    char **never;                        /* never_split */
    size_t n_never;
    int spec_id[NR_WORDPIECE_N_SPECIAL];
    int lower, strip_accents, chinese, basic, cleanup, max_len, max_chars;
    char prefix[16]; /* continuing_subword_prefix, "##" */
};

/* ---- Unicode ------------------------------------------------------------------ */

static uint32_t s_range_find(const nr_wp_range_t *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (cp < r[m].lo) hi = m;
        else if (cp > r[m].hi) lo = m + 1;
        else return r[m].v;
    }
    return 0;
}

static uint32_t s_class(uint32_t cp) { return s_range_find(s_wp_class, sizeof s_wp_class / sizeof *s_wp_class, cp); }
static uint32_t s_ccc(uint32_t cp) { return s_range_find(s_wp_ccc, sizeof s_wp_ccc / sizeof *s_wp_ccc, cp); }

static uint32_t s_lower1(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    size_t lo = 0, hi = sizeof s_wp_lower / sizeof *s_wp_lower;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (s_wp_lower[m].a == cp) return s_wp_lower[m].b;
        if (s_wp_lower[m].a < cp) lo = m + 1;
        else hi = m;
    }
    return cp;
}

static const nr_wp_decomp_t *s_decomp(uint32_t cp) {
    size_t lo = 0, hi = sizeof s_wp_decomp / sizeof *s_wp_decomp;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (s_wp_decomp[m].cp == cp) return &s_wp_decomp[m];
        if (s_wp_decomp[m].cp < cp) lo = m + 1;
        else hi = m;
    }
    return NULL;
}

static uint32_t s_compose(uint32_t a, uint32_t b) {
    /* Hangul: L + V -> LV, LV + T -> LVT. */
    if (a >= 0x1100 && a < 0x1113 && b >= 0x1161 && b < 0x1176) return 0xAC00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28;
    if (a >= 0xAC00 && a <= 0xD7A3 && (a - 0xAC00) % 28 == 0 && b > 0x11A7 && b < 0x11C3) return a + (b - 0x11A7);
    size_t lo = 0, hi = sizeof s_wp_comp / sizeof *s_wp_comp;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        const nr_wp_comp_t *c = &s_wp_comp[m];
        if (c->a == a && c->b == b) return c->c;
        if (c->a < a || (c->a == a && c->b < b)) lo = m + 1;
        else hi = m;
    }
    return 0;
}

/* NFD of in[0..n) into out (at least 4n entries); returns the length. */
static size_t s_nfd(const uint32_t *in, size_t n, uint32_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp >= 0xAC00 && cp <= 0xD7A3) {
            uint32_t s = cp - 0xAC00;
            out[o++] = 0x1100 + s / (21 * 28);
            out[o++] = 0x1161 + (s % (21 * 28)) / 28;
            if (s % 28) out[o++] = 0x11A7 + s % 28;
            continue;
        }
        const nr_wp_decomp_t *d = s_decomp(cp);
        if (d) {
            memcpy(out + o, s_wp_decomp_pool + d->off, d->len * sizeof(uint32_t));
            o += d->len;
        } else {
            out[o++] = cp;
        }
    }
    /* Canonical ordering: stable sort of each run of non-starters by class. */
    for (size_t i = 1; i < o; i++) {
        uint32_t c = out[i], k = s_ccc(c);
        if (k == 0) continue;
        size_t j = i;
        while (j > 0 && s_ccc(out[j - 1]) > k) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = c;
    }
    return o;
}

/* NFC of in[0..n) into out (at least 4n entries); returns the length. */
static size_t s_nfc(const uint32_t *in, size_t n, uint32_t *out) {
    size_t m = s_nfd(in, n, out);
    if (m == 0) return 0;
    size_t starter = 0, o = 1;
    uint32_t last_ccc = s_ccc(out[0]);
    int have_starter = last_ccc == 0;
    for (size_t i = 1; i < m; i++) {
        uint32_t c = out[i], k = s_ccc(c);
        uint32_t comp = 0;
        if (have_starter && (o == starter + 1 || (last_ccc != 0 && last_ccc < k)))
            comp = s_compose(out[starter], c);
        if (comp && (o == starter + 1 || last_ccc < k)) {
            out[starter] = comp;
            continue;
        }
        if (k == 0) {
            starter = o;
            have_starter = 1;
        }
        last_ccc = k;
        out[o++] = c;
    }
    return o;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Decodes one well-formed UTF-8 sequence; returns its length, 0 if ill-formed. */
static int s_utf8(const unsigned char *s, size_t n, uint32_t *cp) { return (int)nr_utf8_decode(s, n, cp, NULL); }

/* Code points of UTF-8 s[0..n) into a new array; NULL if not UTF-8 or no memory. */
static uint32_t *s_cps(const char *s, size_t n, size_t *n_cp) {
    uint32_t *cp = malloc(sizeof(uint32_t) * (n + 1));
    size_t k = 0;
    if (!cp) return NULL;
    for (size_t i = 0; i < n;) {
        int l = s_utf8((const unsigned char *)s + i, n - i, &cp[k]);
        if (!l) {
            free(cp);
            return NULL;
        }
        k++;
        i += (size_t)l;
    }
    *n_cp = k;
    return cp;
}

/* ---- maps ------------------------------------------------------------------------ */

static int s_map_init(s_map_t *m, size_t n) {
    m->cap = 16;
    while (m->cap < n * 2) m->cap <<= 1;
    m->slot = calloc(m->cap, sizeof(s_slot_t));
    m->n = 0;
    return m->slot ? 0 : NR_ENOMEM;
}

static s_slot_t *s_map_slot(const s_map_t *m, const char *s, size_t len) {
    if (!m->slot) return NULL;
    uint64_t h = nr_hash_bytes(s, len);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        s_slot_t *sl = &m->slot[i];
        if (!sl->s || (sl->h == h && sl->len == len && memcmp(sl->s, s, len) == 0)) {
            sl->h = h;
            return sl;
        }
    }
}

static int s_map_get(const s_map_t *m, const char *s, size_t len) {
    const s_slot_t *sl = s_map_slot(m, s, len);
    return sl && sl->s ? sl->id : -1;
}

/* Sets s -> id (s borrowed; a later set of the same string wins). */
static void s_map_set(s_map_t *m, const char *s, size_t len, int id) {
    s_slot_t *sl = s_map_slot(m, s, len);
    if (!sl->s) m->n++;
    sl->s = s;
    sl->len = (uint32_t)len;
    sl->id = id;
}

/* Id of a token as transformers converts it: added tokens first, then the vocabulary. */
static int s_lookup(const nr_wordpiece_t *t, const char *s, size_t len) {
    int id = s_map_get(&t->added, s, len);
    return id >= 0 ? id : s_map_get(&t->vocab, s, len);
}

/* ---- loading ------------------------------------------------------------------------ */

void nr_wordpiece_destroy(nr_wordpiece_t **tok) {
    if (!tok || !*tok) return;
    nr_wordpiece_t *t = *tok;
    if (t->vstr)
        for (int i = 0; i < t->n_ids; i++) free(t->vstr[i]);
    free(t->vstr);
    free(t->name);
    free(t->special);
    free(t->boundary);
    free(t->vocab.slot);
    free(t->added.slot);
    for (size_t i = 0; i < t->n_adds; i++) {
        free(t->adds[i].s);
        free(t->adds[i].cp);
    }
    free(t->adds);
    for (int i = 0; i < NR_WORDPIECE_N_SPECIAL; i++) free(t->spec[i]);
    for (size_t i = 0; i < t->n_extra; i++) free(t->extra[i]);
    free(t->extra);
    for (size_t i = 0; i < t->n_never; i++) free(t->never[i]);
    free(t->never);
    free(t);
    *tok = NULL;
}

/* Grows the per-id arrays to n ids. */
static int s_grow(nr_wordpiece_t *t, int n) {
    if (n <= t->n_ids) return 0;
    char **v = realloc(t->vstr, sizeof(char *) * (size_t)n);
    if (v) t->vstr = v;
    const char **nm = realloc(t->name, sizeof(char *) * (size_t)n);
    if (nm) t->name = nm;
    unsigned char *sp = realloc(t->special, (size_t)n);
    if (sp) t->special = sp;
    unsigned char *b = realloc(t->boundary, (size_t)n);
    if (b) t->boundary = b;
    if (!v || !nm || !sp || !b) return NR_ENOMEM;
    for (int i = t->n_ids; i < n; i++) {
        t->vstr[i] = NULL;
        t->name[i] = NULL;
        t->special[i] = 0;
        t->boundary[i] = 0;
    }
    t->n_ids = n;
    return 0;
}

static int s_valid_utf8(const char *s, size_t n) { return nr_utf8_validate((const uint8_t *)s, n, NULL) == 0; }

/* vocab.txt: one token a line (Python's universal newlines: \n, \r\n, \r). */
static int s_load_vocab_txt(nr_wordpiece_t *t, const char *text, size_t len, const char *path, char *err,
                            size_t errlen) {
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n' || (text[i] == '\r' && (i + 1 >= len || text[i + 1] != '\n'));
    if (len && text[len - 1] != '\n' && text[len - 1] != '\r') lines++;
    if (lines == 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: empty vocabulary", path);
    if (lines > S_MAX_TOKENS)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %zu tokens (at most %d)", path, lines, S_MAX_TOKENS);
    if (s_grow(t, (int)lines) < 0 || s_map_init(&t->vocab, lines) < 0)
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
    size_t p = 0;
    for (int id = 0; id < (int)lines; id++) {
        size_t e = p;
        while (e < len && text[e] != '\n' && text[e] != '\r') e++;
        size_t n = e - p;
        if (n > S_MAX_TOKEN_BYTES)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: line %d is %zu bytes long (at most %d)", path, id + 1, n,
                             S_MAX_TOKEN_BYTES);
        if (!s_valid_utf8(text + p, n)) return nr_seterr(err, errlen, NR_EMODEL, "%s: line %d is not UTF-8", path, id + 1);
        char *s = malloc(n + 1);
        if (!s) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
        memcpy(s, text + p, n);
        s[n] = '\0';
        int old = s_map_get(&t->vocab, s, n);
        if (old >= 0) { /* a duplicate: the last line wins, the earlier id decodes as [UNK] */
            free(t->vstr[old]);
            t->vstr[old] = NULL;
        }
        t->vstr[id] = s;
        s_map_set(&t->vocab, s, n, id);
        p = e;
        if (p < len && text[p] == '\r') p++;
        if (p < len && text[p] == '\n' && (e == p || text[p - 1] != '\n')) p++;
    }
    t->vocab_count = (int)t->vocab.n;
    return 0;
}

/* tokenizer.json's model.vocab {"token": id}. */
static int s_load_vocab_json(nr_wordpiece_t *t, const cJSON *obj, const char *path, char *err, size_t errlen) {
    if (!cJSON_IsObject(obj)) return nr_seterr(err, errlen, NR_EMODEL, "%s: model.vocab is not a JSON object", path);
    int count = 0, max_id = -1;
    for (const cJSON *e = obj->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !e->string || e->valuedouble < 0 || e->valuedouble >= S_MAX_TOKENS ||
            e->valuedouble != (double)e->valueint || strlen(e->string) > S_MAX_TOKEN_BYTES)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: vocabulary entry \"%.40s\" is not valid", path,
                             e->string ? e->string : "?");
        if (e->valueint > max_id) max_id = e->valueint;
        count++;
    }
    if (count == 0) return nr_seterr(err, errlen, NR_EMODEL, "%s: empty vocabulary", path);
    if (s_grow(t, max_id + 1) < 0 || s_map_init(&t->vocab, (size_t)count) < 0)
        return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
    for (const cJSON *e = obj->child; e; e = e->next) {
        size_t n = strlen(e->string);
        if (t->vstr[e->valueint] || s_map_get(&t->vocab, e->string, n) >= 0)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: id %d or token \"%.40s\" appears twice", path, e->valueint,
                             e->string);
        t->vstr[e->valueint] = strdup(e->string);
        if (!t->vstr[e->valueint]) return nr_seterr(err, errlen, NR_ENOMEM, "no memory for the vocabulary");
        s_map_set(&t->vocab, t->vstr[e->valueint], n, e->valueint);
    }
    t->vocab_count = count;
    return 0;
}

/* A token given as "text" or {"content": "text", ...}; NULL otherwise. */
static const char *s_tok_str(const cJSON *j) {
    if (cJSON_IsString(j)) return j->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int s_set_str(char **dst, const char *s) {
    char *d = s ? strdup(s) : NULL;
    if (s && !d) return NR_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

static int s_set_list(char ***list, size_t *n, const cJSON *arr) {
    for (size_t i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
    if (!cJSON_IsArray(arr)) return 0;
    size_t m = (size_t)cJSON_GetArraySize(arr);
    if (m > S_MAX_ADDED) return NR_EMODEL;
    *list = calloc(m ? m : 1, sizeof(char *));
    if (!*list) return NR_ENOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *s = s_tok_str(e);
        if (!s) continue;
        if (!((*list)[*n] = strdup(s))) return NR_ENOMEM;
        (*n)++;
    }
    return 0;
}

static const char *const s_spec_key[NR_WORDPIECE_N_SPECIAL] = {"unk_token",  "sep_token", "pad_token", "cls_token",
                                                               "mask_token", "bos_token", "eos_token"};

/* Special-token settings of tokenizer_config.json or special_tokens_map.json. */
static int s_read_specials(nr_wordpiece_t *t, const cJSON *root) {
    for (int i = 0; i < NR_WORDPIECE_N_SPECIAL; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, s_spec_key[i]);
        if (!j) continue;
        if (cJSON_IsNull(j)) {
            free(t->spec[i]);
            t->spec[i] = NULL;
        } else if (s_tok_str(j) && s_set_str(&t->spec[i], s_tok_str(j)) < 0) {
            return NR_ENOMEM;
        }
    }
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(root, "additional_special_tokens");
    if (cJSON_IsArray(extra)) return s_set_list(&t->extra, &t->n_extra, extra);
    return 0;
}

static int s_is_spec_str(const nr_wordpiece_t *t, const char *s, int *extra) {
    if (extra) *extra = 0;
    for (int i = 0; i < NR_WORDPIECE_N_SPECIAL; i++)
        if (t->spec[i] && strcmp(t->spec[i], s) == 0) return 1;
    for (size_t i = 0; i < t->n_extra; i++)
        if (strcmp(t->extra[i], s) == 0) {
            if (extra) *extra = 1;
            return 1;
        }
    return 0;
}

/* Adds an added token (the first definition of a content wins). special:
 * -1 = unknown (then: is it one of the special token strings?). normalized:
 * -1 = unknown (then: not special). */
static int s_add(nr_wordpiece_t *t, const char *s, int id, int special, int normalized) {
    for (size_t i = 0; i < t->n_adds; i++)
        if (strcmp(t->adds[i].s, s) == 0) return 0;
    if (t->n_adds >= S_MAX_ADDED || id < 0 || id >= S_MAX_TOKENS || !*s || strlen(s) > S_MAX_TOKEN_BYTES) return NR_EMODEL;
    if (!s_valid_utf8(s, strlen(s))) return NR_EMODEL;
    s_added_t *a = realloc(t->adds, sizeof(s_added_t) * (t->n_adds + 1));
    if (!a) return NR_ENOMEM;
    t->adds = a;
    a = &t->adds[t->n_adds];
    memset(a, 0, sizeof *a);
    a->s = strdup(s);
    a->cp = a->s ? s_cps(s, strlen(s), &a->n_cp) : NULL;
    if (!a->s || !a->cp) {
        free(a->s);
        return NR_ENOMEM;
    }
    a->id = id;
    a->special = special >= 0 ? special : s_is_spec_str(t, s, NULL);
    a->protect = a->special || (normalized >= 0 ? normalized : !a->special);
    t->n_adds++;
    return 0;
}

static int s_read_json(const char *dir, const char *name, cJSON **out, char *path, size_t pathlen, char *err,
                       size_t errlen) {
    snprintf(path, pathlen, "%s/%s", dir, name);
    *out = NULL;
    size_t len = 0;
    char *text = nr_model_read_file(path, strcmp(name, "tokenizer.json") == 0 ? S_MAX_FILE : S_MAX_JSON, &len);
    if (!text) {
        if (errno == ENOENT) return 0;
        return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read (%s)", path,
                         errno == EFBIG ? "too large" : strerror(errno));
    }
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", path);
    }
    return 1;
}

static int s_bool(const cJSON *root, const char *key, int def) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : def;
}

static int s_finish(nr_wordpiece_t *t, const char *path, char *err, size_t errlen) {
    /* Special tokens not yet added are added with their vocabulary id, or a
     * new id past the end (as transformers' _add_tokens does). */
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? t->n_extra : NR_WORDPIECE_N_SPECIAL;
        for (size_t i = 0; i < n; i++) {
            const char *s = pass ? t->extra[i] : t->spec[i];
            if (!s || !*s) continue;
            int id = s_map_get(&t->vocab, s, strlen(s));
            for (size_t k = 0; k < t->n_adds; k++)
                if (strcmp(t->adds[k].s, s) == 0) id = t->adds[k].id;
            if (id < 0) id = t->n_ids > t->vocab_count ? t->n_ids : t->vocab_count;
            int rc = s_add(t, s, id, 1, 0);
            if (rc < 0) return nr_seterr(err, errlen, rc, "%s: special token \"%.40s\" is not valid", path, s);
            if (s_grow(t, id + 1) < 0) return nr_seterr(err, errlen, NR_ENOMEM, "no memory");
        }
    }
    for (int i = 0; i < t->n_ids; i++) t->name[i] = t->vstr[i];
    if (s_map_init(&t->added, t->n_adds) < 0) return nr_seterr(err, errlen, NR_ENOMEM, "no memory");
    for (size_t k = 0; k < t->n_adds; k++) {
        s_added_t *a = &t->adds[k];
        if (s_grow(t, a->id + 1) < 0) return nr_seterr(err, errlen, NR_ENOMEM, "no memory");
        t->name[a->id] = a->s;
        s_map_set(&t->added, a->s, strlen(a->s), a->id);
    }
    for (size_t k = 0; k < t->n_adds; k++) {
        s_added_t *a = &t->adds[k];
        int extra = 0, spec = s_is_spec_str(t, a->s, &extra);
        if (spec || a->special) t->special[a->id] = 1;
        /* transformers' legacy_added_tokens: decoded as a piece of their own. */
        t->boundary[a->id] = !spec || (extra && a->id >= t->vocab_count);
    }
    for (int i = 0; i < NR_WORDPIECE_N_SPECIAL; i++)
        t->spec_id[i] = t->spec[i] ? s_lookup(t, t->spec[i], strlen(t->spec[i])) : -1;
    if (t->spec_id[NR_WORDPIECE_UNK] < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: the unknown token \"%.40s\" is not in the vocabulary", path,
                         t->spec[NR_WORDPIECE_UNK] ? t->spec[NR_WORDPIECE_UNK] : "(none)");
    return 0;
}

static int s_load(nr_wordpiece_t *t, const char *dir, char *err, size_t errlen) {
    char path[4096], jpath[4096];
    cJSON *cfg = NULL, *map = NULL, *added = NULL, *tj = NULL;
    int rc = 0;
    t->lower = t->chinese = t->basic = t->cleanup = 1;
    t->strip_accents = -1;
    t->max_len = 512;
    t->max_chars = 100;
    strcpy(t->prefix, "##");
    static const char *const defaults[NR_WORDPIECE_N_SPECIAL] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]", NULL, NULL};
    for (int i = 0; i < NR_WORDPIECE_N_SPECIAL; i++)
        if (s_set_str(&t->spec[i], defaults[i]) < 0) return nr_seterr(err, errlen, NR_ENOMEM, "no memory");

    if ((rc = s_read_json(dir, "tokenizer.json", &tj, jpath, sizeof jpath, err, errlen)) < 0) goto done;
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    size_t len = 0;
    char *text = nr_model_read_file(path, S_MAX_FILE, &len);
    if (text) {
        rc = s_load_vocab_txt(t, text, len, path, err, errlen);
        free(text);
        if (rc < 0) goto done;
    } else if (errno != ENOENT) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read (%s)", path, errno == EFBIG ? "too large" : strerror(errno));
        goto done;
    } else if (!tj) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: neither vocab.txt nor tokenizer.json", dir);
        goto done;
    } else {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
        if (!cJSON_IsObject(model) || !cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece") != 0) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: model is not a WordPiece model", jpath);
            goto done;
        }
        if ((rc = s_load_vocab_json(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), jpath, err, errlen)) < 0) goto done;
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
        if (cJSON_IsString(j) && s_set_str(&t->spec[NR_WORDPIECE_UNK], j->valuestring) < 0) rc = NR_ENOMEM;
        j = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
        if (cJSON_IsNumber(j) && j->valuedouble >= 0 && j->valuedouble < 1e9) t->max_chars = j->valueint;
        j = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
        if (cJSON_IsString(j)) {
            if (strlen(j->valuestring) >= sizeof t->prefix) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: continuing_subword_prefix is too long", jpath);
                goto done;
            }
            strcpy(t->prefix, j->valuestring);
        }
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(tj, "normalizer");
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(norm, "type");
        if (cJSON_IsString(nt) && strcmp(nt->valuestring, "BertNormalizer") == 0) {
            t->lower = s_bool(norm, "lowercase", 1);
            t->chinese = s_bool(norm, "handle_chinese_chars", 1);
            j = cJSON_GetObjectItemCaseSensitive(norm, "strip_accents");
            t->strip_accents = cJSON_IsBool(j) ? cJSON_IsTrue(j) : -1;
        }
        if (rc < 0) goto done;
    }
    /* tokenizer_config.json, then special_tokens_map.json over it. */
    if ((rc = s_read_json(dir, "tokenizer_config.json", &cfg, path, sizeof path, err, errlen)) < 0) goto done;
    if (cfg) {
        t->lower = s_bool(cfg, "do_lower_case", t->lower);
        t->basic = s_bool(cfg, "do_basic_tokenize", 1);
        t->chinese = s_bool(cfg, "tokenize_chinese_chars", t->chinese);
        t->cleanup = s_bool(cfg, "clean_up_tokenization_spaces", 1);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "strip_accents");
        if (cJSON_IsBool(j)) t->strip_accents = cJSON_IsTrue(j);
        else if (cJSON_IsNull(j)) t->strip_accents = -1;
        j = cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length");
        if (cJSON_IsNumber(j) && j->valuedouble >= 1) t->max_len = j->valuedouble >= 2147483647.0 ? INT32_MAX : j->valueint;
        if ((rc = s_set_list(&t->never, &t->n_never, cJSON_GetObjectItemCaseSensitive(cfg, "never_split"))) < 0 ||
            (rc = s_read_specials(t, cfg)) < 0) {
            rc = nr_seterr(err, errlen, rc, "%s: cannot read the special tokens", path);
            goto done;
        }
    }
    if ((rc = s_read_json(dir, "special_tokens_map.json", &map, path, sizeof path, err, errlen)) < 0) goto done;
    if (map && (rc = s_read_specials(t, map)) < 0) {
        rc = nr_seterr(err, errlen, rc, "%s: cannot read the special tokens", path);
        goto done;
    }
    /* Added tokens: tokenizer_config.json's added_tokens_decoder, added_tokens.json, tokenizer.json's added_tokens. */
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    for (const cJSON *e = cJSON_IsObject(dec) ? dec->child : NULL; e && rc == 0; e = e->next) {
        char *endp;
        long id = strtol(e->string, &endp, 10);
        const char *s = s_tok_str(e);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "special");
        const cJSON *nz = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        if (*endp || !s || (rc = s_add(t, s, (int)(id < 0 || id > S_MAX_TOKENS ? -1 : id),
                                       cJSON_IsBool(sp) ? cJSON_IsTrue(sp) : -1, cJSON_IsBool(nz) ? cJSON_IsTrue(nz) : -1)) < 0)
            rc = nr_seterr(err, errlen, rc < 0 ? rc : NR_EMODEL, "%s: added token \"%.40s\" is not valid", path, e->string);
    }
    if (rc < 0) goto done;
    if ((rc = s_read_json(dir, "added_tokens.json", &added, path, sizeof path, err, errlen)) < 0) goto done;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= S_MAX_TOKENS ||
            (rc = s_add(t, e->string, e->valueint, -1, -1)) < 0) {
            rc = nr_seterr(err, errlen, rc < 0 ? rc : NR_EMODEL, "%s: added token \"%.40s\" is not valid", path, e->string);
            goto done;
        }
    }
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    const cJSON *a;
    cJSON_ArrayForEach(a, at) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(a, "special");
        const cJSON *nz = cJSON_GetObjectItemCaseSensitive(a, "normalized");
        const char *s = s_tok_str(a);
        if (!s || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= S_MAX_TOKENS ||
            (rc = s_add(t, s, id->valueint, cJSON_IsBool(sp) ? cJSON_IsTrue(sp) : -1,
                        cJSON_IsBool(nz) ? cJSON_IsTrue(nz) : -1)) < 0) {
            rc = nr_seterr(err, errlen, rc < 0 ? rc : NR_EMODEL, "%s: an added token is not valid", jpath);
            goto done;
        }
    }
    rc = s_finish(t, dir, err, errlen);
done:
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    cJSON_Delete(added);
    cJSON_Delete(tj);
    return rc;
}

int nr_wordpiece_load(const char *dir, nr_wordpiece_t **out, char *err, size_t errlen) {
    if (!dir || !out) return nr_seterr(err, errlen, NR_EINVAL, "wordpiece: bad arguments");
    *out = NULL;
    nr_wordpiece_t *t = calloc(1, sizeof *t);
    if (!t) return nr_seterr(err, errlen, NR_ENOMEM, "no memory");
    int rc = s_load(t, dir, err, errlen);
    if (rc < 0) {
        nr_wordpiece_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int nr_wordpiece_vocab_size(const nr_wordpiece_t *tok) { return tok ? tok->n_ids : 0; }

int nr_wordpiece_token_id(const nr_wordpiece_t *tok, const char *token) {
    return tok && token ? s_lookup(tok, token, strlen(token)) : -1;
}

const char *nr_wordpiece_token(const nr_wordpiece_t *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_ids) return NULL;
    return tok->name[id] ? tok->name[id] : tok->spec[NR_WORDPIECE_UNK];
}

int nr_wordpiece_is_special(const nr_wordpiece_t *tok, int id) {
    return tok && id >= 0 && id < tok->n_ids && tok->special[id];
}

int nr_wordpiece_special_id(const nr_wordpiece_t *tok, nr_wordpiece_special_t which) {
    return tok && (int)which >= 0 && which < NR_WORDPIECE_N_SPECIAL ? tok->spec_id[which] : -1;
}

int nr_wordpiece_max_length(const nr_wordpiece_t *tok) { return tok ? tok->max_len : 0; }
int nr_wordpiece_cleanup_default(const nr_wordpiece_t *tok) { return tok ? tok->cleanup : 0; }

/* ---- encoding -------------------------------------------------------------------- */

typedef struct {
    int *ids;
    size_t n, cap;
    char *buf; /* scratch for UTF-8 of a word */
    size_t *off;
    size_t word_cap;
} s_out_t;

static int s_push(s_out_t *o, int id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int *n = realloc(o->ids, sizeof(int) * cap);
        if (!n) return NR_ENOMEM;
        o->ids = n;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
    return 0;
}

/* Longest added token at cp[i..n) (only those kept from lower-casing when
 * protect_only); returns its length in code points (0 = none) and its id. */
static size_t s_match(const nr_wordpiece_t *t, const uint32_t *cp, size_t n, size_t i, int protect_only, int *id) {
    size_t best = 0;
    for (size_t k = 0; k < t->n_adds; k++) {
        const s_added_t *a = &t->adds[k];
        if ((protect_only && !a->protect) || a->n_cp <= best || a->n_cp > n - i) continue;
        if (a->cp[0] == cp[i] && memcmp(a->cp, cp + i, a->n_cp * sizeof(uint32_t)) == 0) {
            best = a->n_cp;
            *id = a->id;
        }
    }
    return best;
}

/* UTF-8 of w[0..k) into o->buf (after room for the prefix) with each code point's offset in o->off. */
static int s_word_utf8(s_out_t *o, const uint32_t *w, size_t k, size_t pre) {
    if (k + 1 > o->word_cap) {
        size_t cap = (k + 1) * 2;
        char *b = realloc(o->buf, cap * 4 + pre + 1);
        if (b) o->buf = b;
        size_t *f = realloc(o->off, sizeof(size_t) * cap);
        if (f) o->off = f;
        if (!b || !f) return NR_ENOMEM;
        o->word_cap = cap;
    }
    size_t p = pre;
    for (size_t i = 0; i < k; i++) {
        o->off[i] = p;
        p += nr_utf8_encode(w[i], o->buf + p);
    }
    o->off[k] = p;
    return 0;
}

/* Greedy longest-match-first WordPiece of one word. */
static int s_wordpiece(const nr_wordpiece_t *t, const uint32_t *w, size_t k, s_out_t *o) {
    int unk = t->spec_id[NR_WORDPIECE_UNK];
    if (k == 0) return 0;
    if (k > (size_t)t->max_chars) return s_push(o, unk);
    size_t pre = strlen(t->prefix);
    if (s_word_utf8(o, w, k, pre) < 0) return NR_ENOMEM;
    size_t first = o->n;
    for (size_t start = 0; start < k;) {
        int id = -1;
        size_t end = k;
        for (; end > start; end--) {
            const char *s = o->buf + o->off[start];
            size_t len = o->off[end] - o->off[start];
            if (start > 0) { /* the prefix goes just before the piece */
                char save[16];
                char *p = o->buf + o->off[start] - pre;
                memcpy(save, p, pre);
                memcpy(p, t->prefix, pre);
                if (s_map_get(&t->vocab, p, len + pre) >= 0) id = s_lookup(t, p, len + pre);
                memcpy(p, save, pre);
            } else if (s_map_get(&t->vocab, s, len) >= 0) {
                id = s_lookup(t, s, len);
            }
            if (id >= 0) break;
        }
        if (id < 0) {
            o->n = first;
            return s_push(o, unk);
        }
        if (s_push(o, id) < 0) return NR_ENOMEM;
        start = end;
    }
    return 0;
}

static int s_in_never(const nr_wordpiece_t *t, s_out_t *o, const uint32_t *w, size_t k) {
    if (t->n_never == 0) return 0;
    if (s_word_utf8(o, w, k, 0) < 0) return -1;
    size_t len = o->off[k];
    for (size_t i = 0; i < t->n_never; i++)
        if (strlen(t->never[i]) == len && memcmp(t->never[i], o->buf, len) == 0) return 1;
    return 0;
}

/* BasicTokenizer + WordPiece over one piece of text between added tokens. */
static int s_segment(const nr_wordpiece_t *t, const uint32_t *cp, size_t n, s_out_t *o) {
    if (n == 0) return 0;
    uint32_t *a = malloc(sizeof(uint32_t) * (3 * n + 1)), *b = malloc(sizeof(uint32_t) * (12 * n + 1));
    uint32_t *w = malloc(sizeof(uint32_t) * (8 * n + 1)), *x = malloc(sizeof(uint32_t) * (32 * n + 1));
    int rc = 0;
    if (!a || !b || !w || !x) {
        rc = NR_ENOMEM;
        goto done;
    }
    size_t m = 0;
    if (t->basic) {
        for (size_t i = 0; i < n; i++) { /* _clean_text, _tokenize_chinese_chars */
            uint32_t c = cp[i], cl = s_class(c);
            if (c == 0 || c == 0xFFFD || (cl & NR_WP_CTRL)) continue;
            if (cl & NR_WP_WS) c = ' ';
            if (t->chinese && (cl & NR_WP_CJK)) {
                a[m++] = ' ';
                a[m++] = c;
                a[m++] = ' ';
            } else {
                a[m++] = c;
            }
        }
        m = s_nfc(a, m, b);
    } else {
        memcpy(b, cp, n * sizeof(uint32_t));
        m = n;
    }
    int strip = t->lower ? t->strip_accents != 0 : t->strip_accents == 1;
    for (size_t i = 0; i < m && rc == 0;) { /* whitespace_tokenize (str.split) */
        if (s_class(b[i]) & NR_WP_PYSPACE) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < m && !(s_class(b[j]) & NR_WP_PYSPACE)) j++;
        const uint32_t *tokw = b + i;
        size_t k = j - i;
        i = j;
        if (!t->basic) {
            rc = s_wordpiece(t, tokw, k, o);
            continue;
        }
        int never = s_in_never(t, o, tokw, k);
        if (never < 0) {
            rc = NR_ENOMEM;
            break;
        }
        if (never) { /* kept whole; converted as it is */
            int id = s_lookup(t, o->buf, o->off[k]);
            rc = s_push(o, id >= 0 ? id : t->spec_id[NR_WORDPIECE_UNK]);
            continue;
        }
        size_t kw = 0;
        for (size_t q = 0; q < k; q++) {
            if (t->lower && tokw[q] == 0x130) { /* "İ".lower() == "i̇" */
                w[kw++] = 'i';
                w[kw++] = 0x307;
            } else {
                w[kw++] = t->lower ? s_lower1(tokw[q]) : tokw[q];
            }
        }
        if (strip) { /* _run_strip_accents: NFD, drop Mn */
            size_t nx = s_nfd(w, kw, x);
            kw = 0;
            for (size_t q = 0; q < nx; q++)
                if (!(s_class(x[q]) & NR_WP_MN)) w[kw++] = x[q];
        }
        for (size_t q = 0; q < kw && rc == 0;) { /* _run_split_on_punc */
            size_t r = q + 1;
            if (!(s_class(w[q]) & NR_WP_PUNCT))
                while (r < kw && !(s_class(w[r]) & NR_WP_PUNCT)) r++;
            never = s_in_never(t, o, w + q, r - q);
            if (never > 0) {
                int id = s_lookup(t, o->buf, o->off[r - q]);
                rc = s_push(o, id >= 0 ? id : t->spec_id[NR_WORDPIECE_UNK]);
            } else {
                rc = never < 0 ? NR_ENOMEM : s_wordpiece(t, w + q, r - q, o);
            }
            q = r;
        }
    }
done:
    free(a);
    free(b);
    free(w);
    free(x);
    return rc;
}

int nr_wordpiece_encode(const nr_wordpiece_t *tok, const char *text, size_t len, unsigned flags, int **ids,
                        size_t *n_ids, char *err, size_t errlen) {
    if (!tok || !ids || !n_ids || (!text && len)) return nr_seterr(err, errlen, NR_EINVAL, "encode: bad arguments");
    *ids = NULL;
    *n_ids = 0;
    if ((flags & NR_WORDPIECE_ADD_SPECIAL) && (tok->spec_id[NR_WORDPIECE_CLS] < 0 || tok->spec_id[NR_WORDPIECE_SEP] < 0))
        return nr_seterr(err, errlen, NR_EINVAL, "encode: this tokenizer has no [CLS] or [SEP] token");
    if (len > ((size_t)1 << 26)) return nr_seterr(err, errlen, NR_ETEXT, "encode: text of %zu bytes is too long", len);
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int l = s_utf8((const unsigned char *)text + i, len - i, &c);
        if (!l) return nr_seterr(err, errlen, NR_ETEXT, "encode: invalid UTF-8 at byte %zu", i);
        i += (size_t)l;
    }
    size_t n = 0;
    uint32_t *cp = s_cps(text ? text : "", len, &n), *low = NULL;
    s_out_t o = {0};
    int rc = 0;
    if (!cp) {
        rc = NR_ENOMEM;
        goto done;
    }
    if ((flags & NR_WORDPIECE_ADD_SPECIAL) && (rc = s_push(&o, tok->spec_id[NR_WORDPIECE_CLS])) < 0) goto done;
    if (tok->basic && tok->lower) { /* lower case, except the special tokens */
        low = malloc(sizeof(uint32_t) * (2 * n + 1));
        if (!low) {
            rc = NR_ENOMEM;
            goto done;
        }
        size_t m = 0;
        for (size_t i = 0; i < n;) {
            int id;
            size_t k = s_match(tok, cp, n, i, 1, &id);
            if (k) {
                memcpy(low + m, cp + i, k * sizeof(uint32_t));
                m += k;
                i += k;
            } else if (cp[i] == 0x130) {
                low[m++] = 'i';
                low[m++] = 0x307;
                i++;
            } else {
                low[m++] = s_lower1(cp[i++]);
            }
        }
        free(cp);
        cp = low;
        low = NULL;
        n = m;
    }
    size_t seg = 0;
    for (size_t i = 0; i < n && rc == 0;) { /* added tokens first, never split */
        int id = -1;
        size_t k = s_match(tok, cp, n, i, 0, &id);
        if (!k) {
            i++;
            continue;
        }
        if ((rc = s_segment(tok, cp + seg, i - seg, &o)) == 0) rc = s_push(&o, id);
        i += k;
        seg = i;
    }
    if (rc == 0) rc = s_segment(tok, cp + seg, n - seg, &o);
    if (rc == 0 && (flags & NR_WORDPIECE_ADD_SPECIAL)) rc = s_push(&o, tok->spec_id[NR_WORDPIECE_SEP]);
done:
    free(cp);
    free(low);
    free(o.buf);
    free(o.off);
    if (rc < 0) {
        free(o.ids);
        return nr_seterr(err, errlen, rc, "encode: no memory");
    }
    *ids = o.ids;
    *n_ids = o.n;
    if (!*ids) *ids = malloc(sizeof(int)); /* an empty result is still an array */
    if (!*ids) return nr_seterr(err, errlen, NR_ENOMEM, "encode: no memory");
    return 0;
}

/* ---- decoding -------------------------------------------------------------------- */

/* convert_tokens_to_string on s[from..*n): " ##" removed, then str.strip(). */
static void s_convert(char *s, size_t from, size_t *n) {
    size_t m = from + nr_text_replace_all(s + from, *n - from, " ##", "");
    size_t b = from, e = m;
    uint32_t c;
    int l;
    while (b < e && (l = s_utf8((unsigned char *)s + b, e - b, &c)) > 0 && (s_class(c) & NR_WP_PYSPACE)) b += (size_t)l;
    while (e > b) { /* back to the start of the last code point */
        size_t p = e - 1;
        while (p > b && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
        if (s_utf8((unsigned char *)s + p, e - p, &c) > 0 && (s_class(c) & NR_WP_PYSPACE)) e = p;
        else break;
    }
    memmove(s + from, s + b, e - b);
    *n = from + (e - b);
    s[*n] = '\0';
}

int nr_wordpiece_decode(const nr_wordpiece_t *tok, const int *ids, size_t n_ids, unsigned flags, char **text,
                        size_t *len, char *err, size_t errlen) {
    if (!tok || !text || (!ids && n_ids)) return nr_seterr(err, errlen, NR_EINVAL, "decode: bad arguments");
    *text = NULL;
    size_t cap = 1;
    const char *unk = tok->spec[NR_WORDPIECE_UNK];
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_ids)
            return nr_seterr(err, errlen, NR_EINVAL, "decode: id %d at position %zu is not in the vocabulary (0..%d)",
                             ids[i], i, tok->n_ids - 1);
        const char *s = tok->name[ids[i]] ? tok->name[ids[i]] : unk;
        cap += strlen(s) + 2;
    }
    char *out = malloc(cap);
    if (!out) return nr_seterr(err, errlen, NR_ENOMEM, "decode: no memory");
    /* out = " ".join(sub_texts); the current sub-text is out[cur..o). */
    size_t o = 0, cur = 0;
    int n_sub = 0, in_cur = 0;
    int unk_special = tok->special[tok->spec_id[NR_WORDPIECE_UNK]];
    for (size_t i = 0; i < n_ids; i++) {
        int id = ids[i];
        const char *s = tok->name[id] ? tok->name[id] : unk;
        int special = tok->name[id] ? tok->special[id] : unk_special;
        if ((flags & NR_WORDPIECE_SKIP_SPECIAL) && special) continue;
        size_t sl = strlen(s);
        if (tok->name[id] && tok->boundary[id]) {
            if (in_cur) {
                s_convert(out, cur, &o);
                if (o == cur && n_sub > 0) o--; /* an empty sub-text is dropped with its separator */
                else if (o > cur) n_sub++;
                in_cur = 0;
            }
            if (n_sub > 0) out[o++] = ' ';
            memcpy(out + o, s, sl);
            o += sl;
            n_sub++;
            continue;
        }
        if (!in_cur) {
            if (n_sub > 0) out[o++] = ' ';
            cur = o;
            in_cur = 1;
        } else {
            out[o++] = ' ';
        }
        memcpy(out + o, s, sl);
        o += sl;
    }
    out[o] = '\0';
    if (in_cur) s_convert(out, cur, &o);
    if (flags & NR_WORDPIECE_CLEANUP) o = nr_text_clean_up_tokenization(out, o);
    *text = out;
    if (len) *len = o;
    return 0;
}
