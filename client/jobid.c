/* Job ids (validation, content hashes, random ids), the job options they
 * cover, and the job record of a reply. */
#include "client/client.h"
#include "common/error.h"
#include "common/utf8.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int nr_client_id_valid(const char *id) { return nr_proto_id_valid(id); }

static int s_kv_cmp(const void *a, const void *b) {
    const nr_kv_t *x = *(const nr_kv_t *const *)a, *y = *(const nr_kv_t *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

static void s_hex(const unsigned char *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int nr_client_content_id(const void *input, size_t size, const char *route,
                         const nr_kv_t *options, size_t n_options, char out[NR_CLIENT_ID_HEX + 1]) {
    if (!out || !route || (size && !input) || (n_options && !options)) return NR_EINVAL;
    for (size_t i = 0; i < n_options; i++)
        if (!options[i].key || !options[i].value) return NR_EINVAL;
    if (sodium_init() < 0) return NR_EINTERNAL;
    const nr_kv_t **sorted = NULL;
    if (n_options) {
        sorted = malloc(n_options * sizeof *sorted);
        if (!sorted) return NR_ENOMEM;
        for (size_t i = 0; i < n_options; i++) sorted[i] = &options[i];
        qsort(sorted, n_options, sizeof *sorted, s_kv_cmp);
    }
    crypto_generichash_state st;
    unsigned char digest[NR_CLIENT_ID_HEX / 2];
    crypto_generichash_init(&st, NULL, 0, sizeof digest);
    static const char tag[] = "narrator-id-v1"; /* hashed with its NUL */
    crypto_generichash_update(&st, (const unsigned char *)tag, sizeof tag);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)size >> (8 * i));
    crypto_generichash_update(&st, len, sizeof len);
    if (size) crypto_generichash_update(&st, input, size);
    crypto_generichash_update(&st, (const unsigned char *)route, strlen(route) + 1);
    for (size_t i = 0; i < n_options; i++) {
        crypto_generichash_update(&st, (const unsigned char *)sorted[i]->key,
                                  strlen(sorted[i]->key) + 1);
        crypto_generichash_update(&st, (const unsigned char *)sorted[i]->value,
                                  strlen(sorted[i]->value) + 1);
    }
    crypto_generichash_final(&st, digest, sizeof digest);
    free(sorted);
    s_hex(digest, sizeof digest, out);
    return 0;
}

int nr_client_random_id(char out[NR_CLIENT_ID_HEX + 1]) {
    if (!out) return NR_EINVAL;
    if (sodium_init() < 0) return NR_EINTERNAL;
    unsigned char bytes[NR_CLIENT_ID_HEX / 2];
    randombytes_buf(bytes, sizeof bytes);
    s_hex(bytes, sizeof bytes, out);
    return 0;
}

int nr_client_options(nr_client_options_t *out, long num_beams, long max_length, const char *voice,
                      const char *prompt, char *err, size_t errlen) {
    out->n = 0;
    if (voice && voice[0] && !nr_client_voice_valid(voice))
        return nr_seterr(err, errlen, NR_EOPTION, "voice must be 1..%d letters, digits, '_', '-' or '.'",
                         NR_CLIENT_VOICE_MAX);
    if (prompt && prompt[0]) {
        int rc = nr_client_prompt_check(prompt, err, errlen);
        if (rc) return rc;
    }
    if (num_beams > 0) {
        snprintf(out->beams, sizeof out->beams, "%ld", num_beams);
        out->kv[out->n++] = (nr_kv_t){(char *)"num_beams", out->beams};
    }
    if (max_length > 0) {
        snprintf(out->length, sizeof out->length, "%ld", max_length);
        out->kv[out->n++] = (nr_kv_t){(char *)"max_length", out->length};
    }
    if (voice && voice[0]) out->kv[out->n++] = (nr_kv_t){(char *)"voice", (char *)voice};
    if (prompt && prompt[0]) out->kv[out->n++] = (nr_kv_t){(char *)"prompt", (char *)prompt};
    return 0;
}

int nr_client_options_speed(nr_client_options_t *out, const char *speed, char *err, size_t errlen) {
    if (!speed || !*speed) return 0;
    float v;
    int rc = nr_proto_speed_check(speed, &v, err, errlen);
    if (rc) return rc;
    snprintf(out->speed, sizeof out->speed, "%g", (double)v);
    out->kv[out->n++] = (nr_kv_t){(char *)"speed", out->speed};
    return 0;
}

int nr_client_prompt_check(const char *prompt, char *err, size_t errlen) {
    size_t n = prompt ? strlen(prompt) : 0;
    if (n == 0) return nr_seterr(err, errlen, NR_EOPTION, "prompt is empty");
    if (n > NR_CLIENT_PROMPT_MAX)
        return nr_seterr(err, errlen, NR_EOPTION, "prompt is %zu bytes, at most %d", n, NR_CLIENT_PROMPT_MAX);
    size_t bad = 0;
    if (nr_utf8_validate((const uint8_t *)prompt, n, &bad) != 0)
        return nr_seterr(err, errlen, NR_EOPTION, "prompt is not valid UTF-8 (byte %zu)", bad);
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t used = nr_utf8_decode((const uint8_t *)prompt + i, n - i, &cp, NULL);
        if (used == 0) used = 1;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return nr_seterr(err, errlen, NR_EOPTION,
                             "prompt holds a control character (U+%04X at byte %zu): give one line of text",
                             (unsigned)cp, i);
        i += used;
    }
    return 0;
}

int nr_client_language_valid(const char *lang) {
    size_t n = lang ? strlen(lang) : 0, i = 0;
    if (n == 0 || n > NR_CLIENT_LANGUAGE_MAX) return 0;
    while (i < n && lang[i] >= 'a' && lang[i] <= 'z') i++;
    if (i < 2 || i > 3) return 0;
    while (i < n) {
        if (lang[i++] != '-') return 0;
        size_t k = 0;
        while (i < n && ((lang[i] >= 'a' && lang[i] <= 'z') || (lang[i] >= 'A' && lang[i] <= 'Z') ||
                         (lang[i] >= '0' && lang[i] <= '9')))
            i++, k++;
        if (k < 2 || k > 8) return 0;
    }
    return 1;
}

int nr_client_options_language(nr_client_options_t *out, const char *lang, char *err, size_t errlen) {
    if (!lang || !lang[0]) return 0;
    if (!nr_client_language_valid(lang))
        return nr_seterr(err, errlen, NR_EOPTION,
                         "language \"%.32s\" is not a language code such as en, es, pt-BR or zh-TW", lang);
    out->kv[out->n++] = (nr_kv_t){(char *)"language", (char *)lang};
    return 0;
}

int nr_client_voice_valid(const char *voice) {
    size_t n = voice ? strlen(voice) : 0;
    if (n == 0 || n > NR_CLIENT_VOICE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = voice[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static long long s_ll(const nr_msg_t *m, const char *key) {
    const char *v = nr_proto_kv_get(m, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

void nr_client_record(const nr_msg_t *reply, nr_client_record_t *out) {
    memset(out, 0, sizeof *out);
    out->created_ms = out->updated_ms = -1;
    if (!reply) return;
    out->id = nr_proto_kv_get(reply, "id");
    out->state = nr_proto_kv_get(reply, "state");
    out->stage = nr_proto_kv_get(reply, "stage");
    out->route = nr_proto_kv_get(reply, "route");
    out->error = nr_proto_kv_get(reply, "error");
    out->error_message = nr_proto_kv_get(reply, "error_message");
    out->caption = nr_proto_kv_get(reply, "text.caption");
    const char *existing = nr_proto_kv_get(reply, "existing");
    out->existing = existing && !strcmp(existing, "1");
    out->final = out->state && (!strcmp(out->state, "done") || !strcmp(out->state, "failed") ||
                                !strcmp(out->state, "cancelled"));
    out->created_ms = s_ll(reply, "created_ms");
    out->updated_ms = s_ll(reply, "updated_ms");
}

int nr_client_new_run_id(char out[NR_PROTO_ID_MAX + 1]) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return NR_EINVAL;
    uint8_t rnd[4];
    randombytes_buf(rnd, sizeof rnd);
    char date[32];
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, NR_PROTO_ID_MAX + 1, "run-%s-%02x%02x%02x%02x", date, rnd[0], rnd[1], rnd[2], rnd[3]);
    return 0;
}
