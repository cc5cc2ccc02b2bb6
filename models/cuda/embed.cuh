/* CUDA backend, internal: token + position embeddings. */
#ifndef NR_MODELS_CUDA_EMBED_CUH
#define NR_MODELS_CUDA_EMBED_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tokens whose ids and positions travel in the launch parameters (decode
 * steps: no copy of a pageable host array, so no stream sync). */
#define NR_CUDA_INLINE_TOKENS 256

typedef struct {
    int ids[NR_CUDA_INLINE_TOKENS];
    int pos[NR_CUDA_INLINE_TOKENS];
} nr_cuda_tokens_t;

/* As nr_cuda_embed for n <= NR_CUDA_INLINE_TOKENS tokens given inline. */
cudaError_t nr_cuda_embed_inline(float *out, const float *wte, const float *wpe, const nr_cuda_tokens_t *t, int n,
                                 int dim, cudaStream_t stream);
/* out[i,:] = wte[ids[i],:] + wpe[pos[i],:] for i < n, rows of dim floats.
 * ids and pos are device arrays, already checked against the tables. */
cudaError_t nr_cuda_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                          int dim, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
