/* cpu_path_probe PATH: exit 0 when this CPU runs the CPU kernel path PATH
 * (models/cpu/dispatch.h), 77 when it does not (ctest's skip code for the
 * per-path test runs, tests/precision.cmake), 2 for an unknown name. */
#include <stdio.h>

#include "models/cpu/dispatch.h"

int main(int argc, char **argv) {
    const int p = argc == 2 ? nr_cpu_path_from_name(argv[1]) : -1;
    if (p < 0) {
        fprintf(stderr, "usage: cpu_path_probe generic|avx2|avx512|avx512bf16|amx\n");
        return 2;
    }
    if (nr_cpu_path_supported((nr_cpu_path_t)p)) return 0;
    fprintf(stderr, "this CPU cannot run the %s kernels: skipped\n", argv[1]);
    return 77;
}
