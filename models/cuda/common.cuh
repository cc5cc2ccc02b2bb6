/* Internal to the CUDA backend: what every kernel file shares (warp and
 * block reductions, launch sizes). Only .cu files include this; the
 * launchers they export are declared in C-compatible .cuh headers. */
#ifndef NR_MODELS_CUDA_COMMON_CUH
#define NR_MODELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#include <float.h>
#include <stddef.h>

/* Threads per block for row kernels (layernorm, softmax, attention) and for
 * element-wise kernels. Multiples of 32: the reductions below assume it. */
#define NR_CUDA_ROW_THREADS 256
#define NR_CUDA_ELT_THREADS 256
/* Grid cap for grid-stride element-wise loops. */
#define NR_CUDA_MAX_BLOCKS 65535

static __device__ __forceinline__ float nr_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float nr_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum; every thread gets the result. blockDim.x is a multiple of
 * 32; sh holds 32 floats. The leading barrier lets sh be reused by
 * back-to-back calls. */
static __device__ __forceinline__ float nr_block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = nr_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return nr_warp_sum(v);
}

static __device__ __forceinline__ float nr_block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = nr_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -FLT_MAX;
    return nr_warp_max(v);
}

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned nr_cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return b > NR_CUDA_MAX_BLOCKS ? NR_CUDA_MAX_BLOCKS : (unsigned)b;
}

#endif
