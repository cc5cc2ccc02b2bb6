/* CUDA backend, internal: token + position embeddings. */
#ifndef NR_MODELS_CUDA_EMBED_CUH
#define NR_MODELS_CUDA_EMBED_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i,:] = wte[ids[i],:] + wpe[pos[i],:] for i < n, rows of dim floats.
 * ids and pos are device arrays, already checked against the tables. */
cudaError_t nr_cuda_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                          int dim, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
