/* CUDA backend: ViT patch embedding = im2col (one thread per column
 * element, writes coalesced, reads contiguous along kx) + a cuBLAS gemm
 * straight into the output rows + a finishing pass (CLS, bias, positions). */
#include "models/cuda/common.cuh"
#include "models/cuda/patch_embed.cuh"

static __global__ void k_im2col(float *col, const float *px, size_t n, int C, int H, int W, int P, int gw, int np) {
    const int kk = C * P * P;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const int k = (int)(i % (size_t)kk);
        const size_t r = i / (size_t)kk; /* b * np + p */
        const int p = (int)(r % (size_t)np);
        const size_t b = r / (size_t)np;
        const int c = k / (P * P), ky = (k / P) % P, kx = k % P;
        const int py = p / gw, pxx = p % gw;
        col[i] = px[((b * C + c) * H + (size_t)py * P + ky) * W + (size_t)pxx * P + kx];
    }
}

static __global__ void k_patch_finish(float *out, const float *bias, const float *cls, const float *pos, size_t n,
                                      int rows, int D) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % (size_t)D);
        const int row = (int)((i / (size_t)D) % (size_t)rows);
        if (cls && row == 0) out[i] = cls[d] + pos[d];
        else out[i] = (out[i] + bias[d]) + pos[(size_t)row * D + d];
    }
}

extern "C" cudaError_t nr_cuda_im2col(float *col, const float *pixels, int batch, int C, int H, int W, int P,
                                      cudaStream_t stream) {
    const int gh = H / P, gw = W / P, np = gh * gw;
    const size_t n = (size_t)batch * np * C * P * P;
    if (n == 0) return cudaSuccess;
    k_im2col<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(col, pixels, n, C, H, W, P,
                                                                                         gw, np);
    return cudaGetLastError();
}

extern "C" cudaError_t nr_cuda_patch_finish(float *out, const float *b, const float *cls, const float *pos, int batch,
                                            int np, int D, cudaStream_t stream) {
    const int rows = np + (cls ? 1 : 0);
    const size_t n = (size_t)batch * rows * D;
    if (n == 0) return cudaSuccess;
    k_patch_finish<<<nr_cuda_blocks(n, NR_CUDA_ELT_THREADS), NR_CUDA_ELT_THREADS, 0, stream>>>(out, b, cls, pos, n,
                                                                                               rows, D);
    return cudaGetLastError();
}
