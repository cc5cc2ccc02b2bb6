/* CUDA backend: fused attention. One block per (query row i, head h, batch
 * entry b), NR_CUDA_ROW_THREADS threads:
 *   1. q (head_dim floats) into shared memory;
 *   2. scores: warp w takes keys j = w, w + warps, ...; its lanes split the
 *      head dimension (coalesced key reads) and reduce with shuffles;
 *      s_j = (q . k_j) * scale into shared memory (n_kv floats);
 *   3. max and sum of exp(s_j - max) over the block;
 *   4. out[d] = sum_j p_j v_j[d] / sum: thread t takes d = t % head_dim and
 *      every G-th key (G = threads / head_dim groups), partial sums meet in
 *      shared memory.
 * Head h reads key/value head h / group (grouped-query attention).
 * Causal rows stop at key q_pos0 + i; kv_index[b] picks the K/V entry (beams
 * of one image share the encoder's; the parameters are __grid_constant__ so
 * the inline index table is read in place, never copied per thread). Shared memory: head_dim + n_kv + 32 +
 * threads floats; long contexts beyond the opt-in limit are refused. */
#include "models/cuda/attention.cuh"
#include "models/cuda/common.cuh"

static __global__ void k_attention(const __grid_constant__ nr_cuda_attn_t a) {
    extern __shared__ float sm[];
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hd = a.head_dim, tid = threadIdx.x, nt = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
    const size_t kb = (size_t)(a.use_inline ? a.kv_inline[b] : a.kv_index ? a.kv_index[b] : b);
    const float *q = a.q + (size_t)b * a.q_bstride + (size_t)i * a.q_rstride + (size_t)h * hd;
    const float *kbase = a.k + kb * a.kv_bstride + (size_t)(h / a.group) * hd;
    const float *vbase = a.v + kb * a.kv_bstride + (size_t)(h / a.group) * hd;
    float *o = a.out + (size_t)b * a.o_bstride + (size_t)i * a.o_rstride + (size_t)h * hd;
    int lim = a.n_kv;
    if (a.causal && a.q_pos0 + i + 1 < lim) lim = a.q_pos0 + i + 1;

    float *qs = sm;               /* head_dim */
    float *ps = qs + hd;          /* n_kv */
    float *red = ps + a.n_kv;     /* 32 */
    float *part = red + 32;       /* threads */

    for (int d = tid; d < hd; d += nt) qs[d] = q[d];
    __syncthreads();
    for (int j = warp; j < lim; j += nw) {
        const float *k = kbase + (size_t)j * a.kv_rstride;
        float s = 0.0f;
        for (int d = lane; d < hd; d += 32) s += qs[d] * k[d];
        s = nr_warp_sum(s);
        if (lane == 0) ps[j] = s * a.scale;
    }
    __syncthreads();
    float mx = -FLT_MAX;
    for (int j = tid; j < lim; j += nt) mx = fmaxf(mx, ps[j]);
    mx = nr_block_max(mx, red);
    float sum = 0.0f;
    for (int j = tid; j < lim; j += nt) {
        float e = expf(ps[j] - mx);
        ps[j] = e;
        sum += e;
    }
    /* nr_block_sum's barriers also publish the ps[] writes above. */
    const float inv = 1.0f / nr_block_sum(sum, red);
    if (hd >= nt) {
        for (int d = tid; d < hd; d += nt) {
            float acc = 0.0f;
            for (int j = 0; j < lim; j++) acc += ps[j] * vbase[(size_t)j * a.kv_rstride + d];
            o[d] = acc * inv;
        }
        return;
    }
    const int G = nt / hd, d = tid % hd, g = tid / hd;
    if (g < G) {
        float acc = 0.0f;
        for (int j = g; j < lim; j += G) acc += ps[j] * vbase[(size_t)j * a.kv_rstride + d];
        part[tid] = acc;
    }
    __syncthreads();
    if (tid < hd) {
        float acc = 0.0f;
        for (int gg = 0; gg < G; gg++) acc += part[gg * hd + tid];
        o[tid] = acc * inv;
    }
}

extern "C" size_t nr_cuda_attention_smem(int head_dim, int n_kv) {
    return ((size_t)head_dim + (size_t)n_kv + 32 + NR_CUDA_ROW_THREADS) * sizeof(float);
}

extern "C" cudaError_t nr_cuda_attention(const nr_cuda_attn_t *a, size_t max_smem, cudaStream_t stream) {
    if (a->batch <= 0 || a->n_head <= 0 || a->n_q <= 0) return cudaSuccess;
    if (a->group <= 0) return cudaErrorInvalidValue;
    if (a->n_head > 65535 || a->batch > 65535) return cudaErrorInvalidConfiguration;
    const size_t smem = nr_cuda_attention_smem(a->head_dim, a->n_kv);
    if (smem > max_smem) return cudaErrorInvalidConfiguration;
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    dim3 grid((unsigned)a->n_q, (unsigned)a->n_head, (unsigned)a->batch);
    k_attention<<<grid, NR_CUDA_ROW_THREADS, smem, stream>>>(*a);
    return cudaGetLastError();
}
