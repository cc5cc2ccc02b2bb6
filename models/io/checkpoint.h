/* A model's weights as one set of named tensors, whichever files the Hub
 * published them in: model.safetensors, a sharded safetensors index
 * (model.safetensors.index.json), pytorch_model.bin (torch zip) or a
 * sharded .bin index (pytorch_model.bin.index.json). */
#ifndef NR_MODELS_IO_CHECKPOINT_H
#define NR_MODELS_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

typedef struct nr_checkpoint nr_checkpoint_t;

/* Opens the weights in folder `dir`, in this order of preference:
 * model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json; logs which one is used. An index must name
 * only files beside it (no path separators), and every tensor it lists must
 * be in its shard; a name found in two files is refused.
 * Returns 0 and *out, NR_EMODEL (no weights file, or a bad one: the file
 * named in err), NR_EIO, NR_ENOMEM. */
int nr_checkpoint_open_dir(const char *dir, nr_checkpoint_t **out, char *err, size_t errlen);
/* One weights file: a .safetensors file, a torch zip (.bin, .pth) or an
 * index .json, told apart by content. Same returns. */
int nr_checkpoint_open_file(const char *path, nr_checkpoint_t **out, char *err, size_t errlen);
/* One weights file's bytes in memory (safetensors or torch zip; not
 * copied: they must outlive the checkpoint; `name` is used in messages).
 * Same returns. */
int nr_checkpoint_open_memory(const void *data, size_t size, const char *name, nr_checkpoint_t **out, char *err,
                              size_t errlen);
/* Closes every file; sets *ck to NULL; safe twice. */
void nr_checkpoint_close(nr_checkpoint_t **ck);

/* The file (or index) the weights come from, for messages. */
const char *nr_checkpoint_path(const nr_checkpoint_t *ck);
size_t nr_checkpoint_count(const nr_checkpoint_t *ck);
/* Entry i (0 <= i < count). */
const nr_named_tensor_t *nr_checkpoint_at(const nr_checkpoint_t *ck, size_t i);
/* Entry by name; NULL when absent. */
const nr_named_tensor_t *nr_checkpoint_find(const nr_checkpoint_t *ck, const char *name);
/* The file holding entry `t` (a shard's path), for messages. */
const char *nr_checkpoint_file_of(const nr_checkpoint_t *ck, const nr_named_tensor_t *t);

/* Gives back the process's pages of tensor t where its file is mapped
 * (safetensors; nr_safetensors_drop_pages), once it is copied elsewhere. */
void nr_checkpoint_drop_pages(const nr_checkpoint_t *ck, const nr_named_tensor_t *t);

/* Looks `name` up, checks its shape equals shape[0..ndim) (ndim < 0: any
 * shape) and converts it (F32, F16, BF16) to a new 64-byte aligned F32
 * buffer (*out, caller frees with free()). Returns 0, NR_EMODEL (missing
 * tensor, wrong dtype or shape mismatch: file, tensor, expected and found
 * shapes in err), NR_ENOMEM. */
int nr_checkpoint_load_f32(const nr_checkpoint_t *ck, const char *name, int ndim, const int64_t *shape, float **out,
                           char *err, size_t errlen);

#endif
