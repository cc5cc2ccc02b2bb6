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

/* A backend on device `device_index`: its own non-blocking stream, cuBLAS
 * handle (F32 gemm, no TF32) and scratch. Every CUDA / cuBLAS failure in
 * an op returns NR_EDEVICE and leaves the message in the backend (see
 * nr_backend_cuda_last_error) and in the log. NULL with the reason in err
 * when the device does not exist or cannot be initialised. Thread-safe:
 * ops from several threads are serialised onto the one stream. */
nr_backend_t *nr_backend_cuda_new(int device_index, char *err, size_t errlen);

/* The last error message of a CUDA backend ("" when none; "" for a backend
 * that is not a CUDA one). */
const char *nr_backend_cuda_last_error(const nr_backend_t *b);

#endif
