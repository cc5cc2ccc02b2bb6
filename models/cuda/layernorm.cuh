/* CUDA backend, internal: layer norm per row. */
#ifndef NR_MODELS_CUDA_LAYERNORM_CUH
#define NR_MODELS_CUDA_LAYERNORM_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[m,:] = (x[m,:] - mean) / sqrt(var + eps) * g + b for m < M, rows of N
 * floats; y may equal x (in place). */
cudaError_t nr_cuda_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
