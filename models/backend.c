/* Backend selection by device name. */
#include "models/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/cpu/cpu.h"
#include "models/cpu/dispatch.h"
#ifdef NR_HAVE_CUDA
#include "models/cuda/backend_cuda.h"
#endif

/* The models run every op on the one backend they are given, with no per-op
 * fallback: a backend is handed out only when it implements every op.
 * Returns b, or NULL (b destroyed) with the missing op in err. */
static nr_backend_t *s_complete(nr_backend_t *b, const char *device, char *err, size_t errlen) {
    for (int op = 0; b && op < NR_OP_COUNT; op++) {
        if (b->ops->supports_op(b->ctx, (nr_op_t)op)) continue;
        nr_seterr(err, errlen, NR_EUNSUPPORTED, "device %s: the %s backend lacks op %d", device,
                  b->ops->name, op);
        nr_backend_destroy(&b);
    }
    return b;
}

nr_backend_t *nr_backend_new(const char *device, int num_threads, char *err, size_t errlen) {
    if (!device || !*device || strcmp(device, "cpu") == 0 || strncmp(device, "cpu:", 4) == 0) {
        /* "cpu" (F32) or "cpu:PRECISION" (f32, bf16, int8): the matmul weight precision. */
        int pr = NR_CPU_F32;
        if (device && strncmp(device, "cpu:", 4) == 0) {
            pr = nr_cpu_precision_from_name(device + 4);
            if (pr < 0) {
                nr_seterr(err, errlen, NR_EINVAL, "device %s: unknown precision \"%s\" (cpu:f32, cpu:bf16 or cpu:int8)",
                          device, device + 4);
                return NULL;
            }
        }
        if (nr_cpu_path_init(err, errlen)) return NULL; /* NR_CPU_PATH names a path this CPU lacks */
        nr_backend_t *b = nr_cpu_backend_new_precision(num_threads, (nr_cpu_precision_t)pr);
        if (!b) nr_seterr(err, errlen, NR_ENOMEM, "cpu backend: out of memory");
        return s_complete(b, device ? device : "cpu", err, errlen);
    }
    if (strncmp(device, "cuda", 4) == 0) {
        /* "cuda" (device 0), "cuda:N", or "cuda:N:PRECISION" (f32, tf32, bf16, f16). */
        const char *p = device + 4;
        long idx = 0;
        char prec[16] = "f32";
        if (*p == ':') {
            p++;
            if (*p < '0' || *p > '9') idx = -1;
            for (; *p >= '0' && *p <= '9' && idx >= 0; p++) idx = idx < 100000 ? idx * 10 + (*p - '0') : -1;
            if (*p == ':' && strlen(p + 1) > 0 && strlen(p + 1) < sizeof prec) {
                snprintf(prec, sizeof prec, "%s", p + 1);
            } else if (*p) {
                idx = -1;
            }
        } else if (*p) {
            idx = -1;
        }
        if (idx < 0) {
            nr_seterr(err, errlen, NR_EINVAL, "unknown device \"%s\" (cpu[:f32|bf16|int8], cuda:N or cuda:N:f32|tf32|bf16|f16)",
                      device);
            return NULL;
        }
#ifdef NR_HAVE_CUDA
        nr_cuda_params_t cp = nr_cuda_default_params();
        int pr = nr_cuda_precision_from_name(prec);
        if (pr < 0) {
            nr_seterr(err, errlen, NR_EINVAL, "device %s: unknown precision \"%s\" (f32, tf32, bf16 or f16)", device,
                      prec);
            return NULL;
        }
        cp.precision = (nr_cuda_precision_t)pr;
        return s_complete(nr_backend_cuda_new_params((int)idx, &cp, err, errlen), device, err, errlen);
#else
        nr_seterr(err, errlen, NR_EUNSUPPORTED,
                  "device %s: this build has no CUDA backend (built without NR_CUDA; rebuild with -DNR_CUDA=ON "
                  "and the CUDA toolkit, or use --device cpu)",
                  device);
        return NULL;
#endif
    }
    nr_seterr(err, errlen, NR_EINVAL, "unknown device \"%s\" (cpu, cpu:bf16, cpu:int8 or cuda:N)", device);
    return NULL;
}

void nr_backend_destroy(nr_backend_t **b) {
    if (!b || !*b) return;
    if ((*b)->ops && (*b)->ops->destroy) (*b)->ops->destroy((*b)->ctx);
    free(*b);
    *b = NULL;
}

void *nr_backend_upload_new(nr_backend_t *b, const void *host, size_t bytes) {
    void *p = b->ops->alloc(b->ctx, bytes);
    if (!p) return NULL;
    if (b->ops->upload(b->ctx, p, host, bytes) != 0) {
        b->ops->free(b->ctx, p);
        return NULL;
    }
    return p;
}

int nr_backend_prepare_matmul(const nr_backend_t *b, const float *w, nr_wlayout_t layout, int N, int K, int rows) {
    return b->ops->prepare_matmul ? b->ops->prepare_matmul(b->ctx, w, layout, N, K, rows) : 0;
}

int nr_backend_linear(const nr_backend_t *be, float *y, size_t ldy, const float *x, size_t ldx, const float *w,
                      nr_wlayout_t layout, const float *b, int M, int N, int K, int act, int accumulate) {
    if (act >= 0 && accumulate) return NR_EINVAL;
    const nr_backend_ops_t *o = be->ops;
    if (o->linear) return o->linear(be->ctx, y, ldy, x, ldx, w, layout, b, M, N, K, act, accumulate);
    if ((b || act >= 0) && ldy != (size_t)N) return NR_EINVAL;
    int rc = o->matmul(be->ctx, y, ldy, x, ldx, w, layout, M, N, K, accumulate);
    if (rc == 0 && b) rc = o->add_bias(be->ctx, y, b, M, N);
    if (rc == 0 && act >= 0) rc = o->gelu(be->ctx, y, (size_t)M * N, act);
    return rc;
}

void nr_backend_free(const nr_backend_t *b, void *p) {
    if (p) b->ops->free(b->ctx, p);
}
