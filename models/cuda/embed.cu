/* CUDA backend: token + position embeddings, one block per token. */
#include "models/cuda/common.cuh"
#include "models/cuda/embed.cuh"

static __global__ void k_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos,
                               int dim) {
    const float *t = wte + (size_t)ids[blockIdx.x] * dim, *p = wpe + (size_t)pos[blockIdx.x] * dim;
    float *o = out + (size_t)blockIdx.x * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] = t[d] + p[d];
}

extern "C" cudaError_t nr_cuda_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos,
                                     int n, int dim, cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    unsigned threads = dim >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((dim + 31) / 32 * 32);
    k_embed<<<(unsigned)n, threads, 0, stream>>>(out, wte, wpe, ids, pos, dim);
    return cudaGetLastError();
}
