/* Reader for PyTorch checkpoints in the zip format of torch.save (PyTorch
 * 1.6 and later: pytorch_model.bin, *.pth). Never runs code: the zip
 * container is read with minizip (ZIP64 included) and data.pkl with the
 * restricted unpickler in models/io/pickle.h, which knows only what a
 * state dict needs. Storages are stored uncompressed in the archive, so the
 * file is mmapped and tensors point into it. */
#ifndef NR_MODELS_IO_TORCHZIP_H
#define NR_MODELS_IO_TORCHZIP_H

#include <stddef.h>

#include "models/tensor.h"

typedef struct nr_torchzip nr_torchzip_t;

/* Opens and validates `path`: a zip whose entries sit under one top folder
 * (`<prefix>/data.pkl`, `<prefix>/data/<key>`, `<prefix>/byteorder`), a
 * state dict (or a dict of state dicts, flattened to dotted names) of
 * tensors rebuilt from typed or untyped storages. Tensors sharing a storage
 * (tied weights) and views at a storage offset point into the same bytes;
 * every view is checked to lie inside its storage (overflow-safe). A view
 * with non-row-major strides (a saved transpose) is copied into memory the
 * reader owns, and only if it has no more elements than its storage.
 * A file holding one tensor (torch.save(tensor), e.g. a Kokoro voice pack)
 * gives one entry named "" (the empty string).
 * Values that are not tensors or dicts (ints, strings, _metadata) are
 * skipped; int keys (optimizer state) become decimal name parts. Anything
 * else (another global, opcode, persistent id or shape, a compressed
 * storage, big-endian data, the legacy pre-1.6 format) is refused.
 * Returns 0 and *out, or NR_EMODEL with the file and what was refused named
 * in err, NR_EIO (cannot open or map), NR_ENOMEM. Never crashes on a bad
 * file. */
int nr_torchzip_open(const char *path, nr_torchzip_t **out, char *err, size_t errlen);
/* The same over bytes in memory (not copied: they must outlive the
 * reader; `name` is used in messages). */
int nr_torchzip_open_memory(const void *data, size_t size, const char *name, nr_torchzip_t **out, char *err,
                            size_t errlen);
/* Unmaps and frees; sets *tz to NULL; safe twice. */
void nr_torchzip_close(nr_torchzip_t **tz);

const char *nr_torchzip_path(const nr_torchzip_t *tz);
size_t nr_torchzip_count(const nr_torchzip_t *tz);
/* Entry i (0 <= i < count), in the state dict's order. */
const nr_named_tensor_t *nr_torchzip_at(const nr_torchzip_t *tz, size_t i);
/* Entry by name; NULL when absent. */
const nr_named_tensor_t *nr_torchzip_find(const nr_torchzip_t *tz, const char *name);

#endif
