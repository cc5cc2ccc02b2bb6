/* CUDA backend: GELU, exact 0.5 x (1 + erf(x / sqrt 2)), the tanh form
 * (gelu_new) 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) and quick_gelu
 * x * sigmoid(1.702 x) (form 2), with the accurate erff/tanhf/expf (no
 * fast-math intrinsics). */
#include "models/cuda/common.cuh"
#include "models/cuda/gelu.cuh"

static __global__ void k_gelu_erf(float *x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
}

static __global__ void k_gelu_tanh(float *x, size_t n) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

static __global__ void k_gelu_quick(float *x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        x[i] = v * (1.0f / (1.0f + expf(-1.702f * v)));
    }
}

extern "C" cudaError_t nr_cuda_gelu(float *x, size_t n, int tanh_form, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    unsigned blocks = nr_cuda_blocks(n, NR_CUDA_ELT_THREADS);
    if (tanh_form == 2) k_gelu_quick<<<blocks, NR_CUDA_ELT_THREADS, 0, stream>>>(x, n);
    else if (tanh_form) k_gelu_tanh<<<blocks, NR_CUDA_ELT_THREADS, 0, stream>>>(x, n);
    else k_gelu_erf<<<blocks, NR_CUDA_ELT_THREADS, 0, stream>>>(x, n);
    return cudaGetLastError();
}
