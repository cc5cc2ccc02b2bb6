/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF, no truncated or stray continuation bytes. */
#ifndef NR_SPEECH_UTF8_H
#define NR_SPEECH_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one code point from s[0..n). Returns its length in bytes (1..4)
 * and stores it in *cp, or 0 when the bytes there are not valid UTF-8. */
size_t nr_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Returns 0 when all n bytes are valid UTF-8, else NR_ETEXT and the offset
 * of the first bad byte in *bad_at (when not NULL). */
int nr_utf8_validate(const uint8_t *s, size_t n, size_t *bad_at);

#endif
