/* CUDA backend, internal: rotary position embeddings (rotate-half). */
#ifndef NR_MODELS_CUDA_ROTARY_CUH
#define NR_MODELS_CUDA_ROTARY_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* In place on x [M rows, ld floats apart] of n_head heads of head_dim (even)
 * floats: row i at position pos0 + i % n_tok, pair (k, k + head_dim/2)
 * rotated by pos * theta^(-2k / head_dim) (models/backend.h, rotary op). */
cudaError_t nr_cuda_rotary(float *x, size_t ld, int M, int n_head, int head_dim, int n_tok, int pos0, float theta,
                           cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
