/* CUDA backend, internal: F32 -> F16 / BF16 conversion for the reduced-
 * precision matmul (weights converted once, activations per call). */
#ifndef NR_MODELS_CUDA_CONVERT_CUH
#define NR_MODELS_CUDA_CONVERT_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[r*cols + c] = (half or bfloat16) src[r*ld + c] for r < rows, c < cols,
 * round to nearest even; bf16 selects bfloat16, else IEEE half. dst holds
 * rows*cols 2-byte elements. */
cudaError_t nr_cuda_to_half(void *dst, const float *src, size_t rows, size_t cols, size_t ld, int bf16,
                            cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
