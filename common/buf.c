/* Growing text buffer, doubling its capacity. */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nr_buf_clear(nr_buf_t *self) {
    free(self->data);
    memset(self, 0, sizeof *self);
}

static int s_reserve(nr_buf_t *self, size_t more) {
    if (self->failed) return -1;
    if (self->len + more + 1 <= self->cap) return 0;
    size_t cap = self->cap ? self->cap : 256;
    while (cap < self->len + more + 1) cap *= 2;
    char *p = realloc(self->data, cap);
    if (!p) {
        self->failed = 1;
        return -1;
    }
    self->data = p;
    self->cap = cap;
    return 0;
}

void nr_buf_putn(nr_buf_t *self, const char *s, size_t n) {
    if (s_reserve(self, n)) return;
    memcpy(self->data + self->len, s, n);
    self->len += n;
    self->data[self->len] = '\0';
}

void nr_buf_puts(nr_buf_t *self, const char *s) { nr_buf_putn(self, s, strlen(s)); }

void nr_buf_printf(nr_buf_t *self, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || s_reserve(self, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(self->data + self->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    self->len += (size_t)n;
}

char *nr_buf_take(nr_buf_t *self, size_t *len) {
    nr_buf_putn(self, "", 0); /* "" rather than NULL when nothing was added */
    char *text = self->failed ? NULL : self->data;
    if (len) *len = text ? self->len : 0;
    if (!text) free(self->data);
    memset(self, 0, sizeof *self);
    return text;
}
