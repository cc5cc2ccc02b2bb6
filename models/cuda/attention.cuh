/* CUDA backend, internal: fused multi-head attention (scores, softmax and
 * the weighted sum of values in one kernel). */
#ifndef NR_MODELS_CUDA_ATTENTION_CUH
#define NR_MODELS_CUDA_ATTENTION_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* kv_index entries carried in the launch parameters themselves (no copy,
 * no stream sync for a pageable host array): batches up to this size. */
#define NR_CUDA_INLINE_KV 512

/* The fields of nr_attn_args_t (models/backend.h), all pointers in device
 * memory. The K/V entry of batch b is kv_inline[b] when use_inline, else
 * kv_index[b] (a device array) when kv_index, else b. */
typedef struct {
    int batch, n_head, head_dim, n_q, n_kv, causal, q_pos0;
    int group; /* query heads per key/value head (grouped-query attention; 1: one each) */
    float scale;
    const float *q, *k, *v;
    float *out;
    size_t q_bstride, q_rstride, kv_bstride, kv_rstride, o_bstride, o_rstride;
    const int *kv_index;
    int use_inline;
    int kv_inline[NR_CUDA_INLINE_KV];
} nr_cuda_attn_t;

/* Dynamic shared memory one launch needs, in bytes. */
size_t nr_cuda_attention_smem(int head_dim, int n_kv);
/* One block per (query row, head, batch entry). max_smem is the device's
 * per-block opt-in limit; a launch needing more returns
 * cudaErrorInvalidConfiguration without running. */
cudaError_t nr_cuda_attention(const nr_cuda_attn_t *a, size_t max_smem, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
