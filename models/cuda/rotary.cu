/* CUDA backend: rotary embeddings, one thread per (row, head, pair). The
 * frequency and angle are computed in float as transformers does
 * (inv_freq = 1 / theta ** (2k / hd), angle = pos * inv_freq); cosf / sinf
 * in full precision (no fast-math intrinsics) to track the CPU. */
#include "models/cuda/common.cuh"
#include "models/cuda/rotary.cuh"

static __global__ void k_rotary(float *x, size_t ld, size_t n, int n_head, int half, int n_tok, int pos0,
                                float theta) {
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += (size_t)gridDim.x * blockDim.x) {
        const int k = (int)(t % (size_t)half);
        const int h = (int)((t / (size_t)half) % (size_t)n_head);
        const size_t i = t / ((size_t)half * n_head);
        const float inv = 1.0f / powf(theta, (float)(2 * k) / (float)(2 * half));
        const float ang = (float)(pos0 + (int)(i % (size_t)n_tok)) * inv;
        const float c = cosf(ang), s = sinf(ang);
        float *p = x + i * ld + (size_t)h * 2 * half;
        const float x1 = p[k], x2 = p[k + half];
        p[k] = x1 * c - x2 * s;
        p[k + half] = x2 * c + x1 * s;
    }
}

extern "C" cudaError_t nr_cuda_rotary(float *x, size_t ld, int M, int n_head, int head_dim, int n_tok, int pos0,
                                      float theta, cudaStream_t stream) {
    const size_t n = (size_t)M * n_head * (head_dim / 2);
    if (n == 0) return cudaSuccess;
    k_rotary<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(x, ld, n, n_head,
                                                                                         head_dim / 2, n_tok, pos0,
                                                                                         theta);
    return cudaGetLastError();
}
