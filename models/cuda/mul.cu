/* CUDA backend: elementwise product and scaling (grid-stride loops). */
#include "models/cuda/common.cuh"
#include "models/cuda/mul.cuh"

static __global__ void k_mul(float *y, const float *x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] *= x[i];
}

static __global__ void k_scale(float *x, size_t n, float s) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

extern "C" cudaError_t nr_cuda_mul(float *y, const float *x, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    k_mul<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(y, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t nr_cuda_scale(float *x, size_t n, float s, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    k_scale<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(x, n, s);
    return cudaGetLastError();
}
