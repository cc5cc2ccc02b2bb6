/* Prometheus metrics registry and text-format renderer (see metrics.h). */
#include "common/metrics.h"
#include "common/buf.h"
#include "common/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_series {
    char *labels; /* canonical, escaped: stage="vision",code="bad_image" ("" for none) */
    double value; /* counter, gauge */
    uint64_t counts[NR_METRICS_BUCKETS_MAX + 1]; /* histogram: per bucket, not cumulative; last = +Inf */
    uint64_t count;
    double sum;
    struct s_series *next;
} s_series_t;

typedef struct s_family {
    char *name, *help;
    nr_metric_type_t type;
    double bounds[NR_METRICS_BUCKETS_MAX];
    size_t nbounds;
    s_series_t *head, *tail;
    struct s_family *next;
} s_family_t;

struct nr_metrics {
    s_family_t *head, *tail;
};

static void s_buf_double(nr_buf_t *b, double v) {
    char tmp[40];
    int n = nr_metrics_format_double(tmp, sizeof tmp, v);
    nr_buf_putn(b, tmp, (size_t)n);
}

/* ---- names, labels, numbers -------------------------------------------- */

static int s_valid_name(const char *s, int colon) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

int nr_metrics_format_double(char *buf, size_t size, double v) {
    int n;
    if (isnan(v)) n = snprintf(buf, size, "NaN");
    else if (isinf(v)) n = snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) n = snprintf(buf, size, "%.0f", v);
    else {
        n = snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v) n = snprintf(buf, size, "%.17g", v);
    }
    if (n < 0) n = 0;
    if (size && (size_t)n >= size) n = (int)size - 1;
    return n;
}

size_t nr_metrics_bucket_index(const double *bounds, size_t n, double v) {
    size_t i = 0;
    while (i < n && !(v <= bounds[i])) i++;
    return i;
}

/* Builds the canonical label string from name, value pairs ended by NULL.
 * Returns a malloc'd string or NULL (bad or too many labels, no memory). */
static char *s_labels(va_list ap, int histogram) {
    nr_buf_t b = {0};
    for (int i = 0;; i++) {
        const char *name = va_arg(ap, const char *);
        if (!name) break;
        const char *value = va_arg(ap, const char *);
        if (i >= NR_METRICS_LABELS_MAX || !value || !s_valid_name(name, 0) ||
            !strncmp(name, "__", 2) || (histogram && !strcmp(name, "le"))) {
            nr_buf_clear(&b);
            return NULL;
        }
        if (i) nr_buf_putn(&b, ",", 1);
        nr_buf_puts(&b, name);
        nr_buf_putn(&b, "=\"", 2);
        for (const char *p = value; *p; p++) {
            if (*p == '\\') nr_buf_putn(&b, "\\\\", 2);
            else if (*p == '"') nr_buf_putn(&b, "\\\"", 2);
            else if (*p == '\n') nr_buf_putn(&b, "\\n", 2);
            else nr_buf_putn(&b, p, 1);
        }
        nr_buf_putn(&b, "\"", 1);
    }
    return nr_buf_take(&b, NULL);
}

static s_family_t *s_family(const nr_metrics_t *self, const char *name) {
    for (s_family_t *f = self ? self->head : NULL; f; f = f->next)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

/* The series with these labels, created at zero when `create`. */
static s_series_t *s_series(s_family_t *f, const char *labels, int create) {
    for (s_series_t *s = f->head; s; s = s->next)
        if (!strcmp(s->labels, labels)) return s;
    if (!create) return NULL;
    s_series_t *s = calloc(1, sizeof *s);
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        return NULL;
    }
    if (f->tail) f->tail->next = s;
    else f->head = s;
    f->tail = s;
    return s;
}

/* ---- registry ----------------------------------------------------------- */

nr_metrics_t *nr_metrics_new(void) { return calloc(1, sizeof(nr_metrics_t)); }

static void s_family_clear(s_family_t *f) {
    while (f->head) {
        s_series_t *s = f->head;
        f->head = s->next;
        free(s->labels);
        free(s);
    }
    f->tail = NULL;
}

void nr_metrics_destroy(nr_metrics_t **p) {
    if (!p || !*p) return;
    nr_metrics_t *self = *p;
    while (self->head) {
        s_family_t *f = self->head;
        self->head = f->next;
        s_family_clear(f);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(self);
    *p = NULL;
}

int nr_metrics_define(nr_metrics_t *self, const char *name, nr_metric_type_t type,
                      const char *help, const double *buckets, size_t nbuckets) {
    if (!self) return 0;
    if (!s_valid_name(name, 1) || s_family(self, name)) return NR_EINVAL;
    if (type == NR_METRIC_HISTOGRAM) {
        if (!buckets || nbuckets < 1 || nbuckets > NR_METRICS_BUCKETS_MAX) return NR_EINVAL;
        for (size_t i = 0; i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1])) return NR_EINVAL;
    } else if (buckets || nbuckets) {
        return NR_EINVAL;
    } else if (type != NR_METRIC_COUNTER && type != NR_METRIC_GAUGE) {
        return NR_EINVAL;
    }
    s_family_t *f = calloc(1, sizeof *f);
    if (!f) return NR_ENOMEM;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        free(f);
        return NR_ENOMEM;
    }
    f->type = type;
    if (nbuckets) memcpy(f->bounds, buckets, nbuckets * sizeof *buckets);
    f->nbounds = nbuckets;
    if (self->tail) self->tail->next = f;
    else self->head = f;
    self->tail = f;
    return 0;
}

/* add (op 0), set (op 1), observe (op 2) on the series named by ap. */
static int s_update(nr_metrics_t *self, const char *name, int op, double v, va_list ap) {
    if (!self) return 0;
    s_family_t *f = s_family(self, name);
    if (!f) return NR_EINVAL;
    if ((op == 2) != (f->type == NR_METRIC_HISTOGRAM)) return NR_EINVAL;
    if (op == 1 && f->type != NR_METRIC_GAUGE) return NR_EINVAL;
    if (isnan(v) || (f->type == NR_METRIC_COUNTER && !(v >= 0))) return NR_EINVAL;
    char *labels = s_labels(ap, f->type == NR_METRIC_HISTOGRAM);
    if (!labels) return NR_EINVAL;
    s_series_t *s = s_series(f, labels, 1);
    free(labels);
    if (!s) return NR_ENOMEM;
    if (op == 0) s->value += v;
    else if (op == 1) s->value = v;
    else {
        s->counts[nr_metrics_bucket_index(f->bounds, f->nbounds, v)]++;
        s->count++;
        s->sum += v;
    }
    return 0;
}

int nr_metrics_add(nr_metrics_t *self, const char *name, double v, ...) {
    va_list ap;
    va_start(ap, v);
    int rc = s_update(self, name, 0, v, ap);
    va_end(ap);
    return rc;
}

int nr_metrics_set(nr_metrics_t *self, const char *name, double v, ...) {
    va_list ap;
    va_start(ap, v);
    int rc = s_update(self, name, 1, v, ap);
    va_end(ap);
    return rc;
}

int nr_metrics_observe(nr_metrics_t *self, const char *name, double v, ...) {
    va_list ap;
    va_start(ap, v);
    int rc = s_update(self, name, 2, v, ap);
    va_end(ap);
    return rc;
}

int nr_metrics_clear(nr_metrics_t *self, const char *name) {
    if (!self) return 0;
    s_family_t *f = s_family(self, name);
    if (!f) return NR_EINVAL;
    s_family_clear(f);
    return 0;
}

double nr_metrics_value(const nr_metrics_t *self, const char *name, ...) {
    s_family_t *f = s_family(self, name);
    if (!f) return NAN;
    va_list ap;
    va_start(ap, name);
    char *labels = s_labels(ap, f->type == NR_METRIC_HISTOGRAM);
    va_end(ap);
    if (!labels) return NAN;
    s_series_t *s = s_series(f, labels, 0);
    free(labels);
    if (!s) return NAN;
    return f->type == NR_METRIC_HISTOGRAM ? (double)s->count : s->value;
}

/* ---- rendering ---------------------------------------------------------- */

/* name{labels} or name{labels,extra} or name{extra} or name. */
static void s_put_series_name(nr_buf_t *b, const char *name, const char *suffix,
                              const char *labels, const char *extra) {
    nr_buf_puts(b, name);
    nr_buf_puts(b, suffix);
    if (!*labels && !extra) return;
    nr_buf_putn(b, "{", 1);
    nr_buf_puts(b, labels);
    if (extra) {
        if (*labels) nr_buf_putn(b, ",", 1);
        nr_buf_puts(b, extra);
    }
    nr_buf_putn(b, "}", 1);
}

char *nr_metrics_render(const nr_metrics_t *self, size_t *len) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    nr_buf_t b = {0};
    for (s_family_t *f = self ? self->head : NULL; f; f = f->next) {
        nr_buf_printf(&b, "# HELP %s ", f->name);
        for (const char *p = f->help; *p; p++) {
            if (*p == '\\') nr_buf_putn(&b, "\\\\", 2);
            else if (*p == '\n') nr_buf_putn(&b, "\\n", 2);
            else nr_buf_putn(&b, p, 1);
        }
        nr_buf_printf(&b, "\n# TYPE %s %s\n", f->name, types[f->type]);
        for (s_series_t *s = f->head; s; s = s->next) {
            if (f->type != NR_METRIC_HISTOGRAM) {
                s_put_series_name(&b, f->name, "", s->labels, NULL);
                nr_buf_putn(&b, " ", 1);
                s_buf_double(&b, s->value);
                nr_buf_putn(&b, "\n", 1);
                continue;
            }
            uint64_t cumulative = 0;
            for (size_t i = 0; i <= f->nbounds; i++) {
                cumulative += s->counts[i];
                char le[64] = "le=\"";
                if (i < f->nbounds) nr_metrics_format_double(le + 4, sizeof le - 6, f->bounds[i]);
                else snprintf(le + 4, sizeof le - 6, "+Inf");
                strcat(le, "\"");
                s_put_series_name(&b, f->name, "_bucket", s->labels, le);
                nr_buf_printf(&b, " %llu\n", (unsigned long long)cumulative);
            }
            s_put_series_name(&b, f->name, "_sum", s->labels, NULL);
            nr_buf_putn(&b, " ", 1);
            s_buf_double(&b, s->sum);
            nr_buf_putn(&b, "\n", 1);
            s_put_series_name(&b, f->name, "_count", s->labels, NULL);
            nr_buf_printf(&b, " %llu\n", (unsigned long long)s->count);
        }
    }
    return nr_buf_take(&b, len);
}
