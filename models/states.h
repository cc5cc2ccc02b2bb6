/* The encoder-states frame: the vision stage's output and the text stage's
 * input. Binary, little-endian. Version 2 names the family that made it:
 *   bytes 0..3   magic "NRS2"
 *   uint32       family name length (1..NR_STATES_FAMILY_MAX)
 *   bytes        family name ([a-z0-9._-], no NUL: "vit-gpt2", "git")
 *   uint32       dtype (nr_dtype_t: 0 = F32, 1 = F16, 2 = BF16)
 *   uint32       ndim (1..4)
 *   uint64       shape[ndim]
 *   data         numel * dtype size bytes, row-major; nothing after it.
 * Version 1 ("NRS1") is the same without the family fields; it is still
 * decoded, as family "vit-gpt2" (the only family that wrote it).
 * The vision stage writes F32 [seq, hidden] per image (e.g. [197, 768]). */
#ifndef NR_MODELS_STATES_H
#define NR_MODELS_STATES_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

#define NR_STATES_MAGIC "NRS1"   /* version 1: no family */
#define NR_STATES_MAGIC2 "NRS2"  /* version 2: family named */
#define NR_STATES_FAMILY_MAX 32
#define NR_STATES_V1_FAMILY "vit-gpt2"
#define NR_STATES_MAX_BYTES ((size_t)256 << 20)

/* Size in bytes of a version 1 frame for this dtype and shape (a version 2
 * frame adds 4 + strlen(family)); 0 when invalid. */
size_t nr_states_frame_size(nr_dtype_t dtype, int ndim, const int64_t *shape);

/* Encodes F32 data of the given shape into a new version 2 frame naming
 * `family` (*frame, caller frees with free(); *len its size), stored as
 * `dtype` (F32, F16 or BF16). Returns 0, NR_EINVAL (bad shape/dtype/family
 * name), NR_ENOMEM. */
int nr_states_encode_family(const char *family, const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype,
                            unsigned char **frame, size_t *len);

/* The same as a version 1 frame (no family): what older vision workers
 * sent; kept for tests and tools. */
int nr_states_encode(const float *data, int ndim, const int64_t *shape, nr_dtype_t dtype, unsigned char **frame,
                     size_t *len);

/* Decodes and validates a frame of either version (magic, family name,
 * dtype, ndim, shape, exact length, finite size) into a new F32 host
 * tensor; the family name (NR_STATES_V1_FAMILY for version 1) goes to
 * family[family_cap] when family is not NULL. Returns 0, NR_EPROTO with the
 * reason in err, NR_ENOMEM. */
int nr_states_decode_family(const void *frame, size_t len, nr_tensor_t **out, char *family, size_t family_cap,
                            char *err, size_t errlen);
/* nr_states_decode_family without the family. */
int nr_states_decode(const void *frame, size_t len, nr_tensor_t **out, char *err, size_t errlen);

#endif
