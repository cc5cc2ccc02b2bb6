/* What the model tests against a PyTorch reference share (test_git.c,
 * test_blip.c, test_paligemma.c ...): the source folder, a test image's
 * bytes, tensors of a reference file as floats or ids, and the normalized
 * error of one array against another. For
 * tests only: a missing tensor fails the test (Criterion). */
#ifndef NR_TESTS_MODEL_REF_H
#define NR_TESTS_MODEL_REF_H

#include <stddef.h>

#include "models/io/safetensors.h"

/* NR_SOURCE_DIR, or "." */
const char *nr_test_src(void);
/* The bytes of tests/fixtures/images/<name> (the caller frees); the
 * size in *size. */
void *nr_test_image(const char *name, size_t *size);
/* The reference tensor `name` as floats (the caller frees); its element
 * count in *count when count is not NULL. */
float *nr_test_ref(const nr_safetensors_t *ref, const char *name, size_t *count);
/* The same as ints (token ids); the count in *count. */
int *nr_test_ref_ids(const nr_safetensors_t *ref, const char *name, int *count);
/* Max of |a - b| / (tol_abs + tol_rel |b|) over n values (<= 1 passes);
 * the largest |a - b| in *max_abs when not NULL. */
double nr_test_close(const float *a, const float *b, size_t n, double tol_abs, double tol_rel, double *max_abs);
/* ||a - b|| / ||b|| over n values (||a - b|| when b is all zeros). */
double nr_test_rel_l2(const float *a, const float *b, size_t n);

/* A BF16 checkpoint of fixture `name` keeps its matmul weights mapped
 * (models/weights.h): writes it (every F32 tensor of the fixture's
 * model.safetensors rounded to BF16, as a BF16 checkpoint is published)
 * and its F32 twin (the same values widened) into a temporary folder, and
 * checks that on every kernel path this CPU runs and every CPU precision
 * the two give the same image states (within 1e-5 normalized) and the
 * same greedy and beam ids (max_length, beams), from the reference's
 * pixel_values. The folder is removed. */
void nr_test_bf16_twins_agree(const char *name, int max_length, int beams);

#endif
