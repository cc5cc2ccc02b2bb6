/* Request bodies: job options (query arguments and form fields, each given
 * once), the body buffer bounded by max_body_bytes and grown as bytes
 * arrive, the body budget shared by all requests (max_buffered_bytes), and
 * multipart/form-data parts through libmicrohttpd's post processor. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nr_gw_media_type(const char *header, char *out, size_t size) {
    size_t n = 0;
    if (header)
        for (const char *p = header; *p && *p != ';' && n + 1 < size; p++)
            if (*p != ' ' && *p != '\t') out[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    out[n] = '\0';
}

const char *nr_gw_image_type(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "image/jpeg";
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return "image/webp";
    if (n >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4) || !memcmp(d, "II+\0", 4) ||
                   !memcmp(d, "MM\0+", 4)))
        return "image/tiff"; /* TIFF, BigTIFF */
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return "image/gif";
    if (n >= 18 && d[0] == 'B' && d[1] == 'M' && d[15] == 0 && d[16] == 0 && d[17] == 0 &&
        (d[14] == 12 || d[14] == 40 || d[14] == 52 || d[14] == 56 || d[14] == 64 || d[14] == 108 || d[14] == 124))
        return "image/bmp"; /* "BM" and a known DIB header size */
    /* HEIC/AVIF: an ISO BMFF ftyp box with an image brand; the vision
     * worker checks the rest. */
    if (n >= 12 && !memcmp(d + 4, "ftyp", 4)) {
        static const struct {
            char brand[5];
            const char *type;
        } brands[] = {{"heic", "image/heic"}, {"heix", "image/heic"}, {"heim", "image/heic"},
                      {"heis", "image/heic"}, {"hevc", "image/heic"}, {"hevx", "image/heic"},
                      {"mif1", "image/heic"}, {"msf1", "image/heic"}, {"avif", "image/avif"},
                      {"avis", "image/avif"}};
        for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
            if (!memcmp(d + 8, brands[i].brand, 4)) return brands[i].type;
    }
    return NULL;
}

int nr_gw_sniff_image(const uint8_t *d, size_t n) { return nr_gw_image_type(d, n) != NULL; }

/* ---- options ---- */

/* The bit of a known option in nr_gw_opts_t.seen, or 0. */
static unsigned s_option_bit(const char *key) {
    return !strcmp(key, "voice")        ? 1u
           : !strcmp(key, "beams")      ? 2u
           : !strcmp(key, "max_length") ? 4u
           : !strcmp(key, "prompt")     ? 8u
           : !strcmp(key, "speed")      ? 16u
           : !strcmp(key, "language")   ? 32u
                                        : 0u;
}

/* A repeated option (`voice=ka` and `voice=l`): 400 naming it. */
static int s_repeated(nr_gw_req_t *req, const char *key) {
    snprintf(req->opt_error, sizeof req->opt_error,
             "option '%.64s' is given more than once (give each option once, as a query argument "
             "or a form field)",
             key);
    req->opt_code = NR_EOPTION;
    return MHD_HTTP_BAD_REQUEST;
}

/* Parses one option (query argument or form field). 0, or an HTTP status
 * with the message in req->opt_error. */
static int s_option(nr_gw_req_t *req, const char *key, const char *value, int allow_image_opts) {
    nr_gw_opts_t *o = &req->opts;
    if (!value) value = "";
    unsigned bit = s_option_bit(key);
    if (bit && (o->seen & bit)) return s_repeated(req, key);
    o->seen |= bit;
    if (!strcmp(key, "voice")) {
        if (!nr_client_voice_valid(value)) {
            snprintf(req->opt_error, sizeof req->opt_error,
                     "option 'voice' must be 1..%d letters, digits, '_', '-' or '.'", NR_GW_VOICE_MAX);
            return MHD_HTTP_BAD_REQUEST;
        }
        snprintf(o->voice, sizeof o->voice, "%s", value);
        return 0;
    }
    if (!strcmp(key, "speed")) {
        float v;
        char why[160] = "";
        if (nr_proto_speed_check(value, &v, why, sizeof why) || !value[0]) {
            snprintf(req->opt_error, sizeof req->opt_error, "option 'speed': %s",
                     value[0] ? why : "empty (give a number from 0.5 to 2.0)");
            req->opt_code = NR_EOPTION;
            return MHD_HTTP_BAD_REQUEST;
        }
        snprintf(o->speed, sizeof o->speed, "%s", value);
        return 0;
    }
    if (allow_image_opts && !strcmp(key, "prompt")) {
        /* An empty field is no prompt: the web form sends one when left blank. */
        char why[160] = "";
        if (value[0] && nr_client_prompt_check(value, why, sizeof why)) {
            snprintf(req->opt_error, sizeof req->opt_error, "option 'prompt': %s", why);
            req->opt_code = NR_EOPTION;
            return MHD_HTTP_BAD_REQUEST;
        }
        snprintf(o->prompt, sizeof o->prompt, "%s", value);
        return 0;
    }
    if (allow_image_opts && !strcmp(key, "language")) { /* empty: none, as the form sends it */
        if (value[0] && !nr_client_language_valid(value)) {
            snprintf(req->opt_error, sizeof req->opt_error,
                     "option 'language': \"%.32s\" is not a language code such as en, es, pt-BR or zh-TW", value);
            req->opt_code = NR_EOPTION;
            return MHD_HTTP_BAD_REQUEST;
        }
        snprintf(o->language, sizeof o->language, "%s", value);
        return 0;
    }
    long *target = NULL, max = 0;
    if (allow_image_opts && !strcmp(key, "beams")) target = &o->beams, max = NR_GW_BEAMS_MAX;
    else if (allow_image_opts && !strcmp(key, "max_length")) target = &o->max_length, max = NR_GW_LENGTH_MAX;
    if (!target) {
        snprintf(req->opt_error, sizeof req->opt_error, "unknown option '%.64s' (known: %s)", key,
                 allow_image_opts ? "voice, speed, beams, max_length, prompt, language" : "voice, speed");
        return MHD_HTTP_BAD_REQUEST;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 1 || v > max) {
        snprintf(req->opt_error, sizeof req->opt_error,
                 "option '%s' must be a whole number in 1..%ld, got '%.32s'", key, max, value);
        return MHD_HTTP_BAD_REQUEST;
    }
    *target = v;
    return 0;
}

enum MHD_Result nr_gw_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    (void)kind;
    nr_gw_req_t *req = cls;
    if (req->opt_status) return MHD_NO;
    req->opt_status = s_option(req, key, value, req->route == NR_GW_R_JOBS);
    return req->opt_status ? MHD_NO : MHD_YES;
}

/* ---- request bodies ---- */

int nr_gw_budget_reserve(nr_gw_req_t *req, size_t bytes) {
    nr_gateway_t *gw = req->gw;
    if (bytes <= req->reserved) return 0;
    size_t more = bytes - req->reserved;
    int rc = 0;
    pthread_mutex_lock(&gw->lock);
    if (more > gw->params.max_buffered_bytes - gw->buffered) {
        rc = NR_EBUSY;
    } else {
        gw->buffered += more;
        req->reserved = bytes;
    }
    pthread_mutex_unlock(&gw->lock);
    return rc;
}

void nr_gw_budget_release(nr_gw_req_t *req) {
    if (!req->reserved) return;
    nr_gateway_t *gw = req->gw;
    pthread_mutex_lock(&gw->lock);
    gw->buffered -= req->reserved;
    pthread_mutex_unlock(&gw->lock);
    req->reserved = 0;
}

size_t nr_gw_budget_used(nr_gateway_t *gw) {
    pthread_mutex_lock(&gw->lock);
    size_t n = gw->buffered;
    pthread_mutex_unlock(&gw->lock);
    return n;
}

int nr_gw_body_append(nr_gw_req_t *req, const char *data, size_t size) {
    size_t max = req->gw->params.max_body_bytes;
    if (req->too_big || req->busy) return 0;
    if (size > max - req->size) {
        req->too_big = 1;
        return 0;
    }
    if (req->size + size > req->cap) {
        /* Doubling from 64 KiB, within the reservation when the length was
         * declared (reserved up front), else reserving as it grows. */
        size_t cap = req->cap ? req->cap : 65536;
        while (cap < req->size + size) cap *= 2;
        if (cap > max) cap = max;
        if (req->declared && cap > req->reserved) cap = req->reserved;
        if (cap < req->size + size) cap = req->size + size;
        if (nr_gw_budget_reserve(req, cap)) {
            req->busy = 1;
            return 0;
        }
        uint8_t *p = realloc(req->body, cap);
        if (!p) return NR_ENOMEM;
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->size, data, size);
    req->size += size;
    return 0;
}

int nr_gw_flush_field(nr_gw_req_t *req) {
    if (!req->field_key[0]) return 0;
    req->field[req->field_len] = '\0';
    int st = s_option(req, req->field_key, req->field, 1);
    req->field_key[0] = '\0';
    req->field_len = 0;
    return st;
}

enum MHD_Result nr_gw_post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size) {
    (void)kind;
    (void)transfer_encoding;
    nr_gw_req_t *req = cls;
    if (!key) return MHD_YES;
    if (!strcmp(key, "image")) {
        if ((req->opt_status = nr_gw_flush_field(req))) return MHD_NO;
        if (off == 0 && (req->size == 0 && !req->have_image)) {
            req->have_image = 1;
            nr_gw_media_type(content_type, req->image_type, sizeof req->image_type);
            if (filename) {
                size_t n = 0;
                for (const char *p = filename; *p && n + 1 < sizeof req->name; p++)
                    req->name[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '_' : *p;
                req->name[n] = '\0';
            }
        } else if (off == 0 && req->have_image && size > 0 && req->size > 0) {
            req->opt_status = MHD_HTTP_BAD_REQUEST;
            req->opt_code = NR_EINVAL;
            snprintf(req->opt_error, sizeof req->opt_error, "the form has more than one 'image' field");
            return MHD_NO;
        }
        if (size && nr_gw_body_append(req, data, size)) return MHD_NO;
        return MHD_YES;
    }
    /* A small option field: gather its value, parse it when the next field
     * starts. The same name again from offset 0 after some of its value is
     * a second field of that name, not more of the first. */
    if (!strcmp(key, req->field_key) && off == 0 && req->field_len > 0) {
        req->opt_status = s_repeated(req, key);
        return MHD_NO;
    }
    if (strcmp(key, req->field_key)) {
        if ((req->opt_status = nr_gw_flush_field(req))) return MHD_NO;
        if (!s_option_bit(key)) {
            req->opt_status = MHD_HTTP_BAD_REQUEST;
            snprintf(req->opt_error, sizeof req->opt_error,
                     "unknown form field '%.64s' (known: image, voice, beams, max_length, prompt, language)", key);
            return MHD_NO;
        }
        snprintf(req->field_key, sizeof req->field_key, "%s", key);
        req->field_len = 0;
    }
    if (size > NR_GW_FIELD_MAX - req->field_len) {
        req->opt_status = MHD_HTTP_BAD_REQUEST;
        snprintf(req->opt_error, sizeof req->opt_error, "form field '%.64s' is longer than %d bytes",
                 key, NR_GW_FIELD_MAX);
        return MHD_NO;
    }
    memcpy(req->field + req->field_len, data, size);
    req->field_len += size;
    return MHD_YES;
}
