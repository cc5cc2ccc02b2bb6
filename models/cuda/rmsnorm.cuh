/* CUDA backend, internal: Gemma's RMSNorm per row. */
#ifndef NR_MODELS_CUDA_RMSNORM_CUH
#define NR_MODELS_CUDA_RMSNORM_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[m,:] = x[m,:] / sqrt(mean(x[m,:]^2) + eps) * (1 + g) for m < M, rows of
 * N floats; y may equal x (in place). */
cudaError_t nr_cuda_rmsnorm(float *y, const float *x, const float *g, int M, int N, float eps, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
