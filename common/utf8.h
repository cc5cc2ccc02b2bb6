/* Strict UTF-8 (RFC 3629, Unicode table 3-7): no overlong forms, no
 * surrogates, nothing past U+10FFFF, no truncated or stray continuation
 * bytes. Pure functions, thread-safe. */
#ifndef NR_COMMON_UTF8_H
#define NR_COMMON_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one code point from s[0..n). Returns its length in bytes (1..4)
 * and stores it in *cp, or 0 when the bytes there are not valid UTF-8 (or
 * n is 0); then *bad (when not NULL) is the length of the maximal
 * ill-formed subpart (1..3), what one U+FFFD stands for. Reads no byte past
 * the first that does not fit, so a NUL-terminated string may pass a
 * generous n. */
size_t nr_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp, size_t *bad);

/* Returns 0 when all n bytes are valid UTF-8, else NR_ETEXT and the offset
 * of the first bad byte in *bad_at (when not NULL). */
int nr_utf8_validate(const uint8_t *s, size_t n, size_t *bad_at);

/* Writes cp (at most U+10FFFF) as 1..4 bytes to out; returns the count. */
size_t nr_utf8_encode(uint32_t cp, char out[4]);

#endif
