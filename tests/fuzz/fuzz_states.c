/* libFuzzer target for the encoder-states frame parser (models/states.c,
 * "NRS1"): any bytes as a vision stage's output arriving at a text worker.
 * Decoding must fail with NR_EPROTO/NR_ENOMEM or give a tensor whose shape
 * accounts for exactly the frame's bytes; re-encoding it as F32 must give a
 * frame of the size nr_states_frame_size says. */
#include "common/error.h"
#include "models/states.h"
#include "models/tensor.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_tensor_t *t = NULL;
    char err[512];
    int rc = nr_states_decode(data, size, &t, err, sizeof err);
    if (rc != 0) {
        if (t) abort();
        if (rc != NR_EPROTO && rc != NR_ENOMEM) abort();
        return 0;
    }
    if (!t) abort();
    unsigned char *frame = NULL;
    size_t len = 0;
    if (nr_states_encode((const float *)t->data, t->ndim, t->shape, NR_DTYPE_F32, &frame, &len) != 0) abort();
    if (len != nr_states_frame_size(NR_DTYPE_F32, t->ndim, t->shape)) abort();
    free(frame);
    nr_tensor_destroy(&t);
    return 0;
}
