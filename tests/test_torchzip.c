/* Tests for the torch zip checkpoint reader (models/io/torchzip.c) and its
 * restricted unpickler, on the fixtures of tests/fixtures/make_torch_bins.py:
 * every good .bin equals its .safetensors twin byte for byte; every hostile
 * one is refused with NR_EMODEL naming the file and what was refused, and
 * none runs code. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "models/io/safetensors.h"
#include "models/io/torchzip.h"

#define MARKER "/tmp/nr_torchzip_pwned" /* what the code-running payloads would create */

static void s_path(char *buf, size_t n, const char *name) {
    const char *s = getenv("NR_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/fixtures/torch/%s", s ? s : ".", name);
}

static unsigned char *s_read(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Opens <name>.bin and checks it against <name>.safetensors; returns the
 * open reader. */
static nr_torchzip_t *s_check_good(const char *name) {
    char bin[512], st[512], err[512] = "";
    snprintf(err, sizeof err, "%s.bin", name);
    s_path(bin, sizeof bin, err);
    snprintf(err, sizeof err, "%s.safetensors", name);
    s_path(st, sizeof st, err);
    nr_torchzip_t *tz = NULL;
    nr_safetensors_t *ref = NULL;
    int rc = nr_torchzip_open(bin, &tz, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: rc %d: %s", name, rc, err);
    cr_assert_eq(nr_safetensors_open(st, &ref, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(nr_torchzip_path(tz), bin);
    cr_assert_eq(nr_torchzip_count(tz), nr_safetensors_count(ref), "%s: %zu tensors, expected %zu", name,
                 nr_torchzip_count(tz), nr_safetensors_count(ref));
    for (size_t i = 0; i < nr_safetensors_count(ref); i++) {
        const nr_named_tensor_t *e = nr_safetensors_at(ref, i), *t = nr_torchzip_at(tz, i);
        cr_assert_str_eq(t->name, e->name, "%s: entry %zu is %s, expected %s (state-dict order)", name, i, t->name, e->name);
        cr_assert_eq(nr_torchzip_find(tz, e->name), t);
        cr_assert_eq(t->dtype, e->dtype, "%s: %s dtype %s, expected %s", name, e->name, nr_dtype_name(t->dtype),
                     nr_dtype_name(e->dtype));
        cr_assert_eq(t->ndim, e->ndim, "%s: %s ndim", name, e->name);
        for (int d = 0; d < e->ndim; d++) cr_assert_eq(t->shape[d], e->shape[d], "%s: %s dim %d", name, e->name, d);
        cr_assert_eq(t->nbytes, e->nbytes, "%s: %s nbytes", name, e->name);
        cr_assert(e->nbytes == 0 || memcmp(t->data, e->data, e->nbytes) == 0, "%s: %s bytes differ", name, e->name);
    }
    cr_assert_null(nr_torchzip_find(tz, "no.such.tensor"));
    cr_assert_null(nr_torchzip_at(tz, nr_torchzip_count(tz)));
    nr_safetensors_close(&ref);
    return tz;
}

Test(torchzip, good_files_match_their_safetensors_twins) {
    static const char *names[] = {"f32",    "f16_views", "tied",   "proto4", "prefix", "nested", "metadata",
                                  "scalar", "dtypes",    "param",  "transposed", "byteorder"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        nr_torchzip_t *tz = s_check_good(names[i]);
        nr_torchzip_close(&tz);
        cr_assert_null(tz);
        nr_torchzip_close(&tz); /* safe twice */
    }
}

Test(torchzip, tied_weights_and_views_share_the_file_bytes) {
    nr_torchzip_t *tz = s_check_good("tied");
    const nr_named_tensor_t *a = nr_torchzip_find(tz, "wte.weight"), *b = nr_torchzip_find(tz, "lm_head.weight");
    cr_assert_eq(a->data, b->data, "tied weights must point at one storage");
    nr_torchzip_close(&tz);
    /* x = base[4:16], y = base[20:26], z = base[30:38] of one F16 storage. */
    tz = s_check_good("f16_views");
    const unsigned char *x = nr_torchzip_find(tz, "x")->data, *y = nr_torchzip_find(tz, "y")->data,
                        *z = nr_torchzip_find(tz, "z")->data;
    cr_assert_eq(y - x, (20 - 4) * 2);
    cr_assert_eq(z - x, (30 - 4) * 2);
    nr_torchzip_close(&tz);
    tz = s_check_good("scalar");
    cr_assert_eq(nr_torchzip_find(tz, "s")->ndim, 0);
    cr_assert_eq(nr_torchzip_find(tz, "s")->nbytes, 4);
    nr_torchzip_close(&tz);
}

Test(torchzip, f32_is_used_in_place_and_strided_views_are_copied) {
    char path[512], err[512];
    s_path(path, sizeof path, "transposed.bin");
    size_t n = 0;
    unsigned char *buf = s_read(path, &n);
    nr_torchzip_t *tz = NULL;
    cr_assert_eq(nr_torchzip_open_memory(buf, n, "transposed.bin", &tz, err, sizeof err), 0, "%s", err);
    const unsigned char *c = nr_torchzip_find(tz, "c")->data, *wt = nr_torchzip_find(tz, "wt")->data;
    cr_assert(c >= buf && c + 8 <= buf + n, "contiguous F32 must point into the file bytes");
    cr_assert(wt < buf || wt >= buf + n, "a transposed view is a copy");
    nr_torchzip_close(&tz);
    free(buf);
}

static const struct {
    const char *file, *why;
} s_hostile[] = {
    {"h_os_system.bin", "refused global os.system"},
    {"h_eval.bin", "refused global builtins.eval"},
    {"h_callable_value.bin", "refused global torch._utils._rebuild_tensor_v2 kept as a value"},
    {"h_posix_value.bin", "refused global posix.system"},
    {"h_missing_key.bin", "tensor w: storage data/7 missing from the archive"},
    {"h_view_past.bin", "runs past its storage data/0 of 4 elements"},
    {"h_view_overflow.bin", "runs past its storage"},
    {"h_storage_size.bin", "storage data/0 holds 16 bytes, not 100 F32 elements"},
    {"h_truncated.bin", "not a readable zip"},
    {"h_deep_mark.bin", "MARKs nested deeper than 64"},
    {"h_random.bin", "no zip signature"},
    {"h_empty.bin", "empty file"},
    {"h_compressed.bin", "is compressed (method 8)"},
    {"h_legacy.bin", "legacy torch.save format"},
    {"h_bigendian.bin", "byteorder is 'big'"},
    {"h_five_dims.bin", "5 dimensions refused"},
    {"h_complex.bin", "refused global torch.ComplexFloatStorage"},
    {"h_memo_index.bin", "memo index 4294967295 over the limit"},
    {"h_self_dict.bin", "dicts nested deeper than 32"},
    {"h_no_folder.bin", "is not under a top folder"},
};

Test(torchzip, hostile_files_are_refused_naming_file_and_cause) {
    unlink(MARKER);
    for (size_t i = 0; i < sizeof s_hostile / sizeof s_hostile[0]; i++) {
        char path[512], err[512] = "";
        s_path(path, sizeof path, s_hostile[i].file);
        nr_torchzip_t *tz = NULL;
        int rc = nr_torchzip_open(path, &tz, err, sizeof err);
        cr_assert_eq(rc, NR_EMODEL, "%s: rc %d (%s), expected NR_EMODEL", s_hostile[i].file, rc, err);
        cr_assert_null(tz);
        cr_assert(strstr(err, path) != NULL, "%s: error does not name the file: %s", s_hostile[i].file, err);
        cr_assert(strstr(err, s_hostile[i].why) != NULL, "%s: error '%s' does not say '%s'", s_hostile[i].file, err,
                  s_hostile[i].why);
        /* The same from memory. */
        size_t n = 0;
        unsigned char *buf = s_read(path, &n);
        cr_assert_eq(nr_torchzip_open_memory(buf, n, s_hostile[i].file, &tz, err, sizeof err), NR_EMODEL, "%s: %s",
                     s_hostile[i].file, err);
        cr_assert(strstr(err, s_hostile[i].why) != NULL, "%s (memory): %s", s_hostile[i].file, err);
        free(buf);
    }
    cr_assert_neq(access(MARKER, F_OK), 0, "a payload ran: %s exists", MARKER);
}

Test(torchzip, every_truncation_and_byte_flip_fails_cleanly) {
    char path[512], err[512];
    s_path(path, sizeof path, "f32.bin");
    size_t n = 0;
    unsigned char *buf = s_read(path, &n);
    for (size_t len = 0; len < n; len++) {
        unsigned char *cut = malloc(len ? len : 1); /* exact size, so ASan sees any over-read */
        memcpy(cut, buf, len);
        nr_torchzip_t *tz = NULL;
        int rc = nr_torchzip_open_memory(cut, len, "cut", &tz, err, sizeof err);
        if (rc == 0) nr_torchzip_close(&tz);
        else cr_assert_null(tz);
        free(cut);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char *b = malloc(n);
        memcpy(b, buf, n);
        b[i] ^= 0xff;
        nr_torchzip_t *tz = NULL;
        int rc = nr_torchzip_open_memory(b, n, "flip", &tz, err, sizeof err);
        if (rc == 0) {
            for (size_t k = 0; k < nr_torchzip_count(tz); k++) {
                const nr_named_tensor_t *t = nr_torchzip_at(tz, k);
                volatile unsigned char sink = 0;
                for (size_t j = 0; j < t->nbytes; j++) sink ^= ((const unsigned char *)t->data)[j];
                (void)sink;
            }
            nr_torchzip_close(&tz);
        } else {
            cr_assert(rc == NR_EMODEL, "flip at %zu: rc %d", i, rc);
        }
        free(b);
    }
    free(buf);
}

Test(torchzip, missing_file_is_bad_model) {
    char err[256];
    nr_torchzip_t *tz = NULL;
    cr_assert_eq(nr_torchzip_open("/nonexistent/pytorch_model.bin", &tz, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "/nonexistent/pytorch_model.bin") != NULL);
}

/* torch.save(tensor) (a Kokoro voice pack's form) is one entry named "". */
Test(torchzip, a_single_tensor_is_one_entry) {
    char path[512], err[512];
    s_path(path, sizeof path, "single_tensor.bin");
    nr_torchzip_t *tz = NULL;
    cr_assert_eq(nr_torchzip_open(path, &tz, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_torchzip_count(tz), 1);
    const nr_named_tensor_t *t = nr_torchzip_find(tz, "");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 1);
    cr_assert_eq(t->shape[1], 3);
    const float want[3] = {1.5f, -2.25f, 0.5f};
    cr_assert_eq(memcmp(t->data, want, sizeof want), 0);
    nr_torchzip_close(&tz);
}
