/* CUDA backend: layer norm, one block per row, two passes (mean, then the
 * variance of x - mean, as the CPU kernel and PyTorch) so large means do
 * not cancel. In place is safe: every read of the row ends at the
 * reductions' barriers before the first write. */
#include "models/cuda/common.cuh"
#include "models/cuda/layernorm.cuh"

static __global__ void k_layernorm(float *y, const float *x, const float *g, const float *b, int N, float eps) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * N;
    float *yr = y + (size_t)blockIdx.x * N;
    float s = 0.0f;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += xr[i];
    const float mean = nr_block_sum(s, sh) / (float)N;
    float v = 0.0f;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        float d = xr[i] - mean;
        v += d * d;
    }
    const float var = nr_block_sum(v, sh) / (float)N;
    const float rs = 1.0f / sqrtf(var + eps);
    for (int i = threadIdx.x; i < N; i += blockDim.x) yr[i] = (xr[i] - mean) * rs * g[i] + b[i];
}

extern "C" cudaError_t nr_cuda_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N,
                                         float eps, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    unsigned threads = N >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((N + 31) / 32 * 32);
    k_layernorm<<<(unsigned)M, threads, 0, stream>>>(y, x, g, b, N, eps);
    return cudaGetLastError();
}
