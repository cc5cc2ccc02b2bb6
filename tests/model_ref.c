/* Reference-comparison helpers of the model tests (see model_ref.h). */
#include "model_ref.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/captioner.h"
#include "models/cpu/dispatch.h"
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

double nr_test_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void s_copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s -> %s", from, to);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* dir/bf16 and dir/f32 from fixture `name` (see model_ref.h). */
static void s_write_twins(const char *name, const char *dir) {
    char src[1200], path[1400], err[512];
    snprintf(src, sizeof src, "%s/tests/fixtures/%s", nr_test_src(), name);
    const char *kind[2] = {"bf16", "f32"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, kind[k]);
        cr_assert_eq(mkdir(path, 0700), 0, "%s", path);
        DIR *d = opendir(src);
        cr_assert_not_null(d, "%s", src);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.' || strcmp(e->d_name, "model.safetensors") == 0) continue;
            char from[1400], to[1600];
            snprintf(from, sizeof from, "%s/%s", src, e->d_name);
            snprintf(to, sizeof to, "%s/%s/%s", dir, kind[k], e->d_name);
            s_copy_file(from, to);
        }
        closedir(d);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    nr_safetensors_t *st = NULL;
    cr_assert_eq(nr_safetensors_open(path, &st, err, sizeof err), 0, "%s", err);
    const size_t n = nr_safetensors_count(st);
    nr_named_tensor_t *t[2] = {calloc(n, sizeof(nr_named_tensor_t)), calloc(n, sizeof(nr_named_tensor_t))};
    cr_assert(t[0] && t[1]);
    for (size_t i = 0; i < n; i++) {
        const nr_named_tensor_t *s = nr_safetensors_at(st, i);
        t[0][i] = t[1][i] = *s;
        if (s->dtype != NR_DTYPE_F32) continue;
        const size_t count = s->nbytes / sizeof(float);
        uint16_t *h = malloc(count * sizeof(uint16_t) + 1);
        float *f = malloc(count * sizeof(float) + 1);
        cr_assert(h && f);
        nr_convert_to_f32(f, s->data, NR_DTYPE_F32, count);
        for (size_t j = 0; j < count; j++) {
            h[j] = nr_f32_to_bf16(f[j]);
            f[j] = nr_bf16_to_f32(h[j]);
        }
        t[0][i].dtype = NR_DTYPE_BF16;
        t[0][i].data = h;
        t[0][i].nbytes = count * sizeof(uint16_t);
        t[1][i].data = f;
    }
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, kind[k]);
        cr_assert_eq(nr_safetensors_write(path, t[k], n, err, sizeof err), 0, "%s", err);
    }
    for (size_t i = 0; i < n; i++)
        if (nr_safetensors_at(st, i)->dtype == NR_DTYPE_F32) {
            free((void *)t[0][i].data);
            free((void *)t[1][i].data);
        }
    free(t[0]);
    free(t[1]);
    nr_safetensors_close(&st);
}

static void s_remove_tree(const char *dir) {
    const char *kind[2] = {"bf16", "f32"};
    for (int k = 0; k < 2; k++) {
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", dir, kind[k]);
        DIR *d = opendir(sub);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", sub, e->d_name);
            unlink(p);
        }
        if (d) closedir(d);
        rmdir(sub);
    }
    rmdir(dir);
}

void nr_test_bf16_twins_agree(const char *name, int max_length, int beams) {
    const char *base = getenv("TMPDIR");
    char dir[1024], err[512], path[1200];
    snprintf(dir, sizeof dir, "%s/nr-bf16-twins-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    s_write_twins(name, dir);
    snprintf(path, sizeof path, "%s/tests/fixtures/%s-reference.safetensors", nr_test_src(), name);
    nr_safetensors_t *ref = NULL;
    cr_assert_eq(nr_safetensors_open(path, &ref, err, sizeof err), 0, "%s", err);
    float *px = nr_test_ref(ref, "pixel_values", NULL);
    const nr_cpu_path_t was = nr_cpu_path();
    const char *devs[3] = {"cpu", "cpu:bf16", "cpu:int8"}, *kind[2] = {"bf16", "f32"};
    int runs = 0;
    for (int p = 0; p < NR_CPU_PATH_COUNT; p++) {
        if (!nr_cpu_path_supported((nr_cpu_path_t)p)) continue;
        cr_assert_eq(nr_cpu_path_set((nr_cpu_path_t)p), 0);
        for (int d = 0; d < 3; d++) {
            float *states[2] = {NULL, NULL};
            int ids[2][2][2 * 32], lens[2][2][2], S = 0, D = 0;
            cr_assert_leq(max_length, 32);
            for (int k = 0; k < 2; k++) {
                nr_captioner_params_t prm = nr_captioner_default_params();
                prm.device = devs[d];
                prm.num_threads = 2;
                nr_captioner_t *cap = NULL;
                snprintf(path, sizeof path, "%s/%s", dir, kind[k]);
                cr_assert_eq(nr_captioner_load(path, &prm, &cap, err, sizeof err), 0, "%s", err);
                nr_captioner_states_shape(cap, &S, &D);
                states[k] = malloc((size_t)2 * S * D * sizeof(float));
                cr_assert_eq(nr_captioner_encode(cap, px, 2, states[k], err, sizeof err), 0, "%s", err);
                nr_gen_config_t g = nr_captioner_gen_defaults(cap);
                g.max_length = max_length;
                for (int b = 0; b < 2; b++) {
                    g.num_beams = b ? beams : 1;
                    cr_assert_eq(nr_captioner_generate(cap, states[k], 2, &g, ids[k][b], lens[k][b], err, sizeof err),
                                 0, "%s", err);
                }
                nr_captioner_destroy(&cap);
            }
            double max_abs;
            const double e = nr_test_close(states[0], states[1], (size_t)2 * S * D, 1e-5, 1e-5, &max_abs);
            cr_assert_leq(e, 1.0, "%s %s on %s: BF16-mapped states differ from F32 of the same values by %.3g",
                          name, devs[d], nr_cpu_path_name((nr_cpu_path_t)p), max_abs);
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < 2; i++) {
                    cr_assert_eq(lens[0][b][i], lens[1][b][i], "%s %s on %s: beams %d image %d: length", name,
                                 devs[d], nr_cpu_path_name((nr_cpu_path_t)p), b ? beams : 1, i);
                    for (int j = 0; j < lens[0][b][i]; j++)
                        cr_assert_eq(ids[0][b][i * max_length + j], ids[1][b][i * max_length + j],
                                     "%s %s on %s: beams %d image %d id %d", name, devs[d],
                                     nr_cpu_path_name((nr_cpu_path_t)p), b ? beams : 1, i, j);
                }
            free(states[0]);
            free(states[1]);
            runs++;
        }
    }
    cr_assert_eq(nr_cpu_path_set(was), 0);
    cr_assert_geq(runs, 3);
    free(px);
    nr_safetensors_close(&ref);
    s_remove_tree(dir);
}
