/* CUDA backend, internal: GELU in place, exact (erf) or tanh form. */
#ifndef NR_MODELS_CUDA_GELU_CUH
#define NR_MODELS_CUDA_GELU_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x[i] = gelu(x[i]) for i < n; tanh_form selects gelu_new. */
cudaError_t nr_cuda_gelu(float *x, size_t n, int tanh_form, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
