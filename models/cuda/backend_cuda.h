/* The CUDA backend's public face: init and queries only. Kernels, streams
 * and cuBLAS stay inside models/cuda/; nothing here needs cuda_runtime.h.
 * Model code reaches the backend through nr_backend_new("cuda:N")
 * (models/backend.h); these are for that dispatch, tests and benchmarks. */
#ifndef NR_MODELS_CUDA_BACKEND_CUDA_H
#define NR_MODELS_CUDA_BACKEND_CUDA_H

#include <stddef.h>

#include "models/backend.h"

/* Number of usable CUDA devices; 0 when there is none or the driver cannot
 * be reached, with the reason in why (may be NULL), e.g. "cudaGetDeviceCount:
 * CUDA driver version is insufficient for CUDA runtime version". Never fails
 * otherwise, never aborts. */
int nr_cuda_device_count(char *why, size_t whylen);

/* "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" for device index; 0 or NR_EDEVICE. */
int nr_cuda_device_describe(int device_index, char *buf, size_t buflen);

/* Matmul precision. F32 (default): cuBLAS F32, no TF32; the tolerances of
 * the CPU backend hold. TF32: every cuBLAS gemm with
 * CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores, ~1e-3 relative). BF16 / F16:
 * matmul weights converted once to bfloat16 / half (a copy kept per weight
 * buffer until it is freed: W must not change while in use, as model
 * weights never do), activations converted per call, F32 accumulation and
 * output; attention and patch-embedding gemms stay F32. Device names:
 * "cuda:N:tf32", "cuda:N:bf16", "cuda:N:f16" ("cuda:N" = F32). */
typedef enum { NR_CUDA_F32 = 0, NR_CUDA_TF32, NR_CUDA_BF16, NR_CUDA_F16 } nr_cuda_precision_t;

typedef struct {
    nr_cuda_precision_t precision;
} nr_cuda_params_t;

nr_cuda_params_t nr_cuda_default_params(void);
/* "f32", "tf32", "bf16", "f16" -> the precision; -1 when unknown. */
int nr_cuda_precision_from_name(const char *name);
const char *nr_cuda_precision_name(nr_cuda_precision_t p);

/* A backend on device `device_index`: its own non-blocking stream, cuBLAS
 * handle and scratch; F32 (nr_backend_cuda_new_params for another
 * precision). Every CUDA / cuBLAS failure in
 * an op returns NR_EDEVICE and leaves the message in the backend (see
 * nr_backend_cuda_last_error) and in the log. NULL with the reason in err
 * when the device does not exist or cannot be initialised. Thread-safe:
 * ops from several threads are serialised onto the one stream. */
nr_backend_t *nr_backend_cuda_new(int device_index, char *err, size_t errlen);
/* The same with params (NULL: defaults). */
nr_backend_t *nr_backend_cuda_new_params(int device_index, const nr_cuda_params_t *params, char *err,
                                         size_t errlen);

/* The last error message of a CUDA backend ("" when none; "" for a backend
 * that is not a CUDA one). */
const char *nr_backend_cuda_last_error(const nr_backend_t *b);

#endif
