/* Reference-comparison helpers of the model tests (see model_ref.h). */
#include "model_ref.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/tensor.h"

const char *nr_test_src(void) {
    const char *s = getenv("NR_SOURCE_DIR");
    return s ? s : ".";
}

void *nr_test_image(const char *name, size_t *size) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tests/fixtures/images/%s", nr_test_src(), name);
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    *size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *bytes = malloc(*size);
    cr_assert_eq(fread(bytes, 1, *size, fp), *size);
    fclose(fp);
    return bytes;
}

float *nr_test_ref(const nr_safetensors_t *ref, const char *name, size_t *count) {
    const nr_named_tensor_t *t = nr_safetensors_find(ref, name);
    cr_assert_not_null(t, "reference tensor %s missing", name);
    size_t n = t->nbytes / nr_dtype_size(t->dtype);
    float *v = malloc(n * sizeof(float));
    nr_convert_to_f32(v, t->data, t->dtype, n);
    if (count) *count = n;
    return v;
}

int *nr_test_ref_ids(const nr_safetensors_t *ref, const char *name, int *count) {
    size_t n;
    float *v = nr_test_ref(ref, name, &n);
    int *ids = malloc((n ? n : 1) * sizeof(int));
    for (size_t i = 0; i < n; i++) ids[i] = (int)v[i];
    free(v);
    *count = (int)n;
    return ids;
}

double nr_test_close(const float *a, const float *b, size_t n, double tol_abs, double tol_rel, double *max_abs) {
    double worst = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double q = d / (tol_abs + tol_rel * fabs((double)b[i]));
        if (!(q <= worst)) worst = q;
        if (d > ma) ma = d;
    }
    if (max_abs) *max_abs = ma;
    return worst;
}
