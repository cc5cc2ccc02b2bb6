/* CUDA backend: F32 -> F16 / BF16 (round to nearest even), packing strided
 * rows; grid-stride over the packed output. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "models/cuda/common.cuh"
#include "models/cuda/convert.cuh"

static __global__ void k_to_f16(__half *dst, const float *src, size_t n, size_t cols, size_t ld) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[(i / cols) * ld + i % cols]);
}

static __global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n, size_t cols, size_t ld) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[(i / cols) * ld + i % cols]);
}

extern "C" cudaError_t nr_cuda_to_half(void *dst, const float *src, size_t rows, size_t cols, size_t ld, int bf16,
                                       cudaStream_t stream) {
    const size_t n = rows * cols;
    if (n == 0) return cudaSuccess;
    const unsigned blocks = nr_cuda_blocks(n, NR_CUDA_ELT_THREADS);
    if (bf16) k_to_bf16<<<blocks, NR_CUDA_ELT_THREADS, 0, stream>>>((__nv_bfloat16 *)dst, src, n, cols, ld);
    else k_to_f16<<<blocks, NR_CUDA_ELT_THREADS, 0, stream>>>((__half *)dst, src, n, cols, ld);
    return cudaGetLastError();
}
