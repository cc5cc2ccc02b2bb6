/* libFuzzer target for the torch zip checkpoint reader (models/io/torchzip.c
 * with models/io/pickle.c): any bytes as a .bin file in memory. Opening must
 * fail cleanly with NR_EMODEL (or NR_ENOMEM) or give findable tensors whose
 * bytes can all be read (ASan catches a view outside the input). */
#include "common/error.h"
#include "models/io/torchzip.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_torchzip_t *tz = NULL;
    char err[512];
    int rc = nr_torchzip_open_memory(data, size, "fuzz", &tz, err, sizeof err);
    if (rc != 0) {
        if (tz || (rc != NR_EMODEL && rc != NR_ENOMEM)) abort();
        return 0;
    }
    size_t n = nr_torchzip_count(tz);
    for (size_t i = 0; i < n; i++) {
        const nr_named_tensor_t *t = nr_torchzip_at(tz, i);
        if (!t || !t->name || nr_dtype_size(t->dtype) == 0) abort();
        if (nr_torchzip_find(tz, t->name) == NULL) abort();
        volatile uint8_t sink = 0;
        for (size_t j = 0; j < t->nbytes; j++) sink ^= ((const uint8_t *)t->data)[j];
        (void)sink;
    }
    nr_torchzip_close(&tz);
    nr_torchzip_close(&tz);
    return 0;
}
