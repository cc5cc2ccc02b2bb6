/* G2P for Kokoro: phonemize.js's normalization and IPA mapping in C, with
 * espeak-ng (optional, GPL-3) between the two; see g2p.h. Each regular
 * expression of phonemize.js is one rule here, applied over the whole text
 * in one left-to-right pass, as String.replace with the g flag does. JS
 * regex classes without the u flag are ASCII (\d, \b, [A-Z]), so the rules
 * look at bytes; UTF-8 continuation bytes are never word characters. */
#include "models/speech/g2p.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/utf8.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef NR_HAVE_ESPEAK
#include <espeak-ng/speak_lib.h>
#endif

/* A rule looks at s[i] (s is NUL-terminated, n = strlen): on a match it
 * appends the replacement to out and returns the match length; otherwise it
 * appends nothing and returns 0 (a zero-width insertion appends and returns
 * 0, the driver then copies s[i]). */
typedef size_t (*s_rule_fn)(const char *s, size_t n, size_t i, nr_buf_t *out);

static int s_word(char c) { return isalnum((unsigned char)c) || c == '_'; }
static int s_digit(char c) { return c >= '0' && c <= '9'; }
static int s_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int s_lower(char c) { return c >= 'a' && c <= 'z'; }
static int s_alpha(char c) { return s_upper(c) || s_lower(c); }
static int s_wb(const char *s, size_t n, size_t i) {
    int a = i > 0 && s_word(s[i - 1]), b = i < n && s_word(s[i]);
    return a != b;
}

static char *s_pass(const char *s, s_rule_fn rule) {
    size_t n = strlen(s);
    nr_buf_t b = {0};
    nr_buf_putn(&b, "", 0);
    for (size_t i = 0; i < n;) {
        size_t m = rule(s, n, i, &b);
        if (m) i += m;
        else nr_buf_putn(&b, s + i++, 1);
    }
    return nr_buf_take(&b, NULL);
}

/* Runs rules in order over *s, replacing it. Returns 0 or NR_ENOMEM. */
static int s_passes(char **s, const s_rule_fn *rules, size_t n_rules) {
    for (size_t r = 0; r < n_rules; r++) {
        char *next = s_pass(*s, rules[r]);
        free(*s);
        *s = next;
        if (!next) return NR_ENOMEM;
    }
    return 0;
}

/* Step 1-3 of normalize_text: quotes and brackets, CJK punctuation, every
 * JS whitespace character but space and newline to a space. */
static const char *s_map_cp(uint32_t cp) {
    switch (cp) {
    case 0x2018: case 0x2019: return "'";
    case 0xAB: case 0xBB: case 0x201C: case 0x201D: return "\"";
    case '(': return "\xC2\xAB";
    case ')': return "\xC2\xBB";
    case 0x3001: return ", ";
    case 0x3002: return ". ";
    case 0xFF01: return "! ";
    case 0xFF0C: return ", ";
    case 0xFF1A: return ": ";
    case 0xFF1B: return "; ";
    case 0xFF1F: return "? ";
    case '\t': case '\v': case '\f': case '\r': case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
        return " ";
    default:
        return cp >= 0x2000 && cp <= 0x200A ? " " : NULL;
    }
}

static char *s_map_chars(const char *text, size_t len) {
    nr_buf_t b = {0};
    nr_buf_putn(&b, "", 0);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = nr_utf8_decode((const uint8_t *)text + i, len - i, &cp, NULL);
        if (k == 0) k = 1, cp = 0xFFFD; /* callers pass valid UTF-8; keep the byte */
        const char *m = s_map_cp(cp);
        if (m) nr_buf_puts(&b, m);
        else nr_buf_putn(&b, text + i, k);
        i += k;
    }
    return nr_buf_take(&b, NULL);
}

/* `/  +/` without g: only the first run of spaces shrinks to one. */
static void s_first_double_space(char *s) {
    char *p = strstr(s, "  ");
    if (!p) return;
    size_t run = strspn(p, " ");
    memmove(p + 1, p + run, strlen(p + run) + 1);
}

/* (?<=\n) +(?=\n) -> "" */
static size_t s_r_blank_line(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n, (void)out;
    if (i == 0 || s[i - 1] != '\n' || s[i] != ' ') return 0;
    size_t j = i + strspn(s + i, " ");
    return s[j] == '\n' ? j - i : 0;
}

/* " [A-Z]" follows at s[i]. */
static int s_space_cap(const char *s, size_t i) { return s[i] == ' ' && s_upper(s[i + 1]); }

/* \bD[Rr]\.(?= [A-Z]) -> Doctor */
static size_t s_r_doctor(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (!s_wb(s, n, i) || s[i] != 'D' || (s[i + 1] != 'R' && s[i + 1] != 'r') || s[i + 2] != '.' ||
        !s_space_cap(s, i + 3))
        return 0;
    nr_buf_puts(out, "Doctor");
    return 3;
}

/* \b(?:<mixed>|<upper>(?= [A-Z])) -> word, for Mr. Ms. Mrs. */
static size_t s_title(const char *s, size_t n, size_t i, nr_buf_t *out, const char *mixed,
                      const char *upper, const char *word) {
    if (!s_wb(s, n, i)) return 0;
    size_t k = strlen(mixed);
    if (!strncmp(s + i, mixed, k) || (!strncmp(s + i, upper, k) && s_space_cap(s, i + k))) {
        nr_buf_puts(out, word);
        return k;
    }
    return 0;
}
static size_t s_r_mister(const char *s, size_t n, size_t i, nr_buf_t *out) {
    return s_title(s, n, i, out, "Mr.", "MR.", "Mister");
}
static size_t s_r_miss(const char *s, size_t n, size_t i, nr_buf_t *out) {
    return s_title(s, n, i, out, "Ms.", "MS.", "Miss");
}
static size_t s_r_mrs(const char *s, size_t n, size_t i, nr_buf_t *out) {
    return s_title(s, n, i, out, "Mrs.", "MRS.", "Mrs");
}

/* /\betc\.(?! [A-Z])/i -> etc (with i, [A-Z] is any ASCII letter) */
static size_t s_r_etc(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (!s_wb(s, n, i) || strncasecmp(s + i, "etc.", 4) || (s[i + 4] == ' ' && s_alpha(s[i + 5])))
        return 0;
    nr_buf_puts(out, "etc");
    return 4;
}

/* /\b(y)eah?\b/i -> $1e'a */
static size_t s_r_yeah(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (!s_wb(s, n, i) || strncasecmp(s + i, "yea", 3)) return 0;
    size_t len = (s[i + 3] == 'h' || s[i + 3] == 'H') && s_wb(s, n, i + 4) ? 4 : 3;
    if (len == 3 && !s_wb(s, n, i + 3)) return 0;
    nr_buf_putn(out, s + i, 1);
    nr_buf_puts(out, "e'a");
    return len;
}

static size_t s_digits(const char *s, size_t i) {
    size_t j = i;
    while (s_digit(s[j])) j++;
    return j - i;
}

/* \d*\.\d+ at i: the match length, or 0. */
static size_t s_decimal(const char *s, size_t i) {
    size_t a = s_digits(s, i);
    if (s[i + a] != '.' || !s_digit(s[i + a + 1])) return 0;
    return a + 1 + s_digits(s, i + a + 1);
}

/* \d*\.\d+|\b\d{4}s?\b|(?<!:)\b(?:[1-9]|1[0-2]):[0-5]\d\b(?!:) -> split_num */
static size_t s_r_split_num(const char *s, size_t n, size_t i, nr_buf_t *out) {
    size_t m = s_decimal(s, i);
    if (m) { /* split_num leaves decimals alone */
        nr_buf_putn(out, s + i, m);
        return m;
    }
    if (!s_wb(s, n, i)) return 0;
    if (s_digits(s, i) >= 4) {
        size_t len = s[i + 4] == 's' && s_wb(s, n, i + 5) ? 5 : s_wb(s, n, i + 4) ? 4 : 0;
        if (len) {
            int year = (s[i] - '0') * 1000 + (s[i + 1] - '0') * 100 + (s[i + 2] - '0') * 10 + (s[i + 3] - '0');
            int right = year % 100;
            const char *suffix = len == 5 ? "s" : "";
            if (year < 1100 || year % 1000 < 10) nr_buf_putn(out, s + i, len);
            else if (year % 1000 >= 100 && right == 0) nr_buf_printf(out, "%.2s hundred%s", s + i, suffix);
            else if (year % 1000 >= 100 && right < 10) nr_buf_printf(out, "%.2s oh %d%s", s + i, right, suffix);
            else nr_buf_printf(out, "%.2s %d%s", s + i, right, suffix);
            return len;
        }
    }
    if (i > 0 && s[i - 1] == ':') return 0;
    size_t h = 0;
    if (s[i] >= '1' && s[i] <= '9' && s[i + 1] == ':') h = 1;
    else if (s[i] == '1' && s[i + 1] >= '0' && s[i + 1] <= '2' && s[i + 2] == ':') h = 2;
    if (!h || s[i + h + 1] < '0' || s[i + h + 1] > '5' || !s_digit(s[i + h + 2]) ||
        !s_wb(s, n, i + h + 3) || s[i + h + 3] == ':')
        return 0;
    int hours = atoi(s + i), mins = (s[i + h + 1] - '0') * 10 + (s[i + h + 2] - '0');
    if (mins == 0) nr_buf_printf(out, "%d o'clock", hours);
    else if (mins < 10) nr_buf_printf(out, "%d oh %d", hours, mins);
    else nr_buf_printf(out, "%d %d", hours, mins);
    return h + 3;
}

/* (?<=\d),(?=\d) -> "" */
static size_t s_r_thousands(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n, (void)out;
    return s[i] == ',' && i > 0 && s_digit(s[i - 1]) && s_digit(s[i + 1]) ? 1 : 0;
}

/* One of (?: hundred| thousand| (?:[bm]|tr)illion) at s[i] (any case). */
static size_t s_money_word(const char *s, size_t i) {
    static const char *const words[] = {" hundred", " thousand", " billion", " million", " trillion"};
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        if (!strncasecmp(s + i, words[w], strlen(words[w]))) return strlen(words[w]);
    return 0;
}

/* [$£]\d+(?:\.\d+)?(?: hundred| thousand| (?:[bm]|tr)illion)*\b -> flip_money.
 * The second alternative of phonemize.js ([$£]\d+\.\d\d?\b) can only match
 * where this one already does, so it is left out. */
static size_t s_r_money(const char *s, size_t n, size_t i, nr_buf_t *out) {
    size_t sym = s[i] == '$' ? 1 : (!strncmp(s + i, "\xC2\xA3", 2) ? 2 : 0);
    if (!sym) return 0;
    size_t p = i + sym, d = s_digits(s, p);
    if (!d) return 0;
    size_t int_end = p + d, end = 0;
    /* Backtracking order: longest decimal first, then none; for each, the
     * most scale words first; the first end on a word boundary wins. */
    size_t frac = s[int_end] == '.' ? s_digits(s, int_end + 1) : 0;
    for (size_t f = frac + 1; f-- > 0 && !end;) {
        size_t ends[64], k = 0;
        ends[k++] = f ? int_end + 1 + f : int_end;
        for (size_t w; k < 64 && (w = s_money_word(s, ends[k - 1])); k++) ends[k] = ends[k - 1] + w;
        while (k-- > 0 && !end)
            if (s_wb(s, n, ends[k])) end = ends[k];
    }
    if (!end) return 0;
    const char *rest = s + p;
    size_t rlen = end - p;
    const char *bill = sym == 1 ? "dollar" : "pound";
    const char *dot = memchr(rest, '.', rlen);
    if (memchr(rest, ' ', rlen)) { /* Number() of it is NaN */
        nr_buf_printf(out, "%.*s %ss", (int)rlen, rest, bill);
    } else if (!dot) {
        nr_buf_printf(out, "%.*s %s%s", (int)rlen, rest, bill, rlen == 1 && *rest == '1' ? "" : "s");
    } else { /* cents = parseInt(c.padEnd(2, "0")), the same up to 15 digits */
        size_t blen = (size_t)(dot - rest), cl = rlen - blen - 1;
        char pad[3] = {dot[1], '0', 0};
        const char *cd = cl == 1 ? pad : dot + 1;
        if (cl == 1) cl = 2;
        while (cl > 1 && *cd == '0') cd++, cl--;
        int one = cl == 1 && *cd == '1';
        nr_buf_printf(out, "%.*s %s%s and %.*s %s", (int)blen, rest, bill,
                      blen == 1 && *rest == '1' ? "" : "s", (int)cl, cd,
                      sym == 1 ? (one ? "cent" : "cents") : (one ? "penny" : "pence"));
    }
    return end - i;
}

/* \d*\.\d+ -> point_num: "a point b c d" */
static size_t s_r_point(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    size_t m = s_decimal(s, i);
    if (!m) return 0;
    size_t a = s_digits(s, i);
    nr_buf_printf(out, "%.*s point", (int)a, s + i);
    for (size_t k = i + a + 1; k < i + m; k++) nr_buf_printf(out, " %c", s[k]);
    return m;
}

/* (?<=\d)-(?=\d) -> " to " */
static size_t s_r_range(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    if (s[i] != '-' || i == 0 || !s_digit(s[i - 1]) || !s_digit(s[i + 1])) return 0;
    nr_buf_puts(out, " to ");
    return 1;
}

/* (?<=\d)S -> " S" */
static size_t s_r_digit_s(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    if (s[i] != 'S' || i == 0 || !s_digit(s[i - 1])) return 0;
    nr_buf_puts(out, " S");
    return 1;
}

/* (?<=[BCDFGHJ-NP-TV-Z])'?s\b -> 'S */
static size_t s_r_possessive(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (i == 0 || !s_upper(s[i - 1]) || strchr("AEIOU", s[i - 1])) return 0;
    size_t len = s[i] == '\'' && s[i + 1] == 's' && s_wb(s, n, i + 2) ? 2 : s[i] == 's' && s_wb(s, n, i + 1) ? 1 : 0;
    if (len) nr_buf_puts(out, "'S");
    return len;
}

/* (?<=X')S\b -> s */
static size_t s_r_x_s(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (i < 2 || s[i - 2] != 'X' || s[i - 1] != '\'' || s[i] != 'S' || !s_wb(s, n, i + 1)) return 0;
    nr_buf_puts(out, "s");
    return 1;
}

/* (?:[A-Za-z]\.){2,} [a-z] -> the same with the dots as hyphens */
static size_t s_r_initials(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    size_t p = i, k = 0;
    while (s_alpha(s[p]) && s[p + 1] == '.') p += 2, k++;
    if (k < 2 || s[p] != ' ' || !s_lower(s[p + 1])) return 0;
    for (size_t q = i; q < p + 2; q++) nr_buf_putn(out, s[q] == '.' ? "-" : s + q, 1);
    return p + 2 - i;
}

/* /(?<=[A-Z])\.(?=[A-Z])/i -> "-" */
static size_t s_r_inner_dot(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    if (s[i] != '.' || i == 0 || !s_alpha(s[i - 1]) || !s_alpha(s[i + 1])) return 0;
    nr_buf_puts(out, "-");
    return 1;
}

static const s_rule_fn s_english_rules[] = {
    s_r_doctor, s_r_mister, s_r_miss, s_r_mrs, s_r_etc, s_r_yeah, s_r_split_num, s_r_thousands,
    s_r_money, s_r_point, s_r_range, s_r_digit_s, s_r_possessive, s_r_x_s, s_r_initials, s_r_inner_dot};

static int s_english(char lang) { return lang == 'a' || lang == 'b'; }

static int s_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* JS trim, in place (only ASCII whitespace is left by s_map_chars). */
static void s_trim(char *s) {
    size_t n = strlen(s), a = 0;
    while (n > 0 && s_space(s[n - 1])) n--;
    while (a < n && s_space(s[a])) a++;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

int nr_g2p_normalize(char lang, const char *text, size_t len, char **out) {
    *out = NULL;
    char *s = s_map_chars(text, len);
    if (!s) return NR_ENOMEM;
    s_first_double_space(s);
    static const s_rule_fn blank[] = {s_r_blank_line};
    int rc = s_passes(&s, blank, 1);
    if (!rc && s_english(lang))
        rc = s_passes(&s, s_english_rules, sizeof s_english_rules / sizeof s_english_rules[0]);
    if (rc) return rc;
    s_trim(s);
    *out = s;
    return 0;
}

/* PUNCTUATION of phonemize.js: ;:,.!?¡¿—…"«»“”(){}[] */
static int s_punct(uint32_t cp) {
    return (cp < 0x80 && strchr(";:,.!?\"(){}[]", (int)cp) && cp) || cp == 0xA1 || cp == 0xBF ||
           cp == 0x2014 || cp == 0x2026 || cp == 0xAB || cp == 0xBB || cp == 0x201C || cp == 0x201D;
}

/* Calls piece(ctx, start, len, is_punct) for the alternating pieces of s:
 * a punctuation run is a maximal run of whitespace and PUNCTUATION holding
 * at least one PUNCTUATION character ((\s*[P]+\s*)+ in phonemize.js). */
typedef int (*s_piece_fn)(void *ctx, const char *p, size_t len, int punct);

static int s_split_pieces(const char *s, s_piece_fn piece, void *ctx) {
    size_t n = strlen(s), text_start = 0, i = 0;
    while (i < n) {
        size_t j = i, has_p = 0;
        for (;;) { /* the run of whitespace/punctuation from i */
            uint32_t cp;
            size_t k = j < n ? nr_utf8_decode((const uint8_t *)s + j, n - j, &cp, NULL) : 0;
            if (!k || !(s_space(s[j]) || s_punct(cp))) break;
            has_p |= s_punct(cp) != 0;
            j += k;
        }
        if (j > i && has_p) {
            int rc = 0;
            if (i > text_start) rc = piece(ctx, s + text_start, i - text_start, 0);
            if (!rc) rc = piece(ctx, s + i, j - i, 1);
            if (rc) return rc;
            text_start = i = j;
        } else if (j > i) {
            i = j;
        } else {
            uint32_t cp;
            size_t k = nr_utf8_decode((const uint8_t *)s + i, n - i, &cp, NULL);
            i += k ? k : 1;
        }
    }
    return text_start < n ? piece(ctx, s + text_start, n - text_start, 0) : 0;
}

typedef struct {
    char **list;
    size_t n, cap;
} s_list_t;

static int s_list_push(s_list_t *l, const char *p, size_t len) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **nl = realloc(l->list, cap * sizeof *nl);
        if (!nl) return NR_ENOMEM;
        l->list = nl, l->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return NR_ENOMEM;
    memcpy(c, p, len);
    c[len] = '\0';
    l->list[l->n++] = c;
    return 0;
}

void nr_g2p_free_list(char **list, size_t n) {
    if (!list) return;
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

static int s_collect_text(void *ctx, const char *p, size_t len, int punct) {
    return punct ? 0 : s_list_push(ctx, p, len);
}

int nr_g2p_text_pieces(char lang, const char *text, size_t len, char ***pieces, size_t *n) {
    *pieces = NULL, *n = 0;
    char *norm;
    int rc = nr_g2p_normalize(lang, text, len, &norm);
    if (rc) return rc;
    s_list_t l = {0};
    rc = s_split_pieces(norm, s_collect_text, &l);
    free(norm);
    if (rc) {
        nr_g2p_free_list(l.list, l.n);
        return rc;
    }
    *pieces = l.list, *n = l.n;
    return 0;
}

const char *nr_g2p_espeak_voice(char lang) {
    switch (lang) {
    case 'a': return "en-us";
    case 'b': return "en";
    case 'e': return "es";
    case 'f': return "fr-fr";
    case 'h': return "hi";
    case 'i': return "it";
    case 'p': return "pt-br";
    default: return NULL;
    }
}

#ifdef NR_HAVE_ESPEAK /* the rest of the phonemizer needs espeak-ng */

/* Replaces every `from` with `to` in *s. Returns 0 or NR_ENOMEM. */
static int s_replace(char **s, const char *from, const char *to) {
    if (!strstr(*s, from)) return 0;
    nr_buf_t b = {0};
    size_t fl = strlen(from);
    const char *p = *s, *q;
    while ((q = strstr(p, from))) {
        nr_buf_putn(&b, p, (size_t)(q - p));
        nr_buf_puts(&b, to);
        p = q + fl;
    }
    nr_buf_puts(&b, p);
    char *r = nr_buf_take(&b, NULL);
    if (!r) return NR_ENOMEM;
    free(*s);
    *s = r;
    return 0;
}

/* (?<=[a-zɹː])(?=hˈʌndɹɪd) -> " " */
static size_t s_r_hundred(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    if (i == 0 || strncmp(s + i, "hˈʌndɹɪd", strlen("hˈʌndɹɪd"))) return 0;
    if (s_lower(s[i - 1]) || (i >= 2 && (!strncmp(s + i - 2, "ɹ", 2) || !strncmp(s + i - 2, "ː", 2))))
        nr_buf_puts(out, " ");
    return 0;
}

/* " z(?=[;:,.!?¡¿—…\"«»“” ]|$)" -> "z" */
static size_t s_r_lone_z(const char *s, size_t n, size_t i, nr_buf_t *out) {
    if (s[i] != ' ' || s[i + 1] != 'z') return 0;
    size_t j = i + 2;
    uint32_t cp = 0;
    int ok = j == n || s[j] == ' ';
    if (!ok && nr_utf8_decode((const uint8_t *)s + j, n - j, &cp, NULL))
        ok = s_punct(cp) && !strchr("(){}[]", (int)cp);
    if (!ok) return 0;
    nr_buf_puts(out, "z");
    return 2;
}

/* (?<=nˈaɪn)ti(?!ː) -> di */
static size_t s_r_ninety(const char *s, size_t n, size_t i, nr_buf_t *out) {
    (void)n;
    size_t k = strlen("nˈaɪn");
    if (s[i] != 't' || s[i + 1] != 'i' || i < k || strncmp(s + i - k, "nˈaɪn", k) ||
        !strncmp(s + i + 2, "ː", 2))
        return 0;
    nr_buf_puts(out, "di");
    return 2;
}

/* The IPA -> Kokoro mapping of phonemize.js step 4-5 (English). */
static int s_map_english(char lang, char **ps) {
    static const char *const pairs[][2] = {
        {"kəkˈoːɹoʊ", "kˈoʊkəɹoʊ"}, {"kəkˈɔːɹəʊ", "kˈəʊkəɹəʊ"}, {"ʲ", "j"}, {"r", "ɹ"}, {"x", "k"}, {"ɬ", "l"}};
    int rc = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0] && !rc; k++) rc = s_replace(ps, pairs[k][0], pairs[k][1]);
    static const s_rule_fn rules[] = {s_r_hundred, s_r_lone_z};
    if (!rc) rc = s_passes(ps, rules, 2);
    static const s_rule_fn us[] = {s_r_ninety};
    if (!rc && lang == 'a') rc = s_passes(ps, us, 1);
    return rc;
}

/* misaki EspeakG2P (v1.0): tied pairs to single letters, then no ties, no
 * hyphens, and the brackets back. Sorted as misaki sorts them. */
static int s_map_other(char **ps) {
    static const char *const pairs[][2] = {
        {"a^ɪ", "I"}, {"a^ʊ", "W"}, {"d^z", "ʣ"}, {"d^ʒ", "ʤ"}, {"e^ɪ", "A"}, {"o^ʊ", "O"},
        {"s^s", "S"}, {"t^s", "ʦ"}, {"t^ʃ", "ʧ"}, {"ə^ʊ", "Q"}, {"ɔ^ɪ", "Y"}, {"^", ""},
        {"-", ""}, {"«", "("}, {"»", ")"}};
    int rc = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0] && !rc; k++) rc = s_replace(ps, pairs[k][0], pairs[k][1]);
    return rc;
}

static pthread_mutex_t s_espeak_mu = PTHREAD_MUTEX_INITIALIZER;
static int s_espeak_state; /* 0 not tried, 1 ready, -1 failed */
static char s_espeak_voice[16];

typedef struct {
    char lang;
    nr_buf_t out;
    char *err;
    size_t errlen;
} s_phon_t;

/* Removes espeak-ng's language-switch flags such as "(en)" from s. */
static void s_remove_flags(char *s) {
    char *w = s;
    for (const char *r = s; *r;) {
        if (*r == '(') {
            const char *e = r + 1;
            while (s_lower(*e) || *e == '-' || *e == '^') e++;
            if (*e == ')' && e > r + 1) {
                r = e + 1;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
}

/* Audio from the synthesis below is not wanted: only its phoneme trace. */
static int s_discard_audio(short *wav, int n, espeak_EVENT *events) {
    (void)wav, (void)n, (void)events;
    return 0;
}

/* Phonemizes one piece (under the lock) as the espeak-ng program and the
 * phonemizer package do: synthesis with the IPA phoneme trace on, one line
 * per clause, lines joined by spaces. (espeak_TextToPhonemes() stresses
 * some words differently, e.g. a lone "what".) */
static int s_espeak_piece(void *ctx, const char *p, size_t len, int punct) {
    s_phon_t *ph = ctx;
    if (punct) {
        nr_buf_putn(&ph->out, p, len);
        return 0;
    }
    char *text = malloc(len + 1), *trace = NULL; /* espeak_Synth reads to a NUL */
    size_t trace_len = 0;
    FILE *f = text ? open_memstream(&trace, &trace_len) : NULL;
    if (!f) {
        free(text);
        return NR_ENOMEM;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    int mode = espeakPHONEMES_IPA;
    if (!s_english(ph->lang)) mode |= espeakPHONEMES_TIE | ('^' << 8);
    espeak_SetPhonemeTrace(mode, f);
    espeak_ERROR e = espeak_Synth(text, len + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL);
    espeak_SetPhonemeTrace(0, NULL);
    free(text);
    if (fclose(f) || !trace) {
        free(trace);
        return NR_ENOMEM;
    }
    if (e != EE_OK) {
        free(trace);
        return nr_seterr(ph->err, ph->errlen, NR_EINTERNAL, "espeak-ng synthesis failed (%d)", (int)e);
    }
    if (!s_english(ph->lang)) s_remove_flags(trace);
    int first = 1;
    for (char *line = trace, *nl; *line; line = nl) {
        nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        nl = nl ? nl + 1 : line + ll;
        if (!ll) continue;
        if (!first) nr_buf_puts(&ph->out, " ");
        nr_buf_putn(&ph->out, line, ll);
        first = 0;
    }
    free(trace);
    return 0;
}

static int s_espeak_ready(const char *voice, char *err, size_t errlen) {
    if (s_espeak_state == 0) {
        int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_DONT_EXIT);
        s_espeak_state = rate > 0 ? 1 : -1;
        if (rate > 0) espeak_SetSynthCallback(s_discard_audio);
    }
    if (s_espeak_state < 0) return nr_seterr(err, errlen, NR_EMODEL, "espeak-ng failed to initialise (is espeak-ng-data installed?)");
    if (!strcmp(s_espeak_voice, voice)) return 0;
    s_espeak_voice[0] = '\0';
    if (espeak_SetVoiceByName(voice) != EE_OK) {
        espeak_VOICE v;
        memset(&v, 0, sizeof v);
        v.languages = voice;
        if (espeak_SetVoiceByProperties(&v) != EE_OK)
            return nr_seterr(err, errlen, NR_EMODEL, "espeak-ng has no voice '%s'", voice);
    }
    snprintf(s_espeak_voice, sizeof s_espeak_voice, "%s", voice);
    return 0;
}

int nr_g2p_available(void) { return 1; }

#else

int nr_g2p_available(void) { return 0; }

#endif

int nr_g2p_phonemize(char lang, const char *text, size_t len, char **phonemes, char *err,
                     size_t errlen) {
    *phonemes = NULL;
    const char *voice = nr_g2p_espeak_voice(lang);
    if (!voice)
        return nr_seterr(err, errlen, NR_EUNSUPPORTED,
                         "no phonemizer for language '%c' (voices starting with a, b, e, f, h, i or p are supported; "
                         "j and z need misaki's Japanese and Mandarin G2P)", lang ? lang : '?');
#ifndef NR_HAVE_ESPEAK
    (void)text, (void)len;
    return nr_seterr(err, errlen, NR_EUNSUPPORTED,
                     "built without espeak-ng (NR_ESPEAK=OFF): Kokoro cannot phonemize text");
#else
    char *norm;
    int rc = nr_g2p_normalize(lang, text, len, &norm);
    if (rc) return nr_seterr(err, errlen, rc, "g2p: out of memory");
    s_phon_t ph = {.lang = lang, .err = err, .errlen = errlen};
    nr_buf_putn(&ph.out, "", 0);
    pthread_mutex_lock(&s_espeak_mu);
    rc = s_espeak_ready(voice, err, errlen);
    if (!rc) rc = s_split_pieces(norm, s_espeak_piece, &ph);
    pthread_mutex_unlock(&s_espeak_mu);
    free(norm);
    char *ps = nr_buf_take(&ph.out, NULL);
    if (!rc && !ps) rc = NR_ENOMEM;
    if (!rc) rc = s_english(lang) ? s_map_english(lang, &ps) : s_map_other(&ps);
    if (rc) {
        free(ps);
        return rc == NR_ENOMEM ? nr_seterr(err, errlen, rc, "g2p: out of memory") : rc;
    }
    s_trim(ps);
    if (!*ps) {
        free(ps);
        return nr_seterr(err, errlen, NR_ETEXT, "text gives no phonemes");
    }
    *phonemes = ps;
    return 0;
#endif
}

/* Byte length of the UTF-8 sequence starting with c (1 for stray bytes). */
static size_t s_cplen(unsigned char c) {
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

int nr_g2p_split(const char *ps, size_t max_phonemes, char ***chunks, size_t *n_chunks) {
    *chunks = NULL, *n_chunks = 0;
    if (!max_phonemes) return NR_EINVAL;
    s_list_t l = {0};
    size_t n = strlen(ps), start = 0;
    int rc = 0;
    while (!rc) {
        while (start < n && s_space(ps[start])) start++;
        if (start >= n) break;
        size_t i = start, count = 0, sent = 0, clause = 0, space = 0;
        while (i < n && count < max_phonemes) {
            size_t k = s_cplen((unsigned char)ps[i]);
            if (i + k > n) k = n - i;
            if (strchr(".!?", ps[i]) || !strncmp(ps + i, "…", k)) sent = i + k;
            else if (strchr(",;:", ps[i]) || !strncmp(ps + i, "—", k)) clause = i + k;
            else if (ps[i] == ' ') space = i;
            i += k, count++;
        }
        size_t end = i >= n ? n : sent ? sent : clause ? clause : space > start ? space : i;
        size_t e = end;
        while (e > start && s_space(ps[e - 1])) e--;
        if (e > start) rc = s_list_push(&l, ps + start, e - start);
        start = end;
    }
    if (rc) {
        nr_g2p_free_list(l.list, l.n);
        return rc;
    }
    *chunks = l.list, *n_chunks = l.n;
    return 0;
}
