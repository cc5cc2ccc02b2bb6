/* CUDA backend, internal: softmax per row, in place. */
#ifndef NR_MODELS_CUDA_SOFTMAX_CUH
#define NR_MODELS_CUDA_SOFTMAX_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x[r,:] = softmax(x[r,:]) for r < rows, rows of cols floats. */
cudaError_t nr_cuda_softmax(float *x, int rows, int cols, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
