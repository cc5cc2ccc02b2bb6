/* A growing text buffer: appends keep it NUL-terminated; the first failed
 * allocation sets `failed`, after which appends do nothing, so a caller
 * checks once at the end. Zero-initialise to start ({0}); not thread-safe
 * (one owner). */
#ifndef NR_COMMON_BUF_H
#define NR_COMMON_BUF_H

#include <stddef.h>

typedef struct {
    char *data; /* NULL until the first append */
    size_t len, cap;
    int failed;
} nr_buf_t;

/* Frees the text and zeroes the buffer (ready for reuse). */
void nr_buf_clear(nr_buf_t *self);
void nr_buf_putn(nr_buf_t *self, const char *s, size_t n);
void nr_buf_puts(nr_buf_t *self, const char *s);
void nr_buf_printf(nr_buf_t *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the text over (malloc'd, NUL-terminated, "" when nothing was
 * added; the caller frees it) with its length in *len (when not NULL), and
 * zeroes the buffer. NULL when an append failed (the text is freed). */
char *nr_buf_take(nr_buf_t *self, size_t *len);

#endif
