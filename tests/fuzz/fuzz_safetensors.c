/* libFuzzer target for the safetensors reader (models/io/safetensors.c): any
 * bytes as a file in memory. Opening must fail cleanly or give tensors whose
 * ranges lie inside the input; each weight must then convert to F32. */
#include "common/error.h"
#include "models/io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_safetensors_t *st = NULL;
    char err[512];
    if (nr_safetensors_open_memory(data, size, "fuzz", &st, err, sizeof err) != 0) {
        if (st) abort(); /* failed but returned a reader */
        return 0;
    }
    size_t n = nr_safetensors_count(st);
    for (size_t i = 0; i < n; i++) {
        const nr_named_tensor_t *t = nr_safetensors_at(st, i);
        if (!t || !t->name) abort();
        if (nr_safetensors_find(st, t->name) == NULL) abort();
        float *f = NULL;
        int rc = nr_safetensors_load_f32(st, t->name, -1, NULL, &f, err, sizeof err);
        if (rc == 0) free(f);
        else if (f) abort();
    }
    nr_safetensors_close(&st);
    nr_safetensors_close(&st);
    return 0;
}
