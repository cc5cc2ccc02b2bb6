/* CUDA backend: token + position embeddings, one block per token; ids and
 * positions inline in the parameters (decode steps) or in device memory. */
#include "models/cuda/common.cuh"
#include "models/cuda/embed.cuh"

static __global__ void k_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos,
                               int dim) {
    const float *t = wte + (size_t)ids[blockIdx.x] * dim, *p = wpe ? wpe + (size_t)pos[blockIdx.x] * dim : NULL;
    float *o = out + (size_t)blockIdx.x * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] = p ? t[d] + p[d] : t[d];
}

static __global__ void k_embed_inline(float *out, const float *wte, const float *wpe,
                                      const __grid_constant__ nr_cuda_tokens_t t, int dim) {
    const float *te = wte + (size_t)t.ids[blockIdx.x] * dim, *p = wpe ? wpe + (size_t)t.pos[blockIdx.x] * dim : NULL;
    float *o = out + (size_t)blockIdx.x * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] = p ? te[d] + p[d] : te[d];
}

extern "C" cudaError_t nr_cuda_embed_inline(float *out, const float *wte, const float *wpe, const nr_cuda_tokens_t *t,
                                            int n, int dim, cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    if (n > NR_CUDA_INLINE_TOKENS) return cudaErrorInvalidValue;
    unsigned threads = dim >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((dim + 31) / 32 * 32);
    k_embed_inline<<<(unsigned)n, threads, 0, stream>>>(out, wte, wpe, *t, dim);
    return cudaGetLastError();
}

extern "C" cudaError_t nr_cuda_embed(float *out, const float *wte, const float *wpe, const int *ids, const int *pos,
                                     int n, int dim, cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    unsigned threads = dim >= NR_CUDA_ROW_THREADS ? NR_CUDA_ROW_THREADS : (unsigned)((dim + 31) / 32 * 32);
    k_embed<<<(unsigned)n, threads, 0, stream>>>(out, wte, wpe, ids, pos, dim);
    return cudaGetLastError();
}
