/* CUDA backend: row softmax in place, one block per row: max, then
 * exp(x - max) and its sum, then the scale (three passes over the row, so
 * any row length works, 50257-wide logits included). */
#include "models/cuda/common.cuh"
#include "models/cuda/softmax.cuh"

static __global__ void k_softmax(float *x, int cols) {
    __shared__ float sh[32];
    float *p = x + (size_t)blockIdx.x * cols;
    float mx = -FLT_MAX;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) mx = fmaxf(mx, p[i]);
    mx = nr_block_max(mx, sh);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float e = expf(p[i] - mx);
        p[i] = e;
        s += e;
    }
    const float inv = 1.0f / nr_block_sum(s, sh);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) p[i] *= inv;
}

extern "C" cudaError_t nr_cuda_softmax(float *x, int rows, int cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    unsigned threads = cols >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((cols + 31) / 32 * 32);
    k_softmax<<<(unsigned)rows, threads, 0, stream>>>(x, cols);
    return cudaGetLastError();
}
