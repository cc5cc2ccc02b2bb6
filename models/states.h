/* The encoder-states frame: the vision stage's output and the text stage's
 * input. Binary, little-endian:
 *   bytes 0..3   magic "NRS1"
 *   uint32       dtype (nr_dtype_t: 0 = F32, 1 = F16, 2 = BF16)
 *   uint32       ndim (1..4)
 *   uint64       shape[ndim]
 *   data         numel * dtype size bytes, row-major; nothing after it.
 * The vision stage writes F32 [seq, hidden] per image (e.g. [197, 768]). */
#ifndef NR_MODELS_STATES_H
#define NR_MODELS_STATES_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

#define NR_STATES_MAGIC "NRS1"
#define NR_STATES_MAX_BYTES ((size_t)256 << 20)

/* Size in bytes of a frame for this dtype and shape; 0 when invalid. */
size_t nr_states_frame_size(nr_dtype_t dtype, int ndim, const int64_t *shape);

/* Encodes F32 data of the given shape into a new frame (*frame, caller
 * frees with free(); *len its size), stored as `dtype` (F32, F16 or BF16).
 * Returns 0, NR_EINVAL (bad shape/dtype), NR_ENOMEM. */
int nr_states_encode(const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype, unsigned char **frame,
                     size_t *len);

/* Decodes and validates a frame (magic, dtype, ndim, shape, exact length,
 * finite size) into a new F32 host tensor. Returns 0, NR_EPROTO with the
 * reason in err, NR_ENOMEM. */
int nr_states_decode(const void *frame, size_t len, nr_tensor_t **out, char *err, size_t errlen);

#endif
