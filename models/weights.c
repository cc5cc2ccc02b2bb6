/* Internal weight store: see weights.h. */
#include "models/weights.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/tensor.h"

static int s_keep(nr_wstore_t *ws, void *p) {
    if (ws->n == ws->cap) {
        size_t nc = ws->cap ? ws->cap * 2 : 64;
        void **nb = realloc(ws->bufs, nc * sizeof(void *));
        if (!nb) return NR_ENOMEM;
        ws->bufs = nb;
        ws->cap = nc;
    }
    ws->bufs[ws->n++] = p;
    return 0;
}

int nr_wstore_has(const nr_wstore_t *ws, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", ws->prefix, name);
    return nr_checkpoint_find(ws->ck, full) != NULL;
}

/* Host F32 buffer -> backend buffer (takes ownership of host). */
static int s_place(nr_wstore_t *ws, float *host, size_t floats, float **out) {
    if (ws->be->host_memory) {
        if (s_keep(ws, host) != 0) {
            free(host);
            return NR_ENOMEM;
        }
        *out = host;
        return 0;
    }
    float *dev = nr_backend_upload_new(ws->be, host, floats * sizeof(float));
    free(host);
    if (!dev) return NR_EDEVICE;
    if (s_keep(ws, dev) != 0) {
        ws->be->ops->free(ws->be->ctx, dev);
        return NR_ENOMEM;
    }
    *out = dev;
    return 0;
}

int nr_wstore_get(nr_wstore_t *ws, const char *name, float **out, char *err, size_t errlen, int ndim, ...) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", ws->prefix, name);
    int64_t shape[NR_TENSOR_MAX_DIMS] = {0};
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < NR_TENSOR_MAX_DIMS; i++) shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    const nr_named_tensor_t *t = nr_checkpoint_find(ws->ck, full);
    if (t && t->dtype == NR_DTYPE_F32 && ws->be->host_memory && ((uintptr_t)t->data % 4) == 0) {
        /* Zero-copy: point into the mapping after the shape check. */
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
        if (ok) {
            *out = (float *)(uintptr_t)t->data;
            return 0;
        }
    }
    float *host = NULL;
    int rc = nr_checkpoint_load_f32(ws->ck, full, ndim, shape, &host, err, errlen);
    if (rc) return rc;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    rc = s_place(ws, host, (size_t)n, out);
    if (rc) return nr_seterr(err, errlen, rc, "%s: tensor %s: cannot place in backend memory", nr_checkpoint_path(ws->ck), full);
    return 0;
}

int nr_wstore_concat_rows(nr_wstore_t *ws, const char *const *names, const int64_t *rows, int count, int64_t cols,
                          float **out, char *err, size_t errlen) {
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += rows[i];
    float *host = nr_aligned_alloc((size_t)(total * cols) * sizeof(float));
    if (!host) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        char full[512];
        snprintf(full, sizeof full, "%s%s", ws->prefix, names[i]);
        int64_t shape[2] = {rows[i], cols};
        int nd = cols == 1 ? 1 : 2;
        float *part = NULL;
        int rc = nr_checkpoint_load_f32(ws->ck, full, nd, shape, &part, err, errlen);
        if (rc) {
            free(host);
            return rc;
        }
        memcpy(host + off * cols, part, (size_t)(rows[i] * cols) * sizeof(float));
        free(part);
        off += rows[i];
    }
    int rc = s_place(ws, host, (size_t)(total * cols), out);
    if (rc) return nr_seterr(err, errlen, rc, "%s: cannot place fused weights", nr_checkpoint_path(ws->ck));
    return 0;
}

int nr_wstore_get_matmul(nr_wstore_t *ws, const char *name, float **out, char *err, size_t errlen, int64_t N,
                         int64_t K, int rows) {
    return nr_wstore_concat_matmul(ws, &name, &N, 1, K, rows, out, err, errlen);
}

/* Parts of a fused matmul weight at most (q|k|v). */
#define S_MAX_PARTS 4

int nr_wstore_concat_matmul(nr_wstore_t *ws, const char *const *names, const int64_t *rows, int count, int64_t K,
                            int mrows, float **out, char *err, size_t errlen) {
    if (count < 1 || count > S_MAX_PARTS) return nr_seterr(err, errlen, NR_EINVAL, "weights: bad part count");
    const nr_named_tensor_t *t[S_MAX_PARTS];
    int64_t N = 0;
    int bf16 = ws->be->ops->adopt_bf16 && ws->be->host_memory;
    for (int i = 0; i < count; i++) {
        char full[512];
        snprintf(full, sizeof full, "%s%s", ws->prefix, names[i]);
        t[i] = nr_checkpoint_find(ws->ck, full);
        bf16 = bf16 && t[i] && t[i]->dtype == NR_DTYPE_BF16 && t[i]->ndim == 2 && t[i]->shape[0] == rows[i] &&
               t[i]->shape[1] == K;
        N += rows[i];
    }
    if (bf16 && N <= INT32_MAX && K <= INT32_MAX) {
        /* one part: the mapping itself; several: one BF16 copy of them stacked */
        const float *key = (const float *)t[0]->data; /* the first part's address names the whole */
        uint16_t *cat = NULL;
        if (count > 1 && !(cat = nr_aligned_alloc((size_t)(N * K) * sizeof(uint16_t))))
            return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        for (int i = 0, off = 0; cat && i < count; off += (int)rows[i], i++)
            memcpy(cat + (size_t)off * K, t[i]->data, t[i]->nbytes);
        int rc = ws->be->ops->adopt_bf16(ws->be->ctx, key, cat ? (const void *)cat : t[0]->data, NR_W_OUT_IN, (int)N,
                                         (int)K, mrows);
        if (rc == 1 && cat && s_keep(ws, cat) != 0) rc = NR_ENOMEM; /* the backend reads the copy */
        if (rc == 0 || rc == 1) {
            if (rc == 0 || cat) /* packed or copied: the mapped pages are not read again */
                for (int i = 0; i < count; i++) nr_checkpoint_drop_pages(ws->ck, t[i]);
            if (rc == 0) free(cat);
            *out = (float *)(uintptr_t)key;
            return 0;
        }
        free(cat);
        if (rc != NR_EUNSUPPORTED)
            return nr_seterr(err, errlen, rc, "%s: tensor %s%s: cannot pack for the backend", nr_checkpoint_path(ws->ck),
                             ws->prefix, names[0]);
    }
    int rc = count == 1 ? nr_wstore_get(ws, names[0], out, err, errlen, 2, N, K)
                        : nr_wstore_concat_rows(ws, names, rows, count, K, out, err, errlen);
    if (rc == 0 && (rc = nr_backend_prepare_matmul(ws->be, *out, NR_W_OUT_IN, (int)N, (int)K, mrows)))
        nr_seterr(err, errlen, rc, "%s: tensor %s%s: cannot convert for the backend", nr_checkpoint_path(ws->ck),
                  ws->prefix, names[0]);
    return rc;
}

void nr_wstore_free(nr_wstore_t *ws) {
    for (size_t i = 0; i < ws->n; i++) ws->be->ops->free(ws->be->ctx, ws->bufs[i]);
    free(ws->bufs);
    ws->bufs = NULL;
    ws->n = ws->cap = 0;
}
