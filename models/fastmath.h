/* Branch-free float math shared by the CPU kernels (models/cpu/) and the
 * generation code: static inline, so each file compiles it with its own
 * flags and loops over it vectorize. */
#ifndef NR_MODELS_FASTMATH_H
#define NR_MODELS_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) for x in float range: Cephes-style range reduction + degree-6
 * polynomial, relative error ~1e-7. */
static inline float nr_fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return e * scale;
}

#endif
