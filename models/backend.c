/* Backend selection by device name. */
#include "models/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/cpu/cpu.h"

nr_backend_t *nr_backend_new(const char *device, int num_threads, char *err, size_t errlen) {
    if (!device || !*device || strcmp(device, "cpu") == 0) {
        nr_backend_t *b = nr_cpu_backend_new(num_threads);
        if (!b) nr_seterr(err, errlen, NR_ENOMEM, "cpu backend: out of memory");
        return b;
    }
    if (strncmp(device, "cuda", 4) == 0) {
        nr_seterr(err, errlen, NR_EUNSUPPORTED, "device %s: this build has no CUDA backend yet", device);
        return NULL;
    }
    nr_seterr(err, errlen, NR_EINVAL, "unknown device \"%s\" (cpu or cuda:N)", device);
    return NULL;
}

void nr_backend_destroy(nr_backend_t **b) {
    if (!b || !*b) return;
    if ((*b)->ops && (*b)->ops->destroy) (*b)->ops->destroy((*b)->ctx);
    free(*b);
    *b = NULL;
}

void *nr_backend_upload_new(nr_backend_t *b, const void *host, size_t bytes) {
    void *p = b->ops->alloc(b->ctx, bytes);
    if (!p) return NULL;
    if (b->ops->upload(b->ctx, p, host, bytes) != 0) {
        b->ops->free(b->ctx, p);
        return NULL;
    }
    return p;
}
