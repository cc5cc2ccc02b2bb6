/* The CPU kernel path (see dispatch.h): what the CPU and the OS support,
 * read once with cpuid and xgetbv (not __builtin_cpu_supports, which does
 * not know every feature here in every compiler we build with), the AMX
 * tile-state permission, the NR_CPU_PATH override, and the F32 kernel
 * table of the chosen path. */
#include "models/cpu/dispatch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define S_X86 1
#else
#include <sys/utsname.h>
#define S_X86 0
#endif

static const char *const s_names[NR_CPU_PATH_COUNT] = {"generic", "avx2", "avx512", "avx512bf16", "amx"};

static int s_supported[NR_CPU_PATH_COUNT];
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static _Atomic int s_path = NR_CPU_PATH_GENERIC;
static _Atomic(const nr_cpu_kernels_t *) s_table = NULL;
static int s_init_rc;
static char s_init_err[256];

#if S_X86
/* XCR0: the register state the OS saves (and so allows). */
static unsigned long long s_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

#define S_ARCH_REQ_XCOMP_PERM 0x1023
#define S_XFEATURE_XTILEDATA 18

static void s_detect(void) {
    unsigned a, b, c, d;
    s_supported[NR_CPU_PATH_GENERIC] = 1;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = s_xcr0();
    if ((xcr0 & 0x6) != 0x6) return; /* XMM and YMM state */
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (!__get_cpuid_count(7, 0, &a, &b7, &c7, &d7)) return;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) a71 = a;
    const int avx2 = (b7 >> 5) & 1, f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, cd = (b7 >> 28) & 1,
              bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    const int bf16 = (a71 >> 5) & 1, amx_bf16 = (d7 >> 22) & 1, amx_tile = (d7 >> 24) & 1;
    s_supported[NR_CPU_PATH_AVX2] = avx2 && fma;
    /* opmask, upper halves of ZMM0-15, ZMM16-31 */
    s_supported[NR_CPU_PATH_AVX512] = s_supported[NR_CPU_PATH_AVX2] && f512 && dq && cd && bw && vl &&
                                      (xcr0 & 0xe0) == 0xe0;
    s_supported[NR_CPU_PATH_AVX512BF16] = s_supported[NR_CPU_PATH_AVX512] && bf16;
    /* TILECFG and TILEDATA in XCR0, then the per-process permission to use
     * the (8 KiB) tile data state, which Linux grants on request (5.16+) */
    if (s_supported[NR_CPU_PATH_AVX512BF16] && amx_tile && amx_bf16 && (xcr0 & 0x60000) == 0x60000)
        s_supported[NR_CPU_PATH_AMX] = syscall(SYS_arch_prctl, S_ARCH_REQ_XCOMP_PERM, S_XFEATURE_XTILEDATA) == 0;
}

char *openblas_get_corename(void);

/* OpenBLAS (0.3.21) runs its Opteron kernels on every AMD family-15 CPU,
 * and they use 3DNow! (femms). QEMU's qemu64 and kvm64 CPU models, a VM's
 * default, report such a CPU without 3DNow! (no AMD CPU since 2011 has
 * it; nor has any Intel one): the first large matmul would die of SIGILL
 * (OpenBLAS issues 2794 and 5831). OPENBLAS_CORETYPE, read when the
 * library loads, is the way out; `best` picks the kernels to name. */
static int s_blas_core_unsafe(char *why, size_t len, int best) {
    const char *core = openblas_get_corename();
    unsigned a, b, c, d;
    if (!core || strncasecmp(core, "opteron", 7) != 0) return 0;
    if (__get_cpuid(0x80000001, &a, &b, &c, &d) && ((d >> 31) & 1)) return 0; /* 3DNow! */
    snprintf(why, len,
             "OpenBLAS chose its %s kernels, which use 3DNow! instructions this CPU lacks (a VM's qemu64 or kvm64 CPU "
             "model?): start the program with OPENBLAS_CORETYPE=%s in its environment, or give the VM the host's CPU "
             "model",
             core, best >= NR_CPU_PATH_AVX2 ? "Haswell" : "Prescott");
    return 1;
}
#else
static void s_detect(void) { s_supported[NR_CPU_PATH_GENERIC] = 1; }
static int s_blas_core_unsafe(char *why, size_t len, int best) { return 0; }
#endif

static const nr_cpu_kernels_t *s_table_for(nr_cpu_path_t p) {
#if S_X86
    if (p >= NR_CPU_PATH_AVX512) return &nr_cpu_kernels_avx512;
    if (p == NR_CPU_PATH_AVX2) return &nr_cpu_kernels_avx2;
#endif
    return &nr_cpu_kernels_generic;
}

static void s_use(nr_cpu_path_t p) {
    atomic_store(&s_table, s_table_for(p));
    atomic_store(&s_path, (int)p);
}

nr_cpu_path_t nr_cpu_path_best(void) {
    nr_cpu_path_init(NULL, 0);
    int p = NR_CPU_PATH_COUNT - 1;
    while (p > 0 && !s_supported[p]) p--;
    return (nr_cpu_path_t)p;
}

static void s_init(void) {
    s_detect();
    int best = NR_CPU_PATH_COUNT - 1;
    while (best > 0 && !s_supported[best]) best--;
    int p = best;
    const char *env = getenv("NR_CPU_PATH");
    if (env && *env && strcmp(env, "auto") != 0) {
        const int want = nr_cpu_path_from_name(env);
        if (want < 0) {
            snprintf(s_init_err, sizeof s_init_err,
                     "NR_CPU_PATH=%.32s: unknown CPU kernel path (generic, avx2, avx512, avx512bf16, amx or auto)", env);
            s_init_rc = NR_EINVAL;
        } else if (!s_supported[want]) {
            snprintf(s_init_err, sizeof s_init_err,
                     "NR_CPU_PATH=%s: this CPU (or its OS) cannot run the %s kernels; the best it runs is %s", env,
                     s_names[want], s_names[best]);
            s_init_rc = NR_EINVAL;
        } else {
            p = want;
        }
    }
    if (!s_init_rc && s_blas_core_unsafe(s_init_err, sizeof s_init_err, best)) s_init_rc = NR_EUNSUPPORTED;
    s_use((nr_cpu_path_t)p);
    char desc[256];
    nr_cpu_describe(desc, sizeof desc);
    if (s_init_rc)
        nr_log(NR_LOG_ERROR, "models: %s", s_init_err);
    else
        nr_log(NR_LOG_INFO, "models: cpu kernels: %s path (%s; %s)", s_names[p], p == best ? "best for this CPU" : "NR_CPU_PATH",
               desc);
}

int nr_cpu_path_init(char *err, size_t errlen) {
    pthread_once(&s_once, s_init);
    if (s_init_rc && err && errlen) snprintf(err, errlen, "%s", s_init_err);
    return s_init_rc;
}

nr_cpu_path_t nr_cpu_path(void) {
    nr_cpu_path_init(NULL, 0);
    return (nr_cpu_path_t)atomic_load_explicit(&s_path, memory_order_relaxed);
}

int nr_cpu_path_supported(nr_cpu_path_t p) {
    nr_cpu_path_init(NULL, 0);
    return p >= 0 && p < NR_CPU_PATH_COUNT && s_supported[p];
}

int nr_cpu_path_set(nr_cpu_path_t p) {
    if (!nr_cpu_path_supported(p)) return NR_EUNSUPPORTED;
    s_use(p);
    return 0;
}

const char *nr_cpu_path_name(nr_cpu_path_t p) { return p >= 0 && p < NR_CPU_PATH_COUNT ? s_names[p] : "?"; }

int nr_cpu_path_from_name(const char *name) {
    for (int i = 0; name && i < NR_CPU_PATH_COUNT; i++)
        if (strcmp(name, s_names[i]) == 0) return i;
    return -1;
}

const nr_cpu_kernels_t *nr_cpu_kernels(void) {
    const nr_cpu_kernels_t *t = atomic_load_explicit(&s_table, memory_order_acquire);
    if (t) return t;
    nr_cpu_path_init(NULL, 0);
    return atomic_load_explicit(&s_table, memory_order_acquire);
}

void nr_cpu_describe(char *buf, size_t len) {
#if S_X86
    char vendor[13] = "", model[49] = "";
    int family = 0, modelno = 0;
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        memcpy(vendor, &b, 4);
        memcpy(vendor + 4, &d, 4);
        memcpy(vendor + 8, &c, 4);
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        family = (int)((a >> 8) & 0xf);
        modelno = (int)((a >> 4) & 0xf);
        if (family == 6 || family == 15) modelno |= (int)((a >> 12) & 0xf0);
        if (family == 15) family += (int)((a >> 20) & 0xff);
    }
    unsigned r[12];
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(model, r, 48);
    }
    const char *m = model;
    while (*m == ' ') m++;
    int n = snprintf(buf, len, "%s %s (family %d model %d), paths:", vendor, m, family, modelno);
#else
    /* no cpuid here: the architecture's name, and the generic path */
    struct utsname u;
    int n = snprintf(buf, len, "%s, paths:", uname(&u) == 0 ? u.machine : "not x86-64");
#endif
    for (int i = 0; i < NR_CPU_PATH_COUNT && n > 0 && (size_t)n < len; i++)
        if (s_supported[i]) n += snprintf(buf + n, len - (size_t)n, " %s", s_names[i]);
}
