/* Restricted unpickler (see pickle.h). The opcodes are those torch.save
 * emits for a state dict with pickle protocol 2 (its default) or 4; the
 * allowed globals are evaluated here, never looked up or called. */
#include "models/io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

enum { G_ODICT, G_REBUILD, G_PARAM, G_PARAM_STATE, G_FROM_TYPE, G_TYPE, G_STORAGE, G_DTYPE };

static const struct {
    const char *module, *name;
    int kind;
    nr_dtype_t dtype;
} s_globals[] = {
    {"collections", "OrderedDict", G_ODICT, NR_DTYPE_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD, NR_DTYPE_F32},
    {"torch._utils", "_rebuild_parameter", G_PARAM, NR_DTYPE_F32},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, NR_DTYPE_F32},
    {"torch._tensor", "_rebuild_from_type_v2", G_FROM_TYPE, NR_DTYPE_F32},
    {"torch", "Tensor", G_TYPE, NR_DTYPE_F32},
    {"torch.nn.parameter", "Parameter", G_TYPE, NR_DTYPE_F32},
    {"torch", "FloatStorage", G_STORAGE, NR_DTYPE_F32},
    {"torch", "HalfStorage", G_STORAGE, NR_DTYPE_F16},
    {"torch", "BFloat16Storage", G_STORAGE, NR_DTYPE_BF16},
    {"torch", "DoubleStorage", G_STORAGE, NR_DTYPE_F64},
    {"torch", "LongStorage", G_STORAGE, NR_DTYPE_I64},
    {"torch", "IntStorage", G_STORAGE, NR_DTYPE_I32},
    {"torch", "ShortStorage", G_STORAGE, NR_DTYPE_I16},
    {"torch", "CharStorage", G_STORAGE, NR_DTYPE_I8},
    {"torch", "ByteStorage", G_STORAGE, NR_DTYPE_U8},
    {"torch", "BoolStorage", G_STORAGE, NR_DTYPE_BOOL},
    {"torch", "UntypedStorage", G_STORAGE, NR_DTYPE_U8}, /* numel in bytes */
    {"torch", "float32", G_DTYPE, NR_DTYPE_F32},
    {"torch", "float16", G_DTYPE, NR_DTYPE_F16},
    {"torch", "bfloat16", G_DTYPE, NR_DTYPE_BF16},
    {"torch", "float64", G_DTYPE, NR_DTYPE_F64},
    {"torch", "int64", G_DTYPE, NR_DTYPE_I64},
    {"torch", "int32", G_DTYPE, NR_DTYPE_I32},
    {"torch", "int16", G_DTYPE, NR_DTYPE_I16},
    {"torch", "int8", G_DTYPE, NR_DTYPE_I8},
    {"torch", "uint8", G_DTYPE, NR_DTYPE_U8},
    {"torch", "bool", G_DTYPE, NR_DTYPE_BOOL},
};
#define S_NGLOBALS (sizeof s_globals / sizeof s_globals[0])

struct nr_pickle {
    const unsigned char *p;
    size_t size, pos, op_at;
    const char *name;
    char *err;
    size_t errlen;
    nr_pickle_value_t **all; /* every value, for freeing */
    size_t nall, capall;
    nr_pickle_value_t **stack;
    size_t sp, scap;
    size_t marks[NR_PICKLE_MAX_MARKS];
    int nmarks;
    nr_pickle_value_t **memo;
    size_t nmemo, memo_count; /* slots allocated, slots filled */
    /* Values kept only for the final check (hooks, metadata, BUILD
     * states): a callable there is refused like one in the result. */
    nr_pickle_value_t **extras;
    size_t nextras, capextras;
    size_t items;
    unsigned epoch;
    nr_pickle_value_t *root;
};

static const char *s_kind_name(nr_pickle_kind_t k) {
    static const char *names[] = {"None", "bool", "int", "float", "str", "tuple",
                                  "list", "dict", "global", "storage", "tensor"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

__attribute__((format(printf, 2, 3))) static int s_fail(nr_pickle_t *pk, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nr_seterr(pk->err, pk->errlen, NR_EMODEL, "%s: data.pkl at byte %zu: %s", pk->name, pk->op_at, msg);
}

static int s_oom(nr_pickle_t *pk) {
    return nr_seterr(pk->err, pk->errlen, NR_ENOMEM, "%s: data.pkl: out of memory", pk->name);
}

/* Grows *arr (elements of size es) to hold at least need; 0 or NR_ENOMEM. */
static int s_grow(void **arr, size_t *cap, size_t need, size_t es) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need) n *= 2;
    void *q = realloc(*arr, n * es);
    if (!q) return NR_ENOMEM;
    *arr = q;
    *cap = n;
    return 0;
}

static nr_pickle_value_t *s_new(nr_pickle_t *pk, nr_pickle_kind_t kind, int *rc) {
    if (pk->nall >= NR_PICKLE_MAX_VALUES) {
        *rc = s_fail(pk, "more than %u values", NR_PICKLE_MAX_VALUES);
        return NULL;
    }
    nr_pickle_value_t *v = calloc(1, sizeof(*v));
    if (!v || s_grow((void **)&pk->all, &pk->capall, pk->nall + 1, sizeof(*pk->all))) {
        free(v);
        *rc = s_oom(pk);
        return NULL;
    }
    pk->all[pk->nall++] = v;
    v->kind = kind;
    return v;
}

static int s_add(nr_pickle_t *pk, nr_pickle_value_t *c, nr_pickle_value_t *v) {
    if (++pk->items > NR_PICKLE_MAX_ITEMS) return s_fail(pk, "more than %u container items", NR_PICKLE_MAX_ITEMS);
    if (s_grow((void **)&c->items, &c->cap, c->n + 1, sizeof(*c->items))) return s_oom(pk);
    c->items[c->n++] = v;
    return 0;
}

static int s_push(nr_pickle_t *pk, nr_pickle_value_t *v) {
    if (pk->sp >= NR_PICKLE_MAX_STACK) return s_fail(pk, "stack deeper than %u", NR_PICKLE_MAX_STACK);
    if (s_grow((void **)&pk->stack, &pk->scap, pk->sp + 1, sizeof(*pk->stack))) return s_oom(pk);
    pk->stack[pk->sp++] = v;
    return 0;
}

/* Lowest stack index the current MARK frame may pop to. */
static size_t s_floor(const nr_pickle_t *pk) { return pk->nmarks ? pk->marks[pk->nmarks - 1] : 0; }

static int s_pop(nr_pickle_t *pk, nr_pickle_value_t **v) {
    if (pk->sp <= s_floor(pk)) return s_fail(pk, "stack underflow");
    *v = pk->stack[--pk->sp];
    return 0;
}

static int s_keep(nr_pickle_t *pk, nr_pickle_value_t *v) {
    if (s_grow((void **)&pk->extras, &pk->capextras, pk->nextras + 1, sizeof(*pk->extras))) return s_oom(pk);
    pk->extras[pk->nextras++] = v;
    return 0;
}

static int s_need(nr_pickle_t *pk, size_t n) {
    if (n > pk->size - pk->pos) return s_fail(pk, "truncated (operand needs %zu bytes)", n);
    return 0;
}

static uint64_t s_le(const unsigned char *b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static int s_memo_put(nr_pickle_t *pk, uint64_t idx) {
    if (pk->sp <= s_floor(pk)) return s_fail(pk, "memo put with an empty stack");
    if (idx >= NR_PICKLE_MAX_MEMO) return s_fail(pk, "memo index %llu over the limit %u", (unsigned long long)idx,
                                                 NR_PICKLE_MAX_MEMO);
    if (idx >= pk->nmemo) {
        size_t n = pk->nmemo ? pk->nmemo : 64;
        while (n <= idx) n *= 2;
        nr_pickle_value_t **m = realloc(pk->memo, n * sizeof(*m));
        if (!m) return s_oom(pk);
        memset(m + pk->nmemo, 0, (n - pk->nmemo) * sizeof(*m));
        pk->memo = m;
        pk->nmemo = n;
    }
    if (!pk->memo[idx]) pk->memo_count++;
    pk->memo[idx] = pk->stack[pk->sp - 1];
    return 0;
}

static int s_memo_get(nr_pickle_t *pk, uint64_t idx) {
    if (idx >= pk->nmemo || !pk->memo[idx]) return s_fail(pk, "memo get of unset index %llu", (unsigned long long)idx);
    return s_push(pk, pk->memo[idx]);
}

static int s_global(nr_pickle_t *pk, const char *mod, size_t ml, const char *name, size_t nl) {
    for (size_t g = 0; g < S_NGLOBALS; g++)
        if (strlen(s_globals[g].module) == ml && memcmp(s_globals[g].module, mod, ml) == 0 &&
            strlen(s_globals[g].name) == nl && memcmp(s_globals[g].name, name, nl) == 0) {
            int rc = 0;
            nr_pickle_value_t *v = s_new(pk, NR_PICKLE_GLOBAL, &rc);
            if (!v) return rc;
            v->global = (int)g;
            return s_push(pk, v);
        }
    /* Print only tame characters of a hostile name. */
    char m[80], n[80];
    size_t i;
    for (i = 0; i < ml && i < sizeof m - 1; i++) m[i] = mod[i] >= 0x20 && mod[i] < 0x7f ? mod[i] : '?';
    m[i] = 0;
    for (i = 0; i < nl && i < sizeof n - 1; i++) n[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
    n[i] = 0;
    return s_fail(pk, "refused global %s.%s", m, n);
}

static int s_is_int(const nr_pickle_value_t *v) { return v->kind == NR_PICKLE_INT; }

/* Reads a tuple of at most NR_TENSOR_MAX_DIMS non-negative ints. */
static int s_dims(nr_pickle_t *pk, const nr_pickle_value_t *t, const char *what, int64_t *out, int *n) {
    if (t->kind != NR_PICKLE_TUPLE) return s_fail(pk, "tensor %s is a %s, not a tuple", what, s_kind_name(t->kind));
    if (t->n > NR_TENSOR_MAX_DIMS)
        return s_fail(pk, "tensor with %zu dimensions refused (at most %d supported)", t->n, NR_TENSOR_MAX_DIMS);
    for (size_t i = 0; i < t->n; i++) {
        if (!s_is_int(t->items[i]) || t->items[i]->i < 0) return s_fail(pk, "tensor %s entry %zu is not an int >= 0", what, i);
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]). */
static int s_rebuild_tensor(nr_pickle_t *pk, const nr_pickle_value_t *a, nr_pickle_value_t **res) {
    if (a->n != 6 && a->n != 7) return s_fail(pk, "_rebuild_tensor_v2 with %zu arguments (6 or 7 expected)", a->n);
    nr_pickle_value_t **x = a->items;
    if (x[0]->kind != NR_PICKLE_STORAGE)
        return s_fail(pk, "_rebuild_tensor_v2 of a %s, not a storage", s_kind_name(x[0]->kind));
    if (!s_is_int(x[1]) || x[1]->i < 0) return s_fail(pk, "_rebuild_tensor_v2: storage offset is not an int >= 0");
    if (x[4]->kind != NR_PICKLE_BOOL) return s_fail(pk, "_rebuild_tensor_v2: requires_grad is not a bool");
    int rc = 0;
    nr_pickle_value_t *t = s_new(pk, NR_PICKLE_TENSOR, &rc);
    if (!t) return rc;
    int ns = 0, nst = 0;
    if ((rc = s_dims(pk, x[2], "size", t->shape, &ns)) || (rc = s_dims(pk, x[3], "stride", t->stride, &nst))) return rc;
    if (ns != nst) return s_fail(pk, "tensor size has %d entries but stride %d", ns, nst);
    t->ndim = ns;
    t->storage = x[0];
    t->dtype = x[0]->dtype;
    t->offset = x[1]->i;
    if ((rc = s_keep(pk, x[5]))) return rc;
    if (a->n == 7 && (rc = s_keep(pk, x[6]))) return rc;
    *res = t;
    return 0;
}

static int s_reduce(nr_pickle_t *pk, nr_pickle_value_t *fn, nr_pickle_value_t *a, nr_pickle_value_t **res) {
    int rc = 0;
    if (fn->kind != NR_PICKLE_GLOBAL) return s_fail(pk, "REDUCE of a %s, not an allowed global", s_kind_name(fn->kind));
    if (a->kind != NR_PICKLE_TUPLE) return s_fail(pk, "REDUCE arguments are a %s, not a tuple", s_kind_name(a->kind));
    const char *mod = s_globals[fn->global].module, *nm = s_globals[fn->global].name;
    switch (s_globals[fn->global].kind) {
    case G_ODICT:
        if (a->n != 0) return s_fail(pk, "OrderedDict called with arguments (refused)");
        *res = s_new(pk, NR_PICKLE_DICT, &rc);
        return *res ? 0 : rc;
    case G_REBUILD:
        return s_rebuild_tensor(pk, a, res);
    case G_PARAM:
    case G_PARAM_STATE: {
        size_t want = s_globals[fn->global].kind == G_PARAM ? 3 : 4;
        if (a->n != want || a->items[0]->kind != NR_PICKLE_TENSOR || a->items[1]->kind != NR_PICKLE_BOOL)
            return s_fail(pk, "%s expects (tensor, bool, hooks%s)", nm, want == 4 ? ", state" : "");
        for (size_t i = 2; i < want; i++)
            if ((rc = s_keep(pk, a->items[i]))) return rc;
        *res = a->items[0];
        return 0;
    }
    case G_FROM_TYPE:
        /* _rebuild_from_type_v2(func, new_type, args, state): only a plain
         * tensor or Parameter rebuilt by _rebuild_tensor_v2. */
        if (a->n != 4 || a->items[0]->kind != NR_PICKLE_GLOBAL || s_globals[a->items[0]->global].kind != G_REBUILD ||
            a->items[1]->kind != NR_PICKLE_GLOBAL || s_globals[a->items[1]->global].kind != G_TYPE ||
            a->items[2]->kind != NR_PICKLE_TUPLE)
            return s_fail(pk, "_rebuild_from_type_v2 other than (_rebuild_tensor_v2, Tensor or Parameter, args, state)");
        if ((rc = s_keep(pk, a->items[3]))) return rc;
        return s_rebuild_tensor(pk, a->items[2], res);
    default:
        return s_fail(pk, "refused call of %s.%s", mod, nm);
    }
}

/* BINPERSID: ('storage', class or dtype, key, location, numel). */
static int s_persid(nr_pickle_t *pk, const nr_pickle_value_t *id, nr_pickle_value_t **res) {
    if (id->kind != NR_PICKLE_TUPLE || id->n != 5 || id->items[0]->kind != NR_PICKLE_STR || id->items[0]->len != 7 ||
        memcmp(id->items[0]->s, "storage", 7) != 0)
        return s_fail(pk, "persistent id is not ('storage', class, key, location, numel)");
    const nr_pickle_value_t *cls = id->items[1], *key = id->items[2], *loc = id->items[3], *num = id->items[4];
    if (cls->kind != NR_PICKLE_GLOBAL ||
        (s_globals[cls->global].kind != G_STORAGE && s_globals[cls->global].kind != G_DTYPE))
        return s_fail(pk, "persistent id's storage class is not a storage type or dtype");
    if (key->kind != NR_PICKLE_STR || key->len == 0 || key->len > 64)
        return s_fail(pk, "persistent id's storage key is not a short string");
    for (size_t i = 0; i < key->len; i++) {
        char c = key->s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
            return s_fail(pk, "storage key with character 0x%02x refused", (unsigned char)c);
    }
    if (loc->kind != NR_PICKLE_STR) return s_fail(pk, "persistent id's location is not a string");
    if (!s_is_int(num) || num->i < 0) return s_fail(pk, "persistent id's numel is not an int >= 0");
    int rc = 0;
    nr_pickle_value_t *st = s_new(pk, NR_PICKLE_STORAGE, &rc);
    if (!st) return rc;
    st->s = key->s;
    st->len = key->len;
    st->i = num->i;
    st->dtype = s_globals[cls->global].dtype;
    *res = st;
    return 0;
}

/* Closes the last MARK; *start gets the stack index of its first item. */
static int s_pop_mark(nr_pickle_t *pk, size_t *start) {
    if (pk->nmarks == 0) return s_fail(pk, "no MARK to pop to");
    *start = pk->marks[--pk->nmarks];
    return 0;
}

static int s_tuple(nr_pickle_t *pk, size_t from) {
    int rc = 0;
    nr_pickle_value_t *t = s_new(pk, NR_PICKLE_TUPLE, &rc);
    if (!t) return rc;
    for (size_t i = from; i < pk->sp; i++)
        if ((rc = s_add(pk, t, pk->stack[i]))) return rc;
    pk->sp = from;
    return s_push(pk, t);
}

static int s_string(nr_pickle_t *pk, size_t lenbytes) {
    int rc = s_need(pk, lenbytes);
    if (rc) return rc;
    uint64_t n = s_le(pk->p + pk->pos, (int)lenbytes);
    pk->pos += lenbytes;
    if (n > pk->size - pk->pos) return s_fail(pk, "string of %llu bytes runs past the end", (unsigned long long)n);
    nr_pickle_value_t *v = s_new(pk, NR_PICKLE_STR, &rc);
    if (!v) return rc;
    v->s = (const char *)pk->p + pk->pos;
    v->len = (size_t)n;
    pk->pos += (size_t)n;
    return s_push(pk, v);
}

static int s_int(nr_pickle_t *pk, int64_t i, nr_pickle_kind_t kind) {
    int rc = 0;
    nr_pickle_value_t *v = s_new(pk, kind, &rc);
    if (!v) return rc;
    v->i = i;
    return s_push(pk, v);
}

/* Refuses a callable reachable from v, or nesting deeper than the limit. */
static int s_check(nr_pickle_t *pk, nr_pickle_value_t *v, int depth) {
    if (v->visit == pk->epoch) return 0;
    v->visit = pk->epoch;
    if (v->kind == NR_PICKLE_GLOBAL)
        return s_fail(pk, "refused global %s.%s kept as a value", s_globals[v->global].module, s_globals[v->global].name);
    if (depth > NR_PICKLE_MAX_DEPTH) return s_fail(pk, "values nested deeper than %d", NR_PICKLE_MAX_DEPTH);
    for (size_t i = 0; i < v->n; i++) {
        int rc = s_check(pk, v->items[i], depth + 1);
        if (rc) return rc;
    }
    return 0;
}

/* One opcode; sets *done at STOP. */
static int s_step(nr_pickle_t *pk, int *done) {
    int rc = 0;
    nr_pickle_value_t *a = NULL, *b = NULL, *v = NULL;
    size_t start = 0;
    pk->op_at = pk->pos;
    if (pk->pos >= pk->size) return s_fail(pk, "ends without STOP");
    unsigned char op = pk->p[pk->pos++];
    switch (op) {
    case 0x80: /* PROTO */
        if ((rc = s_need(pk, 1))) return rc;
        if (pk->p[pk->pos] < 2 || pk->p[pk->pos] > 4) return s_fail(pk, "pickle protocol %d refused (2 to 4)", pk->p[pk->pos]);
        pk->pos++;
        return 0;
    case 0x95: /* FRAME: framing is only a read-ahead hint */
        if ((rc = s_need(pk, 8))) return rc;
        pk->pos += 8;
        return 0;
    case '}': /* EMPTY_DICT */
    case ']': /* EMPTY_LIST */
    case ')': /* EMPTY_TUPLE */
        v = s_new(pk, op == '}' ? NR_PICKLE_DICT : op == ']' ? NR_PICKLE_LIST : NR_PICKLE_TUPLE, &rc);
        return v ? s_push(pk, v) : rc;
    case 'N': /* NONE */
        v = s_new(pk, NR_PICKLE_NONE, &rc);
        return v ? s_push(pk, v) : rc;
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
        return s_int(pk, op == 0x88, NR_PICKLE_BOOL);
    case '(': /* MARK */
        if (pk->nmarks >= NR_PICKLE_MAX_MARKS) return s_fail(pk, "MARKs nested deeper than %d", NR_PICKLE_MAX_MARKS);
        pk->marks[pk->nmarks++] = pk->sp;
        return 0;
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */ {
        size_t k = (size_t)(op - 0x84);
        if (pk->sp < s_floor(pk) + k) return s_fail(pk, "stack underflow");
        return s_tuple(pk, pk->sp - k);
    }
    case 't': /* TUPLE */
        if ((rc = s_pop_mark(pk, &start))) return rc;
        return s_tuple(pk, start);
    case 'X': return s_string(pk, 4);    /* BINUNICODE */
    case 0x8c: return s_string(pk, 1);   /* SHORT_BINUNICODE */
    case 0x8d: return s_string(pk, 8);   /* BINUNICODE8 */
    case 'J': /* BININT */
        if ((rc = s_need(pk, 4))) return rc;
        pk->pos += 4;
        return s_int(pk, (int32_t)(uint32_t)s_le(pk->p + pk->pos - 4, 4), NR_PICKLE_INT);
    case 'K': /* BININT1 */
    case 'M': /* BININT2 */ {
        int n = op == 'K' ? 1 : 2;
        if ((rc = s_need(pk, (size_t)n))) return rc;
        pk->pos += (size_t)n;
        return s_int(pk, (int64_t)s_le(pk->p + pk->pos - n, n), NR_PICKLE_INT);
    }
    case 0x8a: /* LONG1 */ {
        if ((rc = s_need(pk, 1))) return rc;
        int n = pk->p[pk->pos++];
        if (n > 8) return s_fail(pk, "integer of %d bytes refused (at most 8)", n);
        if ((rc = s_need(pk, (size_t)n))) return rc;
        uint64_t u = s_le(pk->p + pk->pos, n);
        if (n > 0 && n < 8 && (pk->p[pk->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        pk->pos += (size_t)n;
        return s_int(pk, (int64_t)u, NR_PICKLE_INT);
    }
    case 'G': /* BINFLOAT: big-endian IEEE double */ {
        if ((rc = s_need(pk, 8))) return rc;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | pk->p[pk->pos + (size_t)i];
        pk->pos += 8;
        if (!(v = s_new(pk, NR_PICKLE_FLOAT, &rc))) return rc;
        memcpy(&v->f, &u, sizeof u);
        return s_push(pk, v);
    }
    case 'q': /* BINPUT */
    case 'r': /* LONG_BINPUT */
    case 'h': /* BINGET */
    case 'j': /* LONG_BINGET */ {
        size_t n = (op == 'q' || op == 'h') ? 1 : 4;
        if ((rc = s_need(pk, n))) return rc;
        uint64_t idx = s_le(pk->p + pk->pos, (int)n);
        pk->pos += n;
        return (op == 'q' || op == 'r') ? s_memo_put(pk, idx) : s_memo_get(pk, idx);
    }
    case 0x94: /* MEMOIZE */
        return s_memo_put(pk, pk->memo_count);
    case 's': /* SETITEM */
        if ((rc = s_pop(pk, &b)) || (rc = s_pop(pk, &a))) return rc;
        if (pk->sp <= s_floor(pk) || pk->stack[pk->sp - 1]->kind != NR_PICKLE_DICT) return s_fail(pk, "SETITEM on a non-dict");
        if ((rc = s_add(pk, pk->stack[pk->sp - 1], a))) return rc;
        return s_add(pk, pk->stack[pk->sp - 1], b);
    case 'u': /* SETITEMS */
    case 'e': /* APPENDS */
        if ((rc = s_pop_mark(pk, &start))) return rc;
        if (start <= s_floor(pk) || pk->stack[start - 1]->kind != (op == 'u' ? NR_PICKLE_DICT : NR_PICKLE_LIST))
            return s_fail(pk, "%s on a non-%s", op == 'u' ? "SETITEMS" : "APPENDS", op == 'u' ? "dict" : "list");
        if (op == 'u' && (pk->sp - start) % 2) return s_fail(pk, "SETITEMS with an odd number of items");
        for (size_t i = start; i < pk->sp; i++)
            if ((rc = s_add(pk, pk->stack[start - 1], pk->stack[i]))) return rc;
        pk->sp = start;
        return 0;
    case 'a': /* APPEND */
        if ((rc = s_pop(pk, &a))) return rc;
        if (pk->sp <= s_floor(pk) || pk->stack[pk->sp - 1]->kind != NR_PICKLE_LIST) return s_fail(pk, "APPEND on a non-list");
        return s_add(pk, pk->stack[pk->sp - 1], a);
    case 'c': /* GLOBAL: "module\nname\n" */ {
        const char *s = (const char *)pk->p + pk->pos;
        size_t left = pk->size - pk->pos;
        const char *nl1 = memchr(s, '\n', left < 256 ? left : 256);
        if (!nl1) return s_fail(pk, "GLOBAL without a module line");
        const char *nm = nl1 + 1;
        left -= (size_t)(nm - s);
        const char *nl2 = memchr(nm, '\n', left < 256 ? left : 256);
        if (!nl2) return s_fail(pk, "GLOBAL without a name line");
        pk->pos += (size_t)(nl2 + 1 - s);
        return s_global(pk, s, (size_t)(nl1 - s), nm, (size_t)(nl2 - nm));
    }
    case 0x93: /* STACK_GLOBAL */
        if ((rc = s_pop(pk, &b)) || (rc = s_pop(pk, &a))) return rc;
        if (a->kind != NR_PICKLE_STR || b->kind != NR_PICKLE_STR) return s_fail(pk, "STACK_GLOBAL of non-strings");
        return s_global(pk, a->s, a->len, b->s, b->len);
    case 'R': /* REDUCE */
        if ((rc = s_pop(pk, &b)) || (rc = s_pop(pk, &a))) return rc;
        if ((rc = s_reduce(pk, a, b, &v))) return rc;
        return s_push(pk, v);
    case 'Q': /* BINPERSID */
        if ((rc = s_pop(pk, &a))) return rc;
        if ((rc = s_persid(pk, a, &v))) return rc;
        return s_push(pk, v);
    case 'b': /* BUILD: only an OrderedDict's attributes (_metadata) */
        if ((rc = s_pop(pk, &b))) return rc;
        if (pk->sp <= s_floor(pk)) return s_fail(pk, "stack underflow");
        if (pk->stack[pk->sp - 1]->kind != NR_PICKLE_DICT ||
            (b->kind != NR_PICKLE_DICT && b->kind != NR_PICKLE_NONE))
            return s_fail(pk, "BUILD of a %s with a %s state refused", s_kind_name(pk->stack[pk->sp - 1]->kind),
                          s_kind_name(b->kind));
        return s_keep(pk, b);
    case '.': /* STOP */
        if ((rc = s_pop(pk, &v))) return rc;
        pk->root = v;
        *done = 1;
        return 0;
    default:
        if (op >= 0x20 && op < 0x7f) return s_fail(pk, "opcode 0x%02x '%c' refused", op, op);
        return s_fail(pk, "opcode 0x%02x refused", op);
    }
}

int nr_pickle_load(const void *data, size_t size, const char *name, nr_pickle_t **out, char *err, size_t errlen) {
    if (!out) return NR_EINVAL;
    *out = NULL;
    nr_pickle_t *pk = calloc(1, sizeof(*pk));
    if (!pk) return nr_seterr(err, errlen, NR_ENOMEM, "%s: data.pkl: out of memory", name ? name : "(pickle)");
    pk->p = data;
    pk->size = data ? size : 0;
    pk->name = name ? name : "(pickle)";
    pk->err = err;
    pk->errlen = errlen;
    int rc = 0, done = 0;
    while (!done && rc == 0) rc = s_step(pk, &done);
    if (rc == 0) {
        pk->epoch = 1;
        rc = s_check(pk, pk->root, 0);
        for (size_t i = 0; rc == 0 && i < pk->nextras; i++) rc = s_check(pk, pk->extras[i], 0);
    }
    /* Loading is over: drop the working state, keep the values. */
    free(pk->stack);
    free(pk->memo);
    free(pk->extras);
    pk->stack = NULL;
    pk->memo = NULL;
    pk->extras = NULL;
    pk->err = NULL;
    pk->name = NULL;
    if (rc != 0) {
        nr_pickle_destroy(&pk);
        return rc;
    }
    *out = pk;
    return 0;
}

const nr_pickle_value_t *nr_pickle_root(const nr_pickle_t *pk) { return pk ? pk->root : NULL; }

void nr_pickle_destroy(nr_pickle_t **ppk) {
    if (!ppk || !*ppk) return;
    nr_pickle_t *pk = *ppk;
    for (size_t i = 0; i < pk->nall; i++) {
        free(pk->all[i]->items);
        free(pk->all[i]);
    }
    free(pk->all);
    free(pk->stack);
    free(pk->memo);
    free(pk->extras);
    free(pk);
    *ppk = NULL;
}
