/* Internal: loading named weights from a checkpoint into a backend,
 * with shape checks; zero-copy for aligned F32 on host-memory backends. */
#ifndef NR_MODELS_WEIGHTS_H
#define NR_MODELS_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "models/backend.h"
#include "models/io/checkpoint.h"

typedef struct {
    nr_backend_t *be;
    const nr_checkpoint_t *ck;
    const char *prefix;
    void **bufs; /* backend buffers owned by the model */
    size_t n, cap;
} nr_wstore_t;

/* prefix + name, with the given shape (up to 4 dims, ndim args follow).
 * Returns 0 and *out (backend memory), NR_EMODEL, NR_ENOMEM. */
int nr_wstore_get(nr_wstore_t *ws, const char *name, float **out, char *err, size_t errlen, int ndim, ...);
/* 1 when prefix + name exists in the file. */
int nr_wstore_has(const nr_wstore_t *ws, const char *name);
/* Concatenates several [rows_i, cols] host-F32 tensors along rows into one
 * new backend buffer (for fused Q|K|V); each shape is checked. */
int nr_wstore_concat_rows(nr_wstore_t *ws, const char *const *names, const int64_t *rows, int count, int64_t cols,
                          float **out, char *err, size_t errlen);
/* A matmul weight (N, K) (torch Linear layout) multiplied by `rows` rows
 * (as prepare_matmul; this prepares it): as nr_wstore_get, except that a
 * BF16 tensor on a host backend with ops->adopt_bf16 (the CPU backend, every
 * precision) gets no F32 copy: it stays in the checkpoint's mapping (its
 * pages given back once packed), *out its key (the mapping's address:
 * pass it only to matmul and prepare_matmul, never read it as floats). */
int nr_wstore_get_matmul(nr_wstore_t *ws, const char *name, float **out, char *err, size_t errlen, int64_t N,
                         int64_t K, int rows);
/* The same for `count` (<= 4) [rows_i, K] tensors stacked along rows into
 * one weight (fused q|k|v): BF16 ones are adopted as one stacked BF16 copy
 * (kept only while the backend reads it), others as nr_wstore_concat_rows. */
int nr_wstore_concat_matmul(nr_wstore_t *ws, const char *const *names, const int64_t *rows, int count, int64_t K,
                            int mrows, float **out, char *err, size_t errlen);
void nr_wstore_free(nr_wstore_t *ws);

#endif
