/* safetensors reader: mmaps the file, parses and fully validates the JSON
 * header (cJSON), and hands out tensors by their Hugging Face names. */
#ifndef NR_MODELS_SAFETENSORS_H
#define NR_MODELS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

typedef struct nr_safetensors nr_safetensors_t;

/* Largest header accepted (bytes of JSON). */
#define NR_SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)


/* Opens and validates `path`: 8-byte little-endian header length within
 * the file and NR_SAFETENSORS_MAX_HEADER, well-formed JSON object, each
 * entry with a known safetensors dtype (weights must be F32, F16 or BF16;
 * BOOL/U8/I64... buffers are validated and skipped), at most 4 dims,
 * shape x dtype size == end - begin, ranges inside the data section and not
 * overlapping, no truncation. __metadata__ is allowed and skipped.
 * Returns 0 and *out, or NR_EMODEL (with the file and tensor named in err),
 * NR_EIO (cannot open/map), NR_ENOMEM. Never crashes on a bad file. */
int nr_safetensors_open(const char *path, nr_safetensors_t **out, char *err, size_t errlen);
/* The same over bytes in memory (not copied: they must outlive the
 * reader; `name` is used in messages). */
int nr_safetensors_open_memory(const void *data, size_t size, const char *name, nr_safetensors_t **out, char *err,
                               size_t errlen);
/* Unmaps and frees; sets *st to NULL; safe twice. */
void nr_safetensors_close(nr_safetensors_t **st);

/* Gives back this process's pages of [data, data + n) in a mapped file
 * (the whole pages inside; read from the file again if touched): for
 * tensors copied elsewhere at load. Nothing for a reader over memory. */
void nr_safetensors_drop_pages(const nr_safetensors_t *st, const void *data, size_t n);

const char *nr_safetensors_path(const nr_safetensors_t *st);
size_t nr_safetensors_count(const nr_safetensors_t *st);
/* Entry i (0 <= i < count), in the file's data order. */
const nr_named_tensor_t *nr_safetensors_at(const nr_safetensors_t *st, size_t i);
/* Entry by name; NULL when absent. */
const nr_named_tensor_t *nr_safetensors_find(const nr_safetensors_t *st, const char *name);

/* Looks `name` up, checks its shape equals shape[0..ndim) (ndim < 0: any
 * shape) and converts it to a new 64-byte aligned F32 buffer (*out, caller
 * frees with free()). Returns 0, NR_EMODEL (missing tensor or shape
 * mismatch: file, tensor, expected and found shapes in err), NR_ENOMEM. */
int nr_safetensors_load_f32(const nr_safetensors_t *st, const char *name, int ndim, const int64_t *shape,
                            float **out, char *err, size_t errlen);

/* Writes a safetensors file (for tests and tools): n tensors with their
 * dtype/shape/data (data already in that dtype). Returns 0 or NR_EIO. */
int nr_safetensors_write(const char *path, const nr_named_tensor_t *tensors, size_t n, char *err, size_t errlen);

#endif
