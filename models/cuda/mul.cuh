/* CUDA backend, internal: elementwise product and scaling (GeGLU, Gemma's
 * embedding scale, PaliGemma's image-feature scale). */
#ifndef NR_MODELS_CUDA_MUL_CUH
#define NR_MODELS_CUDA_MUL_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] *= x[i], i < n. */
cudaError_t nr_cuda_mul(float *y, const float *x, size_t n, cudaStream_t stream);
/* x[i] *= s, i < n. */
cudaError_t nr_cuda_scale(float *x, size_t n, float s, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
