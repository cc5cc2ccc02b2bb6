/* Tensors: a dtype, up to 4 dimensions and a pointer to the data. Model
 * weights and activations are F32; F16/BF16/I64 appear only in files. */
#ifndef NR_MODELS_TENSOR_H
#define NR_MODELS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define NR_TENSOR_MAX_DIMS 4

/* The safetensors dtypes. Model weights use F32/F16/BF16 (I64 for token
 * ids); the others occur in checkpoints as buffers (GPT-2's attn.bias is
 * BOOL or U8) and are validated but never used as weights. */
typedef enum {
    NR_DTYPE_F32 = 0,
    NR_DTYPE_F16 = 1,
    NR_DTYPE_BF16 = 2,
    NR_DTYPE_I64 = 3,
    NR_DTYPE_F64,
    NR_DTYPE_I32,
    NR_DTYPE_I16,
    NR_DTYPE_I8,
    NR_DTYPE_U64,
    NR_DTYPE_U32,
    NR_DTYPE_U16,
    NR_DTYPE_U8,
    NR_DTYPE_BOOL,
    NR_DTYPE_COUNT
} nr_dtype_t;

typedef struct {
    nr_dtype_t dtype;
    int ndim;
    int64_t shape[NR_TENSOR_MAX_DIMS];
    void *data;  /* host or backend memory, per the owner of the tensor */
    int owned;   /* 1 when nr_tensor_destroy frees data with free() */
} nr_tensor_t;

/* A named tensor inside a checkpoint file (safetensors or torch zip): data
 * points into the file's mapping or the reader's memory, read-only, maybe
 * unaligned; it lives as long as the reader. nbytes = numel * dtype size. */
typedef struct {
    const char *name;
    nr_dtype_t dtype;
    int ndim;
    int64_t shape[NR_TENSOR_MAX_DIMS];
    const void *data;
    size_t nbytes;
} nr_named_tensor_t;

/* Bytes per element; 0 for an unknown dtype. */
size_t nr_dtype_size(nr_dtype_t dtype);
/* The safetensors name ("F32", "BF16", "BOOL" ...); "?" for an unknown dtype. */
const char *nr_dtype_name(nr_dtype_t dtype);
/* Dtype from its safetensors name; -1 when unknown. */
int nr_dtype_from_name(const char *name);

/* Product of the shape (1 for ndim 0). */
int64_t nr_tensor_numel(const nr_tensor_t *t);

/* A new host tensor with zeroed, 64-byte aligned data of the given shape;
 * NULL on bad shape or no memory. */
nr_tensor_t *nr_tensor_new(nr_dtype_t dtype, int ndim, const int64_t *shape);
/* Frees the tensor (and its data when owned); sets *t to NULL; safe twice. */
void nr_tensor_destroy(nr_tensor_t **t);

/* Element conversions (round-to-nearest-even, as PyTorch). */
float nr_f16_to_f32(uint16_t h);
float nr_bf16_to_f32(uint16_t h);
uint16_t nr_f32_to_f16(float f);
uint16_t nr_f32_to_bf16(float f);

/* Converts n little-endian elements of `dtype` at src to F32 at dst (dst
 * src may be unaligned). Integer and BOOL dtypes convert by value. */
void nr_convert_to_f32(float *dst, const void *src, nr_dtype_t dtype, size_t n);

/* Checks t's shape equals shape[0..ndim) (ndim < 0: any shape) and
 * converts it (F32, F16, BF16) to a new 64-byte aligned F32 buffer (*out,
 * caller frees with free()). `file` names the tensor's file in messages.
 * Returns 0, NR_EMODEL (not a weight dtype, or shape mismatch: file,
 * tensor, expected and found shapes in err), NR_ENOMEM. */
int nr_named_tensor_to_f32(const nr_named_tensor_t *t, const char *file, int ndim, const int64_t *shape, float **out,
                           char *err, size_t errlen);

/* 64-byte aligned host allocation (free with free()); NULL on failure or n 0. */
void *nr_aligned_alloc(size_t bytes);

#endif
