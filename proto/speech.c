/* Speech fields checked in one place: the READY kv "voices" (the voices a
 * worker offers, so that the broker and the gateway only ever see a
 * bounded, well-formed list) and the job option "speed". */
#include "proto/proto.h"

#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int nr_proto_speed_check(const char *s, float *speed, char *err, size_t errlen) {
    *speed = 1.0f;
    if (!s || !*s) return 0;
    char *end = NULL;
    size_t n = strnlen(s, NR_PROTO_SPEED_BYTES + 1);
    double v = n <= NR_PROTO_SPEED_BYTES && s[0] >= '0' && s[0] <= '9' ? strtod(s, &end) : NAN;
    if (!end || *end || !isfinite(v) || v < NR_PROTO_SPEED_MIN || v > NR_PROTO_SPEED_MAX)
        return nr_seterr(err, errlen, NR_EOPTION, "speed must be a number from %.1f to %.1f, not '%.16s'",
                         NR_PROTO_SPEED_MIN, NR_PROTO_SPEED_MAX, s);
    *speed = (float)v;
    return 0;
}

int nr_proto_voice_name_valid(const char *v) {
    size_t n = v ? strnlen(v, NR_PROTO_VOICE_NAME_MAX + 1) : 0;
    if (n == 0 || n > NR_PROTO_VOICE_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

int nr_proto_voices_check(const char *list, size_t *count, char *err, size_t errlen) {
    if (count) *count = 0;
    if (!list) return nr_seterr(err, errlen, NR_EPROTO, "voices: missing");
    size_t total = strnlen(list, NR_PROTO_VOICES_BYTES + 1);
    if (total > NR_PROTO_VOICES_BYTES)
        return nr_seterr(err, errlen, NR_ETOOBIG, "voices: longer than %d bytes", NR_PROTO_VOICES_BYTES);
    const char *names[NR_PROTO_VOICES_MAX];
    size_t lens[NR_PROTO_VOICES_MAX], n = 0;
    for (const char *p = list;; p++) {
        size_t l = strcspn(p, ",");
        if (n == NR_PROTO_VOICES_MAX)
            return nr_seterr(err, errlen, NR_ETOOBIG, "voices: more than %d", NR_PROTO_VOICES_MAX);
        char name[NR_PROTO_VOICE_NAME_MAX + 1];
        if (l == 0 || l > NR_PROTO_VOICE_NAME_MAX)
            return nr_seterr(err, errlen, NR_EPROTO, "voices: entry %zu is %zu bytes, must be 1..%d", n, l,
                             NR_PROTO_VOICE_NAME_MAX);
        memcpy(name, p, l);
        name[l] = '\0';
        if (!nr_proto_voice_name_valid(name))
            return nr_seterr(err, errlen, NR_EPROTO, "voices: entry %zu is not [A-Za-z0-9_.-]", n);
        for (size_t j = 0; j < n; j++)
            if (lens[j] == l && !memcmp(names[j], p, l))
                return nr_seterr(err, errlen, NR_EPROTO, "voices: '%s' appears twice", name);
        names[n] = p, lens[n] = l, n++;
        p += l;
        if (!*p) break;
    }
    if (count) *count = n;
    return 0;
}
