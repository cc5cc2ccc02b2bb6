/* The "NRS1" encoder-states frame (see states.h). */
#include "models/states.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static void s_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void s_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t s_get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t s_get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int s_float_dtype(nr_dtype_t d) { return d == NR_DTYPE_F32 || d == NR_DTYPE_F16 || d == NR_DTYPE_BF16; }

size_t nr_states_frame_size(nr_dtype_t dtype, int ndim, const int64_t *shape) {
    if (!s_float_dtype(dtype) || ndim < 1 || ndim > NR_TENSOR_MAX_DIMS) return 0;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || (uint64_t)shape[i] > NR_STATES_MAX_BYTES) return 0;
        n *= (uint64_t)shape[i];
        if (n > NR_STATES_MAX_BYTES) return 0;
    }
    size_t bytes = 12 + 8 * (size_t)ndim + (size_t)n * nr_dtype_size(dtype);
    return bytes > NR_STATES_MAX_BYTES ? 0 : bytes;
}

static int s_family_ok(const char *f, size_t n) {
    if (n < 1 || n > NR_STATES_FAMILY_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = f[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')) return 0;
    }
    return 1;
}

/* Writes a frame of either version: family NULL for version 1. */
static int s_encode(const char *family, const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype,
                    unsigned char **frame, size_t *len) {
    if (!data || !shape || !frame || !len) return NR_EINVAL;
    *frame = NULL;
    *len = 0;
    size_t fl = family ? strlen(family) : 0;
    if (family && !s_family_ok(family, fl)) return NR_EINVAL;
    size_t size = nr_states_frame_size(dtype, ndim, shape);
    if (!size) return NR_EINVAL;
    size_t head = family ? 4 + fl : 0; /* version 2's family fields */
    size += head;
    unsigned char *f = malloc(size);
    if (!f) return NR_ENOMEM;
    memcpy(f, family ? NR_STATES_MAGIC2 : NR_STATES_MAGIC, 4);
    if (family) {
        s_put32(f + 4, (uint32_t)fl);
        memcpy(f + 8, family, fl);
    }
    unsigned char *h = f + head;
    s_put32(h + 4, (uint32_t)dtype);
    s_put32(h + 8, (uint32_t)ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        s_put64(h + 12 + 8 * i, (uint64_t)shape[i]);
        n *= (size_t)shape[i];
    }
    unsigned char *p = h + 12 + 8 * ndim;
    for (size_t i = 0; i < n; i++) {
        if (dtype == NR_DTYPE_F32) {
            uint32_t b;
            memcpy(&b, &data[i], 4);
            s_put32(p + 4 * i, b);
        } else {
            uint16_t v = dtype == NR_DTYPE_F16 ? nr_f32_to_f16(data[i]) : nr_f32_to_bf16(data[i]);
            p[2 * i] = (unsigned char)v;
            p[2 * i + 1] = (unsigned char)(v >> 8);
        }
    }
    *frame = f;
    *len = size;
    return 0;
}

int nr_states_encode_family(const char *family, const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype,
                            unsigned char **frame, size_t *len) {
    if (!family) return NR_EINVAL;
    return s_encode(family, data, ndim, shape, dtype, frame, len);
}

int nr_states_encode(const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype, unsigned char **frame,
                     size_t *len) {
    return s_encode(NULL, data, ndim, shape, dtype, frame, len);
}

int nr_states_decode_family(const void *frame, size_t len, nr_tensor_t **out, char *family, size_t family_cap,
                            char *err, size_t errlen) {
    if (!out) return NR_EINVAL;
    *out = NULL;
    if (family && family_cap) family[0] = 0;
    const unsigned char *f = frame;
    size_t head = 0;
    const char *fam = NR_STATES_V1_FAMILY;
    size_t fl = strlen(fam);
    if (f && len >= 8 && memcmp(f, NR_STATES_MAGIC2, 4) == 0) {
        fl = s_get32(f + 4);
        if (fl > NR_STATES_FAMILY_MAX || len < 8 + fl || !s_family_ok((const char *)f + 8, fl))
            return nr_seterr(err, errlen, NR_EPROTO, "encoder states: bad family name");
        fam = (const char *)f + 8;
        head = 4 + fl;
    } else if (!f || len < 12 || memcmp(f, NR_STATES_MAGIC, 4) != 0) {
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: not an NRS1/NRS2 frame (%zu bytes)", len);
    }
    if (len - head < 12) return nr_seterr(err, errlen, NR_EPROTO, "encoder states: truncated header");
    const unsigned char *h = f + head;
    size_t hlen = len - head; /* the rest reads as a version 1 frame after its magic */
    uint32_t dtype = s_get32(h + 4), ndim = s_get32(h + 8);
    if (dtype >= NR_DTYPE_COUNT || !s_float_dtype((nr_dtype_t)dtype))
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: unsupported dtype %u", dtype);
    if (ndim < 1 || ndim > NR_TENSOR_MAX_DIMS)
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: bad ndim %u", ndim);
    if (hlen < 12 + 8 * (size_t)ndim) return nr_seterr(err, errlen, NR_EPROTO, "encoder states: truncated header");
    int64_t shape[NR_TENSOR_MAX_DIMS];
    for (uint32_t i = 0; i < ndim; i++) {
        uint64_t v = s_get64(h + 12 + 8 * i);
        if (v == 0 || v > NR_STATES_MAX_BYTES)
            return nr_seterr(err, errlen, NR_EPROTO, "encoder states: bad dimension %u", i);
        shape[i] = (int64_t)v;
    }
    size_t want = nr_states_frame_size((nr_dtype_t)dtype, (int)ndim, shape);
    if (!want) return nr_seterr(err, errlen, NR_EPROTO, "encoder states: too large");
    if (want != hlen)
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: %zu bytes, the header says %zu", len, want + head);
    nr_tensor_t *t = nr_tensor_new(NR_DTYPE_F32, (int)ndim, shape);
    if (!t) return nr_seterr(err, errlen, NR_ENOMEM, "encoder states: out of memory");
    nr_convert_to_f32(t->data, h + 12 + 8 * ndim, (nr_dtype_t)dtype, (size_t)nr_tensor_numel(t));
    if (family && family_cap) snprintf(family, family_cap, "%.*s", (int)fl, fam);
    *out = t;
    return 0;
}

int nr_states_decode(const void *frame, size_t len, nr_tensor_t **out, char *err, size_t errlen) {
    return nr_states_decode_family(frame, len, out, NULL, 0, err, errlen);
}
