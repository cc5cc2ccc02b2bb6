/* Tensors: dtype helpers, F16/BF16 conversion and aligned host tensors. */
#include "models/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

size_t nr_dtype_size(nr_dtype_t dtype) {
    switch (dtype) {
    case NR_DTYPE_F32: return 4;
    case NR_DTYPE_F16: return 2;
    case NR_DTYPE_BF16: return 2;
    case NR_DTYPE_I64: return 8;
    case NR_DTYPE_F64: return 8;
    case NR_DTYPE_I32: return 4;
    case NR_DTYPE_I16: return 2;
    case NR_DTYPE_I8: return 1;
    case NR_DTYPE_U64: return 8;
    case NR_DTYPE_U32: return 4;
    case NR_DTYPE_U16: return 2;
    case NR_DTYPE_U8: return 1;
    case NR_DTYPE_BOOL: return 1;
    default: return 0;
    }
}

const char *nr_dtype_name(nr_dtype_t dtype) {
    switch (dtype) {
    case NR_DTYPE_F32: return "F32";
    case NR_DTYPE_F16: return "F16";
    case NR_DTYPE_BF16: return "BF16";
    case NR_DTYPE_I64: return "I64";
    case NR_DTYPE_F64: return "F64";
    case NR_DTYPE_I32: return "I32";
    case NR_DTYPE_I16: return "I16";
    case NR_DTYPE_I8: return "I8";
    case NR_DTYPE_U64: return "U64";
    case NR_DTYPE_U32: return "U32";
    case NR_DTYPE_U16: return "U16";
    case NR_DTYPE_U8: return "U8";
    case NR_DTYPE_BOOL: return "BOOL";
    default: return "?";
    }
}

int nr_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int d = 0; d < NR_DTYPE_COUNT; d++)
        if (strcmp(name, nr_dtype_name((nr_dtype_t)d)) == 0) return d;
    return -1;
}

int64_t nr_tensor_numel(const nr_tensor_t *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void *nr_aligned_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

nr_tensor_t *nr_tensor_new(nr_dtype_t dtype, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > NR_TENSOR_MAX_DIMS || nr_dtype_size(dtype) == 0) return NULL;
    nr_tensor_t *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || shape[i] > ((int64_t)1 << 40) / n) {
            free(t);
            return NULL;
        }
        t->shape[i] = shape[i];
        n *= shape[i];
    }
    size_t bytes = (size_t)n * nr_dtype_size(dtype);
    t->data = nr_aligned_alloc(bytes);
    if (!t->data) {
        free(t);
        return NULL;
    }
    memset(t->data, 0, bytes);
    t->owned = 1;
    return t;
}

void nr_tensor_destroy(nr_tensor_t **t) {
    if (!t || !*t) return;
    if ((*t)->owned) free((*t)->data);
    free(*t);
    *t = NULL;
}

float nr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float nr_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t nr_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

uint16_t nr_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow (rounds to inf) */
    if (ax < 0x38800000u) {                                    /* subnormal or zero in f16 */
        if (ax < 0x33000000u) return (uint16_t)sign;           /* < half the smallest subnormal */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t s = 126 - e; /* value = m * 2^(e-150) = (m >> s) * 2^-24 */
        uint32_t r = m >> s;
        uint32_t rem = m & ((1u << s) - 1);
        uint32_t half = 1u << (s - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax - 0x38000000u) >> 13);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

void nr_convert_to_f32(float *dst, const void *src, nr_dtype_t dtype, size_t n) {
    const unsigned char *p = src;
    switch (dtype) {
    case NR_DTYPE_F32: memcpy(dst, src, n * 4); break;
    case NR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = nr_f16_to_f32(h);
        }
        break;
    case NR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = nr_bf16_to_f32(h);
        }
        break;
#define CONV(T, sz)                                                                               \
    for (size_t i = 0; i < n; i++) {                                                              \
        T v;                                                                                      \
        memcpy(&v, p + (sz) * i, sz);                                                             \
        dst[i] = (float)v;                                                                        \
    }                                                                                             \
    break
    case NR_DTYPE_I64: CONV(int64_t, 8);
    case NR_DTYPE_F64: CONV(double, 8);
    case NR_DTYPE_I32: CONV(int32_t, 4);
    case NR_DTYPE_I16: CONV(int16_t, 2);
    case NR_DTYPE_I8: CONV(int8_t, 1);
    case NR_DTYPE_U64: CONV(uint64_t, 8);
    case NR_DTYPE_U32: CONV(uint32_t, 4);
    case NR_DTYPE_U16: CONV(uint16_t, 2);
    case NR_DTYPE_U8: CONV(uint8_t, 1);
    case NR_DTYPE_BOOL:
        for (size_t i = 0; i < n; i++) dst[i] = p[i] ? 1.0f : 0.0f;
        break;
#undef CONV
    default: memset(dst, 0, n * 4); break;
    }
}

static void s_shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

int nr_named_tensor_to_f32(const nr_named_tensor_t *t, const char *file, int ndim, const int64_t *shape, float **out,
                           char *err, size_t errlen) {
    *out = NULL;
    if (t->dtype != NR_DTYPE_F32 && t->dtype != NR_DTYPE_F16 && t->dtype != NR_DTYPE_BF16)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: dtype %s is not a weight dtype (F32, F16, BF16)", file,
                         t->name, nr_dtype_name(t->dtype));
    if (ndim >= 0) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
        if (!ok) {
            char a[128], b[128];
            s_shape_str(a, sizeof a, ndim, shape);
            s_shape_str(b, sizeof b, t->ndim, t->shape);
            return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s: shape %s does not match config.json (expected %s)",
                             file, t->name, b, a);
        }
    }
    size_t n = t->nbytes / nr_dtype_size(t->dtype);
    float *f = nr_aligned_alloc(n ? n * sizeof(float) : 64);
    if (!f) return nr_seterr(err, errlen, NR_ENOMEM, "%s: tensor %s: out of memory", file, t->name);
    nr_convert_to_f32(f, t->data, t->dtype, n);
    *out = f;
    return 0;
}
