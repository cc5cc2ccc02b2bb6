/* Which instruction set the CPU kernels use: one binary for every x86-64
 * CPU. The F32 kernels (kernels_isa.c) are compiled once per target and the
 * BF16 kernels carry target attributes or their own file (amx.c); the path
 * is chosen once, at the first use, from cpuid and xgetbv (what the CPU has
 * and what the OS saves on a context switch) and, for AMX, the kernel's
 * permission for the tile state. The environment variable NR_CPU_PATH
 * (generic, avx2, avx512, avx512bf16, amx; "auto" or unset: the best one)
 * forces a path for tests and benchmarks; forcing one the CPU cannot run is
 * an error. Other architectures have the generic path only. */
#ifndef NR_MODELS_CPU_DISPATCH_H
#define NR_MODELS_CPU_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "models/backend.h"

/* Ordered: each path can use everything the ones before it use. */
typedef enum {
    NR_CPU_PATH_GENERIC = 0, /* plain C for the compiler's baseline target */
    NR_CPU_PATH_AVX2,        /* AVX2 + FMA (x86-64-v3) */
    NR_CPU_PATH_AVX512,      /* AVX-512 F/BW/VL/DQ/CD (x86-64-v4) */
    NR_CPU_PATH_AVX512BF16,  /* AVX-512 + BF16 (vdpbf16ps) */
    NR_CPU_PATH_AMX,         /* AVX-512 BF16 + AMX BF16 tiles */
    NR_CPU_PATH_COUNT
} nr_cpu_path_t;

/* The F32 kernels compiled for one instruction set (see kernels.h). */
typedef struct {
    void (*layernorm)(float *y, const float *x, const float *g, const float *b, int M, int N, float eps);
    void (*gelu)(float *x, size_t n, int tanh_form);
    void (*softmax)(float *x, int rows, int cols);
    void (*add)(float *y, const float *x, size_t n);
    void (*add_bias)(float *y, const float *b, int M, int N);
    void (*matmul)(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M,
                   int N, int K, int accumulate);
    /* y = x W^T with W (N, K) in BF16 and M <= 32 rows: 1 when done (each
     * output bit for bit as matmul with W widened to F32), 0 when this
     * instruction set has no such kernel */
    int (*matmul_bf16w)(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N, int K,
                        int accumulate);
    int (*attention)(const nr_attn_args_t *a);
    int (*patch_embed)(const nr_patch_args_t *a);
} nr_cpu_kernels_t;

/* Chooses the path once (later calls return the first answer): 0, or
 * NR_EINVAL with the reason in err when NR_CPU_PATH names an unknown path
 * or one this CPU cannot run, or NR_EUNSUPPORTED when OpenBLAS chose
 * kernels with instructions this CPU lacks (its Opteron kernels on a VM's
 * qemu64 CPU). Logs the choice once. On error the kernels still run, on
 * the best path the CPU has. */
int nr_cpu_path_init(char *err, size_t errlen);
/* The path in use (after nr_cpu_path_init, which it calls when needed). */
nr_cpu_path_t nr_cpu_path(void);
/* 1 when this CPU (and OS) can run path p. */
int nr_cpu_path_supported(nr_cpu_path_t p);
/* The best path this CPU runs. */
nr_cpu_path_t nr_cpu_path_best(void);
/* Switches path (tests, benchmarks): 0, or NR_EUNSUPPORTED when the CPU
 * cannot run it. Only while no kernel runs. */
int nr_cpu_path_set(nr_cpu_path_t p);
/* "generic", "avx2", ... ; nr_cpu_path_from_name: -1 when unknown. */
const char *nr_cpu_path_name(nr_cpu_path_t p);
int nr_cpu_path_from_name(const char *name);
/* "vendor, model name (family f model m), paths: ..." for logs and benchmarks. */
void nr_cpu_describe(char *buf, size_t len);

/* The F32 kernel table of the path in use. */
const nr_cpu_kernels_t *nr_cpu_kernels(void);

/* One table per compiled target (kernels_isa.c). */
extern const nr_cpu_kernels_t nr_cpu_kernels_generic;
#if defined(__x86_64__)
extern const nr_cpu_kernels_t nr_cpu_kernels_avx2;
extern const nr_cpu_kernels_t nr_cpu_kernels_avx512;
#endif

#endif
