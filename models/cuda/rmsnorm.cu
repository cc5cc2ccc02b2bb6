/* CUDA backend: RMSNorm (transformers' GemmaRMSNorm: the weight applied as
 * 1 + w), one block per row. In place is safe: every read of the row ends
 * at the reduction's barriers before the first write. */
#include "models/cuda/common.cuh"
#include "models/cuda/rmsnorm.cuh"

static __global__ void k_rmsnorm(float *y, const float *x, const float *g, int N, float eps) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * N;
    float *yr = y + (size_t)blockIdx.x * N;
    float s = 0.0f;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += xr[i] * xr[i];
    const float r = rsqrtf(nr_block_sum(s, sh) / (float)N + eps);
    for (int i = threadIdx.x; i < N; i += blockDim.x) yr[i] = (xr[i] * r) * (1.0f + g[i]);
}

extern "C" cudaError_t nr_cuda_rmsnorm(float *y, const float *x, const float *g, int M, int N, float eps,
                                       cudaStream_t stream) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    unsigned threads = N >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((N + 31) / 32 * 32);
    k_rmsnorm<<<(unsigned)M, threads, 0, stream>>>(y, x, g, N, eps);
    return cudaGetLastError();
}
