/* FNV-1a over bytes: the hash of the project's small hash tables (broker
 * jobs by id, rate-limit buckets, tokenizer vocabulary). Not for anything
 * an attacker must not collide on purpose. */
#ifndef NR_COMMON_HASH_H
#define NR_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t nr_hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t nr_hash_str(const char *s) { return nr_hash_bytes(s, strlen(s)); }

#endif
