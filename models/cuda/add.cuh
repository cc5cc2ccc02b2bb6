/* CUDA backend, internal: residual add and bias add. Launchers enqueue on
 * `stream` and return the launch status (cudaGetLastError). */
#ifndef NR_MODELS_CUDA_ADD_CUH
#define NR_MODELS_CUDA_ADD_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] += x[i], i < n. */
cudaError_t nr_cuda_add(float *y, const float *x, size_t n, cudaStream_t stream);
/* y[m, j] += b[j] for m < M, j < N (rows N floats apart). */
cudaError_t nr_cuda_add_bias(float *y, const float *b, int M, int N, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
