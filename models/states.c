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

int nr_states_encode(const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype, unsigned char **frame,
                     size_t *len) {
    if (!data || !shape || !frame || !len) return NR_EINVAL;
    *frame = NULL;
    *len = 0;
    size_t size = nr_states_frame_size(dtype, ndim, shape);
    if (!size) return NR_EINVAL;
    unsigned char *f = malloc(size);
    if (!f) return NR_ENOMEM;
    memcpy(f, NR_STATES_MAGIC, 4);
    s_put32(f + 4, (uint32_t)dtype);
    s_put32(f + 8, (uint32_t)ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        s_put64(f + 12 + 8 * i, (uint64_t)shape[i]);
        n *= (size_t)shape[i];
    }
    unsigned char *p = f + 12 + 8 * ndim;
    for (size_t i = 0; i < n; i++) {
        if (dtype == NR_DTYPE_F32) {
            uint32_t b;
            memcpy(&b, &data[i], 4);
            s_put32(p + 4 * i, b);
        } else {
            uint16_t h = dtype == NR_DTYPE_F16 ? nr_f32_to_f16(data[i]) : nr_f32_to_bf16(data[i]);
            p[2 * i] = (unsigned char)h;
            p[2 * i + 1] = (unsigned char)(h >> 8);
        }
    }
    *frame = f;
    *len = size;
    return 0;
}

int nr_states_decode(const void *frame, size_t len, nr_tensor_t **out, char *err, size_t errlen) {
    if (!out) return NR_EINVAL;
    *out = NULL;
    const unsigned char *f = frame;
    if (!f || len < 12 || memcmp(f, NR_STATES_MAGIC, 4) != 0)
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: not an NRS1 frame (%zu bytes)", len);
    uint32_t dtype = s_get32(f + 4), ndim = s_get32(f + 8);
    if (dtype >= NR_DTYPE_COUNT || !s_float_dtype((nr_dtype_t)dtype))
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: unsupported dtype %u", dtype);
    if (ndim < 1 || ndim > NR_TENSOR_MAX_DIMS)
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: bad ndim %u", ndim);
    if (len < 12 + 8 * (size_t)ndim) return nr_seterr(err, errlen, NR_EPROTO, "encoder states: truncated header");
    int64_t shape[NR_TENSOR_MAX_DIMS];
    for (uint32_t i = 0; i < ndim; i++) {
        uint64_t v = s_get64(f + 12 + 8 * i);
        if (v == 0 || v > NR_STATES_MAX_BYTES)
            return nr_seterr(err, errlen, NR_EPROTO, "encoder states: bad dimension %u", i);
        shape[i] = (int64_t)v;
    }
    size_t want = nr_states_frame_size((nr_dtype_t)dtype, (int)ndim, shape);
    if (!want) return nr_seterr(err, errlen, NR_EPROTO, "encoder states: too large");
    if (want != len)
        return nr_seterr(err, errlen, NR_EPROTO, "encoder states: %zu bytes, the header says %zu", len, want);
    nr_tensor_t *t = nr_tensor_new(NR_DTYPE_F32, (int)ndim, shape);
    if (!t) return nr_seterr(err, errlen, NR_ENOMEM, "encoder states: out of memory");
    nr_convert_to_f32(t->data, f + 12 + 8 * ndim, (nr_dtype_t)dtype, (size_t)nr_tensor_numel(t));
    *out = t;
    return 0;
}
