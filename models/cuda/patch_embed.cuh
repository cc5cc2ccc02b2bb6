/* CUDA backend, internal: the two kernels around the ViT patch-embedding
 * gemm (the gemm itself is cuBLAS, in cuda.c). */
#ifndef NR_MODELS_CUDA_PATCH_EMBED_CUH
#define NR_MODELS_CUDA_PATCH_EMBED_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* im2col for a 16x16/16-style conv (kernel = stride = P, no padding):
 * pixels [batch, C, H, W] -> col [batch, (H/P)*(W/P), C*P*P], row
 * py*(W/P)+px, column (c*P + ky)*P + kx (the conv weight layout [D, C, P, P]). */
cudaError_t nr_cuda_im2col(float *col, const float *pixels, int batch, int C, int H, int W, int P,
                           cudaStream_t stream);
/* out [batch, 1+np, D]: row 0 = cls + pos[0]; rows 1.. (holding the conv
 * output) += b, then += pos[row] (the CPU kernel's order). cls NULL
 * (SigLIP): out [batch, np, D], every row a patch. */
cudaError_t nr_cuda_patch_finish(float *out, const float *b, const float *cls, const float *pos, int batch, int np,
                                 int D, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
