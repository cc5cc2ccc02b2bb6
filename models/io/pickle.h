/* Restricted unpickler for the data.pkl of a torch.save checkpoint. It never
 * runs code: it knows the opcodes torch emits for a state dict (protocols 2
 * to 4) and a short list of globals (OrderedDict, the tensor rebuild
 * functions, the storage classes and dtypes), evaluates those itself and
 * builds a small value tree whose leaves are tensors (storage key, dtype,
 * offset, shape, stride). Anything else is refused with a message naming the
 * file, the byte and what was refused. Memo, stack, MARK nesting, values and
 * nesting depth are bounded. */
#ifndef NR_MODELS_IO_PICKLE_H
#define NR_MODELS_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

/* Bounds on what one data.pkl may build; a state dict of 10,000 tensors
 * needs about 200,000 values. */
#define NR_PICKLE_MAX_VALUES (1u << 21)  /* values created */
#define NR_PICKLE_MAX_ITEMS (1u << 23)   /* container insertions */
#define NR_PICKLE_MAX_STACK (1u << 20)   /* stack entries */
#define NR_PICKLE_MAX_MEMO (1u << 21)    /* highest memo index + 1 */
#define NR_PICKLE_MAX_MARKS 64           /* open MARKs at once */
#define NR_PICKLE_MAX_DEPTH 32           /* containers nested in the result */

typedef enum {
    NR_PICKLE_NONE = 0,
    NR_PICKLE_BOOL,
    NR_PICKLE_INT,
    NR_PICKLE_FLOAT,
    NR_PICKLE_STR,
    NR_PICKLE_TUPLE,
    NR_PICKLE_LIST,
    NR_PICKLE_DICT,    /* dict or OrderedDict: items are key, value pairs */
    NR_PICKLE_GLOBAL,  /* an allowed global not (yet) called */
    NR_PICKLE_STORAGE, /* a persistent id ('storage', class, key, location, numel) */
    NR_PICKLE_TENSOR   /* the result of _rebuild_tensor_v2 and friends */
} nr_pickle_kind_t;

typedef struct nr_pickle_value nr_pickle_value_t;
struct nr_pickle_value {
    nr_pickle_kind_t kind;
    int64_t i;                /* BOOL, INT; STORAGE: numel (elements) */
    double f;                 /* FLOAT */
    const char *s;            /* STR, STORAGE key: in the pickle bytes, not NUL-terminated */
    size_t len;
    nr_pickle_value_t **items; /* TUPLE, LIST: n items; DICT: n = 2 x pairs */
    size_t n, cap;
    int global;               /* GLOBAL: index into the allowed list */
    nr_dtype_t dtype;         /* STORAGE, TENSOR */
    /* TENSOR: its storage (a STORAGE value), offset in elements, shape and
     * strides in elements (ndim <= NR_TENSOR_MAX_DIMS; all >= 0). */
    const nr_pickle_value_t *storage;
    int64_t offset;
    int ndim;
    int64_t shape[NR_TENSOR_MAX_DIMS];
    int64_t stride[NR_TENSOR_MAX_DIMS];
    unsigned visit;           /* internal */
};

typedef struct nr_pickle nr_pickle_t;

/* Unpickles size bytes at data (not copied: strings point into them, so
 * they must outlive the result). `name` (the file) starts every message.
 * Returns 0 and *out, NR_EMODEL (refused or malformed: the byte offset and
 * the refused opcode, global or shape named in err) or NR_ENOMEM. After a
 * successful load no GLOBAL value is reachable from the root: a callable
 * kept as a value is refused too. */
int nr_pickle_load(const void *data, size_t size, const char *name, nr_pickle_t **out, char *err, size_t errlen);
/* The value STOP returned. */
const nr_pickle_value_t *nr_pickle_root(const nr_pickle_t *pk);
/* Frees every value; sets *pk to NULL; safe twice. */
void nr_pickle_destroy(nr_pickle_t **pk);

#endif
