/* PTB-like caption tokenisation and a word vocabulary. The rules (which
 * characters split, which stay inside a word, the clitics) are listed in
 * client/EVAL.md; they follow Stanford's PTBTokenizer as pycocoevalcap
 * runs it, without its Java. */
#include "client/eval/tokenize.h"
#include "common/buf.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

void nr_evsent_clear(nr_evsent_t *self) {
    free(self->w);
    self->w = NULL;
    self->n = 0;
}

static int s_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}
static int s_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int s_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Abbreviations whose final period PTB keeps (the common ones). */
static const char *const s_abbrev[] = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc",
                                       "mt", "ft", "inc", "ltd", NULL};

/* Copies text lower-cased, with the typographic quotes, dashes and
 * ellipsis PTB normalises mapped to their ASCII forms. */
static char *s_normalise(const char *text) {
    size_t n = strlen(text);
    char *out = malloc(n * 2 + 1); /* "..." from 3 bytes, "--" from 3: never longer */
    if (!out) return NULL;
    size_t j = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0xE2 && i + 2 < n && s[i + 1] == 0x80) {
            unsigned char c = s[i + 2];
            const char *rep = NULL;
            if (c == 0x98 || c == 0x99) rep = "'";      /* U+2018, U+2019 */
            else if (c == 0x9C || c == 0x9D) rep = "\""; /* U+201C, U+201D */
            else if (c == 0x93 || c == 0x94) rep = "--"; /* en and em dash */
            else if (c == 0xA6) rep = "...";             /* U+2026 */
            if (rep) {
                size_t r = strlen(rep);
                memcpy(out + j, rep, r);
                j += r;
                i += 3;
                continue;
            }
        }
        unsigned char c = s[i++];
        out[j++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out[j] = '\0';
    return out;
}

/* Characters that stay inside a word when a word character is on both
 * sides ("black-and-white", "3.5", "u.s", "and/or", "at&t"; ',' between
 * digits only: "1,000"). */
static int s_joins(const unsigned char *s, size_t i) {
    if (i == 0 || !s_alnum(s[i - 1]) || !s_alnum(s[i + 1])) return 0;
    unsigned char c = s[i];
    if (c == ',') return s_digit(s[i - 1]) && s_digit(s[i + 1]);
    return c == '-' || c == '.' || c == '/' || c == '&';
}

/* 1 when word w (len bytes) is letters joined by single periods ("u.s"). */
static int s_acronym(const unsigned char *w, size_t len) {
    if (len < 3) return 0;
    for (size_t i = 0; i < len; i++)
        if ((i % 2 == 0) != (w[i] >= 'a' && w[i] <= 'z') || (i % 2 == 1 && w[i] != '.')) return 0;
    return 1;
}

static int s_is_abbrev(const unsigned char *w, size_t len) {
    for (size_t i = 0; s_abbrev[i]; i++)
        if (strlen(s_abbrev[i]) == len && !memcmp(s_abbrev[i], w, len)) return 1;
    return 0;
}

typedef struct {
    nr_buf_t buf;
    size_t words;
} s_out_t;

static void s_emit(s_out_t *o, const unsigned char *w, size_t len) {
    if (!len || o->words >= NR_EVTOK_MAX_WORDS) return;
    if (o->words++) nr_buf_puts(&o->buf, " ");
    nr_buf_putn(&o->buf, (const char *)w, len);
}

/* The clitic at s[i] == '\'' ("'s", "'re" ...) followed by a non-word
 * character: its length, else 0. */
static size_t s_clitic(const unsigned char *s, size_t i) {
    static const char *const clitics[] = {"'s", "'m", "'d", "'re", "'ve", "'ll", NULL};
    for (size_t k = 0; clitics[k]; k++) {
        size_t len = strlen(clitics[k]);
        if (!strncmp((const char *)s + i, clitics[k], len) && !s_alnum(s[i + len])) return len;
    }
    return 0;
}

int nr_evtok_text(const char *text, char **out) {
    *out = NULL;
    if (!text) text = "";
    if (strlen(text) > NR_EVTOK_MAX_BYTES) return NR_ETEXT;
    unsigned char *s = (unsigned char *)s_normalise(text);
    if (!s) return NR_ENOMEM;
    s_out_t o = {{0}, 0};
    size_t i = 0;
    while (s[i]) {
        unsigned char c = s[i];
        if (s_space(c)) {
            i++;
        } else if (s_alnum(c)) {
            size_t start = i;
            while (s_alnum(s[i]) || (s[i] && s_joins(s, i))) i++;
            size_t len = i - start;
            /* "don't" -> "do" "n't", "can't" -> "ca" "n't" */
            if (s[start + len - 1] == 'n' && s[i] == '\'' && s[i + 1] == 't' && !s_alnum(s[i + 2])) {
                s_emit(&o, s + start, len - 1);
                s_emit(&o, (const unsigned char *)"n't", 3);
                i += 2;
                continue;
            }
            /* "u.s." and "mr." keep their final period. */
            if (s[i] == '.' && (s_acronym(s + start, len) || s_is_abbrev(s + start, len))) i++;
            s_emit(&o, s + start, i - start);
        } else if (c == '\'') {
            size_t len = i > 0 && s_alnum(s[i - 1]) ? s_clitic(s, i) : 0;
            if (len) s_emit(&o, s + i, len); /* a clitic is a word; a lone ' is punctuation */
            i += len ? len : 1;
        } else if (strchr("\"`()[]{}.?!,:;-", c)) {
            i++; /* punctuation, removed (PUNCTUATIONS, quotes and brackets) */
        } else {
            s_emit(&o, s + i, 1); /* other symbols ($ % # ...) stay, as PTB keeps them */
            i++;
        }
    }
    free(s);
    if (o.buf.failed) {
        nr_buf_clear(&o.buf);
        return NR_ENOMEM;
    }
    *out = nr_buf_take(&o.buf, NULL);
    return *out ? 0 : NR_ENOMEM;
}

/* ---- vocabulary ---- */

struct nr_evtok {
    char **words;     /* by id */
    uint32_t *slots;  /* id + 1, 0 empty */
    size_t n, cap;    /* words, slots */
};

nr_evtok_t *nr_evtok_new(void) { return calloc(1, sizeof(nr_evtok_t)); }

void nr_evtok_destroy(nr_evtok_t **self) {
    if (!self || !*self) return;
    for (size_t i = 0; i < (*self)->n; i++) free((*self)->words[i]);
    free((*self)->words);
    free((*self)->slots);
    free(*self);
    *self = NULL;
}

static uint64_t s_hash(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int s_rehash(nr_evtok_t *self) {
    size_t cap = self->cap ? self->cap * 2 : 256;
    uint32_t *slots = calloc(cap, sizeof *slots);
    char **words = realloc(self->words, cap / 2 * sizeof *words);
    if (!slots || !words) {
        free(slots);
        if (words) self->words = words;
        return NR_ENOMEM;
    }
    self->words = words;
    for (size_t id = 0; id < self->n; id++) {
        size_t i = (size_t)(s_hash(words[id], strlen(words[id])) & (cap - 1));
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = (uint32_t)id + 1;
    }
    free(self->slots);
    self->slots = slots;
    self->cap = cap;
    return 0;
}

/* The id of word w (len bytes), added when new; -1 when out of memory. */
static int64_t s_intern(nr_evtok_t *self, const char *w, size_t len) {
    if ((self->n + 1) * 2 > self->cap && s_rehash(self)) return -1;
    size_t i = (size_t)(s_hash(w, len) & (self->cap - 1));
    while (self->slots[i]) {
        const char *known = self->words[self->slots[i] - 1];
        if (strlen(known) == len && !memcmp(known, w, len)) return self->slots[i] - 1;
        i = (i + 1) & (self->cap - 1);
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, w, len);
    copy[len] = '\0';
    self->words[self->n] = copy;
    self->slots[i] = (uint32_t)++self->n;
    return (int64_t)self->n - 1;
}

int nr_evtok_sentence(nr_evtok_t *self, const char *text, nr_evsent_t *out) {
    nr_evsent_clear(out);
    char *tok;
    int rc = nr_evtok_text(text, &tok);
    if (rc) return rc;
    size_t words = 0;
    for (const char *p = tok; *p; p++)
        if (*p != ' ' && (p == tok || p[-1] == ' ')) words++;
    out->w = malloc((words ? words : 1) * sizeof *out->w);
    if (!out->w) {
        free(tok);
        return NR_ENOMEM;
    }
    for (char *p = tok; *p;) {
        size_t len = strcspn(p, " ");
        int64_t id = s_intern(self, p, len);
        if (id < 0) {
            free(tok);
            nr_evsent_clear(out);
            return NR_ENOMEM;
        }
        out->w[out->n++] = (uint32_t)id;
        p += len;
        while (*p == ' ') p++;
    }
    free(tok);
    return 0;
}

const char *nr_evtok_word(const nr_evtok_t *self, uint32_t id) {
    return id < self->n ? self->words[id] : NULL;
}
