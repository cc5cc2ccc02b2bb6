/* CUDA backend: residual add and bias add (grid-stride element loops). */
#include "models/cuda/add.cuh"
#include "models/cuda/common.cuh"

static __global__ void k_add(float *y, const float *x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

static __global__ void k_add_bias(float *y, const float *b, size_t n, unsigned N) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += b[i % N];
}

extern "C" cudaError_t nr_cuda_add(float *y, const float *x, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    k_add<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(y, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t nr_cuda_add_bias(float *y, const float *b, int M, int N, cudaStream_t stream) {
    size_t n = (size_t)M * (size_t)N;
    if (n == 0) return cudaSuccess;
    k_add_bias<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(y, b, n, (unsigned)N);
    return cudaGetLastError();
}
