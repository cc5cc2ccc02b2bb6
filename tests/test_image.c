/* Tests for models/image (decode, EXIF, conversions, bad input) and
 * models/preprocess (PIL-exact resize, normalize), against the fixtures
 * written by tests/fixtures/make_images.py with Debian's PIL. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/image.h"
#include "models/preprocess.h"
#include "tests/harness.h"

static char *s_fixture(const char *name) {
    const char *src = getenv("NR_SOURCE_DIR");
    static char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/images/%s", src ? src : ".", name);
    size_t n;
    (void)n;
    return path;
}

static char *s_load(const char *name, size_t *size) {
    char *d = nr_harness_read_file(s_fixture(name), size);
    cr_assert_not_null(d, "cannot read fixture %s (NR_SOURCE_DIR set?)", s_fixture(name));
    return d;
}

static cJSON *s_manifest(void) {
    char *t = s_load("cases.json", NULL);
    cJSON *m = cJSON_Parse(t);
    free(t);
    cr_assert_not_null(m, "cases.json does not parse");
    return m;
}

/* Decodes a fixture; asserts success. */
static nr_image_t *s_decode(const char *name) {
    size_t n;
    char *d = s_load(name, &n);
    char err[256] = "";
    nr_image_t *img = NULL;
    int rc = nr_image_decode(d, n, NULL, &img, err, sizeof(err));
    free(d);
    cr_assert_eq(rc, 0, "%s: decode failed: %d %s", name, rc, err);
    cr_assert_not_null(img);
    return img;
}

/* Number of differing bytes; *maxdiff the largest absolute difference. */
static size_t s_diff(const unsigned char *a, const unsigned char *b, size_t n, int *maxdiff) {
    size_t bad = 0;
    *maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) bad++;
        if (d > *maxdiff) *maxdiff = d;
    }
    return bad;
}

static int s_total_bytes_compared;

Test(image, detect_by_magic_bytes) {
    cr_assert_eq(nr_image_detect("\xff\xd8\xff\xe0", 4), NR_IMAGE_JPEG);
    cr_assert_eq(nr_image_detect("\x89PNG\r\n\x1a\n", 8), NR_IMAGE_PNG);
    cr_assert_eq(nr_image_detect("RIFF\0\0\0\0WEBPVP8 ", 16), NR_IMAGE_WEBP);
    cr_assert_eq(nr_image_detect("RIFF\0\0\0\0WAVEfmt ", 16), NR_IMAGE_UNKNOWN);
    cr_assert_eq(nr_image_detect("GIF89a", 6), NR_IMAGE_UNKNOWN);
    cr_assert_eq(nr_image_detect("\xff\xd8", 2), NR_IMAGE_UNKNOWN);
    cr_assert_eq(nr_image_detect(NULL, 0), NR_IMAGE_UNKNOWN);
    cr_assert_str_eq(nr_image_format_name(NR_IMAGE_WEBP), "webp");
    /* A PNG named .jpg is still a PNG. */
    size_t n;
    char *d = s_load("coffee_64x97.png", &n);
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(d, n, NULL, &img, NULL, 0), 0);
    cr_assert_eq(img->format, NR_IMAGE_PNG);
    nr_image_destroy(&img);
    nr_image_destroy(&img);
    cr_assert_null(img);
    free(d);
}

/* Every case: decode equals PIL's exif_transpose + convert("RGB") bit for
 * bit, and every resize equals PIL's Image.resize(BILINEAR) bit for bit. */
Test(image, decode_and_resize_match_pil) {
    cJSON *m = s_manifest();
    const cJSON *cases = cJSON_GetObjectItem(m, "cases");
    int n_cases = 0, n_resizes = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *file = cJSON_GetObjectItem(c, "file")->valuestring;
        nr_image_t *img = s_decode(file);
        nr_image_t *ref = s_decode(cJSON_GetObjectItem(c, "decoded")->valuestring);
        cr_assert_eq(img->width, cJSON_GetObjectItem(c, "width")->valueint, "%s: width", file);
        cr_assert_eq(img->height, cJSON_GetObjectItem(c, "height")->valueint, "%s: height", file);
        cr_assert_eq(img->orientation, cJSON_GetObjectItem(c, "orientation")->valueint, "%s: orientation", file);
        cr_assert_str_eq(nr_image_format_name(img->format), cJSON_GetObjectItem(c, "format")->valuestring);
        cr_assert_eq(ref->width, img->width);
        cr_assert_eq(ref->height, img->height);
        int maxd;
        size_t nb = (size_t)img->width * img->height * 3;
        size_t bad = s_diff(img->data, ref->data, nb, &maxd);
        cr_expect_eq(bad, 0, "%s: decode differs from PIL in %zu of %zu bytes (max diff %d)", file, bad, nb, maxd);
        s_total_bytes_compared += (int)nb;
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItem(c, "resize")) {
            int w = cJSON_GetObjectItem(r, "width")->valueint, h = cJSON_GetObjectItem(r, "height")->valueint;
            nr_image_t *exp = s_decode(cJSON_GetObjectItem(r, "expected")->valuestring);
            cr_assert_eq(exp->width, w);
            cr_assert_eq(exp->height, h);
            unsigned char *out = malloc((size_t)w * h * 3);
            /* Resize PIL's own decode, so the resize is checked on its own. */
            cr_assert_eq(nr_preprocess_resize(ref->data, ref->width, ref->height, out, w, h, NR_RESAMPLE_BILINEAR), 0);
            bad = s_diff(out, exp->data, (size_t)w * h * 3, &maxd);
            cr_expect_eq(bad, 0, "%s -> %dx%d: resize differs from PIL in %zu of %d bytes (max diff %d)", file, w, h,
                         bad, w * h * 3, maxd);
            free(out);
            nr_image_destroy(&exp);
            n_resizes++;
        }
        nr_image_destroy(&img);
        nr_image_destroy(&ref);
        n_cases++;
    }
    cr_assert_geq(n_cases, 30);
    cr_log_info("%d images decoded and %d resizes compared bit-exact with PIL", n_cases, n_resizes);
    cJSON_Delete(m);
}

Test(image, identity_resize_is_a_copy) {
    nr_image_t *img = s_decode("coffee_224x224.png");
    unsigned char *out = malloc(224 * 224 * 3);
    cr_assert_eq(nr_preprocess_resize(img->data, 224, 224, out, 224, 224, NR_RESAMPLE_BILINEAR), 0);
    cr_assert_eq(memcmp(out, img->data, 224 * 224 * 3), 0);
    free(out);
    nr_image_destroy(&img);
}

Test(image, raw_uint8_resize_matches_pil) {
    nr_image_t *img = s_decode("chelsea_317x211.jpg");
    size_t n;
    unsigned char *exp = (unsigned char *)s_load("resize_chelsea_317x211.64x64.u8", &n);
    cr_assert_eq(n, 64 * 64 * 3);
    unsigned char out[64 * 64 * 3];
    cr_assert_eq(nr_preprocess_resize(img->data, img->width, img->height, out, 64, 64, NR_RESAMPLE_BILINEAR), 0);
    int maxd;
    size_t bad = s_diff(out, exp, n, &maxd);
    cr_assert_eq(bad, 0, "decode+resize differs from PIL in %zu bytes (max %d)", bad, maxd);
    free(exp);
    nr_image_destroy(&img);
}

Test(image, bicubic_resize_matches_pil) {
    nr_image_t *img = s_decode("chelsea_317x211.jpg");
    nr_image_t *exp = s_decode("chelsea_317x211.224x224.bicubic.png");
    unsigned char *out = malloc(224 * 224 * 3);
    cr_assert_eq(nr_preprocess_resize(img->data, img->width, img->height, out, 224, 224, NR_RESAMPLE_BICUBIC), 0);
    int maxd;
    size_t bad = s_diff(out, exp->data, 224 * 224 * 3, &maxd);
    cr_assert_eq(bad, 0, "bicubic differs from PIL in %zu bytes (max %d)", bad, maxd);
    free(out);
    nr_image_destroy(&img);
    nr_image_destroy(&exp);
}

Test(image, normalize_matches_transformers) {
    cJSON *m = s_manifest();
    const cJSON *e;
    int checked = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(m, "normalize")) {
        nr_image_t *img = s_decode(cJSON_GetObjectItem(e, "source")->valuestring);
        nr_preprocess_params_t p = nr_preprocess_default_params();
        p.width = cJSON_GetObjectItem(e, "width")->valueint;
        p.height = cJSON_GetObjectItem(e, "height")->valueint;
        for (int c = 0; c < 3; c++) {
            p.mean[c] = (float)cJSON_GetArrayItem(cJSON_GetObjectItem(e, "mean"), c)->valuedouble;
            p.std[c] = (float)cJSON_GetArrayItem(cJSON_GetObjectItem(e, "std"), c)->valuedouble;
        }
        size_t n, count = (size_t)3 * p.width * p.height;
        float *exp = (float *)s_load(cJSON_GetObjectItem(e, "expected")->valuestring, &n);
        cr_assert_eq(n, count * sizeof(float));
        float *out = malloc(count * sizeof(float));
        cr_assert_eq(nr_preprocess_image(img, &p, out, count - 1), NR_EINVAL, "small buffer must be refused");
        cr_assert_eq(nr_preprocess_image(img, &p, out, count), 0);
        double maxd = 0;
        for (size_t i = 0; i < count; i++) maxd = fmax(maxd, fabs((double)out[i] - exp[i]));
        cr_assert_leq(maxd, 1e-6, "normalized output differs by %g", maxd);
        cr_log_info("normalize %s: max abs diff %g", cJSON_GetObjectItem(e, "expected")->valuestring, maxd);
        free(out);
        free(exp);
        nr_image_destroy(&img);
        checked++;
    }
    cr_assert_eq(checked, 2);
    cJSON_Delete(m);
}

Test(image, bad_inputs_are_rejected_with_their_code) {
    cJSON *m = s_manifest();
    const cJSON *b;
    int n_bad = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(m, "bad")) {
        const char *file = cJSON_GetObjectItem(b, "file")->valuestring;
        int want = nr_errcode(cJSON_GetObjectItem(b, "error")->valuestring);
        size_t n;
        char *d = s_load(file, &n);
        char err[256] = "";
        nr_image_t *img = (nr_image_t *)0x1;
        int rc = nr_image_decode(d, n, NULL, &img, err, sizeof(err));
        cr_expect_eq(rc, want, "%s: got %d (%s) want %d", file, rc, err, want);
        cr_expect_null(img, "%s: output must stay NULL on error", file);
        cr_expect_gt(strlen(err), 10, "%s: message too short: '%s'", file, err);
        cr_log_info("%s -> %s: %s", file, nr_errname(rc), err);
        free(d);
        n_bad++;
    }
    cr_assert_geq(n_bad, 16);
    cJSON_Delete(m);
}

Test(image, corrupt_exif_is_ignored) {
    cJSON *m = s_manifest();
    const cJSON *ce = cJSON_GetObjectItem(m, "corrupt_exif");
    nr_image_t *ref = s_decode(cJSON_GetObjectItem(ce, "reference")->valuestring);
    const cJSON *f;
    int n = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(ce, "files")) {
        nr_image_t *img = s_decode(f->valuestring);
        cr_assert_eq(img->orientation, 1, "%s", f->valuestring);
        cr_assert_eq(img->width, ref->width);
        cr_assert_eq(img->height, ref->height);
        cr_assert_eq(memcmp(img->data, ref->data, (size_t)ref->width * ref->height * 3), 0, "%s", f->valuestring);
        nr_image_destroy(&img);
        n++;
    }
    cr_assert_geq(n, 5);
    nr_image_destroy(&ref);
    cJSON_Delete(m);
}

Test(image, exif_can_be_turned_off) {
    size_t n;
    char *d = s_load("exif_o6.jpg", &n);
    nr_image_params_t p = nr_image_default_params();
    p.apply_exif = 0;
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, NULL, 0), 0);
    cr_assert_eq(img->width, 48);
    cr_assert_eq(img->height, 32);
    cr_assert_eq(img->orientation, 1);
    nr_image_destroy(&img);
    free(d);
}

Test(image, limits_are_configurable) {
    size_t n;
    char *d = s_load("chelsea_317x211.jpg", &n);
    char err[256];
    nr_image_t *img = NULL;
    nr_image_params_t p = nr_image_default_params();
    cr_assert_eq(p.max_pixels, 50000000u);
    p.max_pixels = 317 * 211 - 1;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof(err)), NR_EIMAGEBOMB);
    cr_assert_null(img);
    cr_assert_not_null(strstr(err, "317x211"), "message names the size: %s", err);
    p.max_pixels = 317 * 211;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof(err)), 0, "%s", err);
    nr_image_destroy(&img);
    p = nr_image_default_params();
    p.max_bytes = n - 1;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof(err)), NR_ETOOBIG);
    cr_assert_null(img);
    cr_assert_eq(nr_image_decode(d, n, NULL, NULL, err, sizeof(err)), NR_EINVAL);
    free(d);
}

/* Every prefix of small JPEG, PNG and WebP files is refused, never a crash
 * (run under ASan in the sanitizer build). */
Test(image, every_truncation_is_an_error) {
    const char *files[] = {"exif_none.jpg", "chelsea_5x5.png", "exif_webp_o3.webp", "rocket_cmyk.jpg",
                           "coffee_palette4bit.png", "astronaut_rgba_webp.webp", "astronaut_interlaced.png"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t n;
        char *d = s_load(files[f], &n);
        for (size_t len = 0; len < n; len++) {
            nr_image_t *img = NULL;
            int rc = nr_image_decode(d, len, NULL, &img, NULL, 0);
            cr_assert(rc == NR_EIMAGE || rc == NR_ENOTIMAGE, "%s cut to %zu of %zu bytes: rc %d", files[f], len, n, rc);
            cr_assert_null(img);
        }
        free(d);
    }
}

/* Random byte corruption: any result is fine except a crash or a leak. */
Test(image, random_corruption_never_crashes) {
    const char *files[] = {"exif_o5.jpg", "chelsea_5x5.png", "exif_webp_o3.webp", "chelsea_palette.png",
                           "rocket_120x90_lossless.webp"};
    unsigned seed = 12345;
    int ok = 0, failed = 0;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t n;
        char *d = s_load(files[f], &n);
        char *c = malloc(n);
        for (int iter = 0; iter < 150; iter++) {
            memcpy(c, d, n);
            int flips = 1 + iter % 8;
            for (int k = 0; k < flips; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = 2 + (seed >> 8) % (n - 2);
                seed = seed * 1103515245u + 12345u;
                c[pos] = (char)(seed >> 16);
            }
            nr_image_t *img = NULL;
            int rc = nr_image_decode(c, n, NULL, &img, NULL, 0);
            if (rc == 0) {
                cr_assert_not_null(img);
                ok++;
            } else {
                cr_assert_null(img);
                failed++;
            }
            nr_image_destroy(&img);
        }
        free(c);
        free(d);
    }
    cr_log_info("corrupted inputs: %d decoded, %d refused", ok, failed);
}

Test(image, orient_all_eight) {
    /* 3x2 image, pixel value = index; checked against the definitions. */
    for (int o = 1; o <= 8; o++) {
        nr_image_t *img = nr_image_new(3, 2);
        for (int i = 0; i < 6; i++) img->data[3 * i] = (unsigned char)i;
        cr_assert_eq(nr_image_orient(img, o), 0);
        static const int want[9][6] = {{0},
                                       {0, 1, 2, 3, 4, 5},  /* identity */
                                       {2, 1, 0, 5, 4, 3},  /* mirror */
                                       {5, 4, 3, 2, 1, 0},  /* 180 */
                                       {3, 4, 5, 0, 1, 2},  /* flip */
                                       {0, 3, 1, 4, 2, 5},  /* transpose */
                                       {3, 0, 4, 1, 5, 2},  /* 90 cw */
                                       {5, 2, 4, 1, 3, 0},  /* transverse */
                                       {2, 5, 1, 4, 0, 3}}; /* 90 ccw */
        cr_assert_eq(img->width, o >= 5 ? 2 : 3);
        for (int i = 0; i < 6; i++) cr_assert_eq(img->data[3 * i], want[o][i], "orientation %d pixel %d", o, i);
        nr_image_destroy(&img);
    }
    nr_image_t *img = nr_image_new(2, 2);
    cr_assert_eq(nr_image_orient(img, 9), NR_EINVAL);
    cr_assert_eq(nr_image_orient(img, 0), NR_EINVAL);
    nr_image_destroy(&img);
    cr_assert_null(nr_image_new(0, 5));
}

Test(preprocess, config_file) {
    char path[] = "/tmp/nr-preproc-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *json = "{\"do_normalize\": true, \"do_rescale\": true, \"do_resize\": true,"
                       " \"image_mean\": [0.485, 0.456, 0.406], \"image_std\": [0.229, 0.224, 0.225],"
                       " \"resample\": 3, \"rescale_factor\": 0.00392156862745098,"
                       " \"size\": {\"height\": 384, \"width\": 320}, \"image_processor_type\": \"ViTImageProcessor\"}";
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    nr_preprocess_params_t p = nr_preprocess_default_params();
    char err[256] = "";
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(p.width, 320);
    cr_assert_eq(p.height, 384);
    cr_assert_eq(p.resample, NR_RESAMPLE_BICUBIC);
    cr_assert_float_eq(p.mean[1], 0.456f, 1e-7);
    cr_assert_float_eq(p.std[2], 0.225f, 1e-7);
    /* Corrupt and missing files are NR_EMODEL with the file named. */
    FILE *f = fopen(path, "w");
    fputs("{\"size\": ", f);
    fclose(f);
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof(err)), NR_EMODEL);
    cr_assert_not_null(strstr(err, path), "%s", err);
    f = fopen(path, "w");
    fputs("{\"resample\": 0}", f);
    fclose(f);
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof(err)), NR_EMODEL);
    unlink(path);
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof(err)), NR_EMODEL);
    cr_assert_not_null(strstr(err, path), "%s", err);
    /* The tiny checkpoint's file, when the fixtures are there. */
    const char *src = getenv("NR_SOURCE_DIR");
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "%s/tests/fixtures/vit-gpt2-tiny/preprocessor_config.json", src ? src : ".");
    if (access(cfg, R_OK) == 0) {
        p = nr_preprocess_default_params();
        cr_assert_eq(nr_preprocess_load_config(cfg, &p, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(p.width, 224);
        cr_assert_eq(p.height, 224);
        cr_assert_eq(p.resample, NR_RESAMPLE_BILINEAR);
        cr_assert_float_eq(p.mean[0], 0.5f, 1e-7);
    }
}

Test(preprocess, bad_arguments) {
    unsigned char src[12] = {0}, dst[12];
    cr_assert_eq(nr_preprocess_resize(src, 2, 2, dst, 0, 2, NR_RESAMPLE_BILINEAR), NR_EINVAL);
    cr_assert_eq(nr_preprocess_resize(src, 2, 2, dst, 2, 2, NR_RESAMPLE_NEAREST), NR_EINVAL);
    cr_assert_eq(nr_preprocess_resize(NULL, 2, 2, dst, 2, 2, NR_RESAMPLE_BILINEAR), NR_EINVAL);
    cr_assert_eq(nr_preprocess_image(NULL, NULL, NULL, 0), NR_EINVAL);
}

/* End to end on the full photos behind the checkpoint fixture: decode +
 * preprocess (with the checkpoint's preprocessor_config.json) must equal
 * batch.pixel_values in tests/fixtures/vit-gpt2-tiny-reference.safetensors
 * (written by make_fixtures.py with PIL). The photos are not committed:
 * this runs when python3-skimage's data folder is found ($NR_SKIMAGE_DATA or
 * /usr/lib/python3/dist-packages/skimage/data) and is skipped otherwise. */
Test(image, full_photos_match_checkpoint_reference) {
    const char *dirs[] = {getenv("NR_SKIMAGE_DATA"), "/usr/lib/python3/dist-packages/skimage/data"};
    const char *dir = NULL;
    char path[4096];
    for (int i = 0; i < 2 && !dir; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof(path), "%s/chelsea.png", dirs[i]);
        if (access(path, R_OK) == 0) dir = dirs[i];
    }
    if (!dir) cr_skip_test("skimage photos not found (set NR_SKIMAGE_DATA)");
    const char *src = getenv("NR_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/fixtures/vit-gpt2-tiny-reference.safetensors", src ? src : ".");
    size_t n;
    char *st = nr_harness_read_file(path, &n);
    if (!st) cr_skip_test("no %s", path);
    uint64_t hlen;
    memcpy(&hlen, st, 8);
    cr_assert_lt(hlen, n);
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, st + 8, hlen);
    hdr[hlen] = '\0';
    cJSON *h = cJSON_Parse(hdr);
    free(hdr);
    const cJSON *pv = cJSON_GetObjectItem(h, "batch.pixel_values");
    cr_assert_not_null(pv);
    size_t off = (size_t)cJSON_GetArrayItem(cJSON_GetObjectItem(pv, "data_offsets"), 0)->valuedouble;
    const float *ref = (const float *)(st + 8 + hlen + off);
    nr_preprocess_params_t p = nr_preprocess_default_params();
    char err[512] = "", cfg[4096];
    snprintf(cfg, sizeof(cfg), "%s/tests/fixtures/vit-gpt2-tiny/preprocessor_config.json", src ? src : ".");
    cr_assert_eq(nr_preprocess_load_config(cfg, &p, err, sizeof(err)), 0, "%s", err);
    const char *photos[] = {"chelsea.png", "coffee.png", "astronaut.png"};
    const size_t count = (size_t)3 * 224 * 224;
    float *out = malloc(count * sizeof(float));
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, photos[i]);
        size_t len;
        char *d = nr_harness_read_file(path, &len);
        cr_assert_not_null(d);
        nr_image_t *img = NULL;
        cr_assert_eq(nr_image_decode(d, len, NULL, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nr_preprocess_image(img, &p, out, count), 0);
        double maxd = 0;
        for (size_t k = 0; k < count; k++) {
            float r;
            memcpy(&r, ref + i * count + k, sizeof(r));
            maxd = fmax(maxd, fabs((double)out[k] - r));
        }
        cr_expect_leq(maxd, 1e-6, "%s: max abs diff %g", photos[i], maxd);
        cr_log_info("%s (%dx%d): max abs diff %g", photos[i], img->width, img->height, maxd);
        nr_image_destroy(&img);
        free(d);
    }
    free(out);
    cJSON_Delete(h);
    free(st);
}
