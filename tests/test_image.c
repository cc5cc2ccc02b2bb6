/* Tests for models/image (decode, EXIF, conversions, bad input) and
 * models/preprocess (PIL-exact resize, normalize, the CLIP and BLIP image
 * processors), against the fixtures written by tests/fixtures/make_images.py
 * and make_processor_cases.py with Debian's PIL. */
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
    cr_assert_eq(nr_image_detect("GIF89a", 6), NR_IMAGE_GIF);
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
            /* not fmax: Debian 12's aarch64 gcc 12.2 crashes on this
             * reduction (internal compiler error in the vectorizer) */
            const double e = fabs((double)out[k] - r);
            maxd = e > maxd ? e : maxd;
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

/* ---- CLIP / BLIP image processors against transformers ---------------------
 * tests/fixtures/make_processor_cases.py runs an independent Python
 * reference of transformers' slow CLIPImageProcessor / BlipImageProcessor
 * (PIL + numpy) over the configs in tests/fixtures/processors/ and real
 * photo crops of odd sizes; processor_reference.safetensors holds, per case,
 * the uint8 image after resize + centre crop, per config the rescale +
 * normalize of every uint8 value, and for one case the final floats. */

typedef struct {
    char *file; /* the whole .safetensors */
    cJSON *header;
    const unsigned char *data; /* start of the tensor data */
} s_st_t;

static void s_st_open(s_st_t *st, const char *path) {
    size_t n;
    st->file = nr_harness_read_file(path, &n);
    cr_assert_not_null(st->file, "cannot read %s", path);
    uint64_t hlen;
    memcpy(&hlen, st->file, 8);
    cr_assert_lt(hlen, n);
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, st->file + 8, hlen);
    hdr[hlen] = '\0';
    st->header = cJSON_Parse(hdr);
    free(hdr);
    cr_assert_not_null(st->header);
    st->data = (const unsigned char *)st->file + 8 + hlen;
}

/* The bytes of tensor `name`; checks its dtype and element count. */
static const unsigned char *s_st_get(const s_st_t *st, const char *name, const char *dtype, size_t count) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(st->header, name);
    cr_assert_not_null(t, "no tensor %s", name);
    cr_assert_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, dtype, "%s", name);
    const cJSON *offs = cJSON_GetObjectItem(t, "data_offsets");
    size_t a = (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
    cr_assert_eq(b - a, count * (strcmp(dtype, "U8") == 0 ? 1 : 4), "%s: size", name);
    return st->data + a;
}

static void s_fixtures_path(char *out, size_t n, const char *rel) {
    const char *src = getenv("NR_SOURCE_DIR");
    snprintf(out, n, "%s/tests/fixtures/%s", src ? src : ".", rel);
}

Test(processor, matches_transformers_reference) {
    char path[4096], err[512] = "";
    s_fixtures_path(path, sizeof path, "processor_cases.json");
    char *text = nr_harness_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    cJSON *m = cJSON_Parse(text);
    free(text);
    s_st_t st;
    s_fixtures_path(path, sizeof path, "processor_reference.safetensors");
    s_st_open(&st, path);
    const cJSON *c;
    int ncases = 0, nfloat = 0;
    size_t bytes = 0, floats = 0, pad_bytes = 0;
    double max_err = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "cases")) {
        const char *cfg = cJSON_GetObjectItem(c, "config")->valuestring;
        const char *image = cJSON_GetObjectItem(c, "image")->valuestring;
        const int want_w = cJSON_GetObjectItem(c, "width")->valueint;
        const int want_h = cJSON_GetObjectItem(c, "height")->valueint;
        nr_preprocess_params_t p = nr_preprocess_default_params();
        s_fixtures_path(path, sizeof path, cfg);
        cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof err), 0, "%s", err);
        size_t len;
        s_fixtures_path(path, sizeof path, image);
        char *bytes_in = nr_harness_read_file(path, &len);
        cr_assert_not_null(bytes_in, "%s", path);
        nr_image_t *img = NULL;
        cr_assert_eq(nr_image_decode(bytes_in, len, NULL, &img, err, sizeof err), 0, "%s: %s", image, err);
        free(bytes_in);
        cr_assert_eq(img->width, cJSON_GetObjectItem(c, "input_width")->valueint, "%s", image);
        cr_assert_eq(img->height, cJSON_GetObjectItem(c, "input_height")->valueint, "%s", image);
        int w = 0, h = 0;
        cr_assert_eq(nr_preprocess_output_size(&p, img->width, img->height, &w, &h), 0);
        cr_assert(w == want_w && h == want_h, "%s %s: output %dx%d, want %dx%d", cfg, image, w, h, want_w, want_h);
        const size_t n = (size_t)w * h * 3;
        /* uint8 after resize + crop: bit-exact. */
        const unsigned char *ref = s_st_get(&st, cJSON_GetObjectItem(c, "u8")->valuestring, "U8", n);
        unsigned char *u8 = malloc(n);
        int ow = 0, oh = 0;
        cr_assert_eq(nr_preprocess_image_u8(img, &p, u8, n - 1, &ow, &oh), NR_EINVAL, "small buffer must be refused");
        cr_assert_eq(nr_preprocess_image_u8(img, &p, u8, n, &ow, &oh), 0);
        cr_assert(ow == w && oh == h);
        int maxdiff;
        size_t bad = s_diff(u8, ref, n, &maxdiff);
        cr_expect_eq(bad, 0, "%s %s: %zu of %zu bytes differ (max %d)", cfg, image, bad, n, maxdiff);
        for (size_t i = 0; i < n; i++) pad_bytes += ref[i] == 0;
        bytes += n;
        /* Floats: every value is the reference's rescale + normalize of its
         * uint8 (table), and, where stored, the reference's pixel_values. */
        const float *table = (const float *)s_st_get(&st, cJSON_GetObjectItem(c, "table")->valuestring, "F32", 3 * 256);
        const cJSON *f32 = cJSON_GetObjectItem(c, "f32");
        const float *fref = f32 ? (const float *)s_st_get(&st, f32->valuestring, "F32", n) : NULL;
        float *out = malloc(n * sizeof(float));
        cr_assert_eq(nr_preprocess_image(img, &p, out, n - 1), NR_EINVAL);
        cr_assert_eq(nr_preprocess_image(img, &p, out, n), 0);
        const size_t plane = (size_t)w * h;
        double case_err = 0;
        for (int ch = 0; ch < 3; ch++) {
            for (size_t i = 0; i < plane; i++) {
                float t, got = out[ch * plane + i];
                memcpy(&t, table + ch * 256 + ref[3 * i + ch], sizeof t);
                case_err = fmax(case_err, fabs((double)got - t));
                if (fref) {
                    float r;
                    memcpy(&r, fref + ch * plane + i, sizeof r);
                    case_err = fmax(case_err, fabs((double)got - r));
                }
            }
        }
        cr_expect_leq(case_err, 1e-6, "%s %s: max abs float diff %g", cfg, image, case_err);
        max_err = fmax(max_err, case_err);
        floats += n;
        nfloat += fref != NULL;
        free(out);
        free(u8);
        nr_image_destroy(&img);
        ncases++;
    }
    cr_assert_geq(ncases, 30);
    cr_assert_geq(nfloat, 1);
    cr_assert_gt(pad_bytes, 0, "the padding cases are missing");
    cr_log_info("processors: %d cases, %zu uint8 values bit-exact, %zu floats, max abs float diff %g", ncases,
                bytes, floats, max_err);
    cJSON_Delete(st.header);
    free(st.file);
    cJSON_Delete(m);
}

/* Writes `json` to a temporary file and loads it over the defaults. */
static int s_load_json(const char *json, nr_preprocess_params_t *p, char *err, size_t errlen) {
    char path[] = "/tmp/nr-proc-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    *p = nr_preprocess_default_params();
    int rc = nr_preprocess_load_config(path, p, err, errlen);
    unlink(path);
    return rc;
}

Test(processor, config_classes) {
    char path[4096], err[512] = "";
    nr_preprocess_params_t p = nr_preprocess_default_params();
    int w, h;
    /* GIT (microsoft/git-base-coco): CLIPImageProcessor, 224 shortest edge, 224 crop. */
    s_fixtures_path(path, sizeof path, "processors/git-base-coco.json");
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.processor, NR_PROCESSOR_CLIP);
    cr_assert(p.shortest_edge == 224 && p.do_center_crop && p.crop_width == 224 && p.crop_height == 224);
    cr_assert_eq(p.resample, NR_RESAMPLE_BICUBIC);
    cr_assert_float_eq(p.mean[0], 0.48145466f, 0);
    cr_assert_float_eq(p.std[2], 0.27577711f, 0);
    cr_assert_eq(nr_preprocess_fixed_size(&p, &w, &h), 0);
    cr_assert(w == 224 && h == 224);
    cr_assert_eq(nr_preprocess_output_size(&p, 1000, 20, &w, &h), 0);
    cr_assert(w == 224 && h == 224);
    p.do_center_crop = 0; /* then the size follows the image */
    cr_assert_eq(nr_preprocess_fixed_size(&p, &w, &h), NR_EINVAL);
    cr_assert_eq(nr_preprocess_output_size(&p, 1000, 20, &w, &h), 0);
    cr_assert(w == 11200 && h == 224, "%dx%d", w, h);
    cr_assert_eq(nr_preprocess_output_size(&p, 223, 225, &w, &h), 0);
    cr_assert(w == 224 && h == 226, "%dx%d", w, h); /* int(224 * 225 / 223) */
    cr_assert_eq(nr_preprocess_output_size(&p, 317, 211, &w, &h), 0);
    cr_assert(w == 336 && h == 224, "%dx%d", w, h);
    cr_assert_eq(nr_preprocess_output_size(&p, 0, 211, &w, &h), NR_EINVAL);
    /* BLIP-base: 384 square, no crop. */
    s_fixtures_path(path, sizeof path, "processors/blip-base.json");
    cr_assert_eq(nr_preprocess_load_config(path, &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.processor, NR_PROCESSOR_BLIP);
    cr_assert(p.shortest_edge == 0 && !p.do_center_crop && p.width == 384 && p.height == 384);
    cr_assert_eq(nr_preprocess_fixed_size(&p, &w, &h), 0);
    cr_assert(w == 384 && h == 384);
    /* Missing keys take the named class's defaults, not the caller's. */
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"BlipImageProcessor\"}", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.width == 384 && p.height == 384 && p.resample == NR_RESAMPLE_BICUBIC);
    cr_assert_float_eq(p.mean[1], 0.4578275f, 0);
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"CLIPImageProcessor\"}", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.shortest_edge == 224 && p.do_center_crop && p.crop_width == 224 && p.resample == NR_RESAMPLE_BICUBIC);
    /* Legacy CLIPFeatureExtractor: an int size is the shortest edge, an int crop a square. */
    cr_assert_eq(s_load_json("{\"feature_extractor_type\": \"CLIPFeatureExtractor\", \"size\": 64, \"crop_size\": 56}",
                             &p, err, sizeof err),
                 0, "%s", err);
    cr_assert(p.processor == NR_PROCESSOR_CLIP && p.shortest_edge == 64 && p.crop_width == 56 && p.crop_height == 56);
    /* image_processor_type wins over feature_extractor_type. */
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"BlipImageProcessor\","
                             " \"feature_extractor_type\": \"CLIPFeatureExtractor\", \"size\": 50}",
                             &p, err, sizeof err),
                 0, "%s", err);
    cr_assert(p.processor == NR_PROCESSOR_BLIP && p.width == 50 && p.height == 50 && p.shortest_edge == 0);
    /* CLIP with {height, width}: a fixed resize, then the crop. */
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"height\": 30,"
                             " \"width\": 40}, \"crop_size\": [20, 10], \"do_convert_rgb\": false}",
                             &p, err, sizeof err),
                 0, "%s", err);
    cr_assert(p.shortest_edge == 0 && p.width == 40 && p.height == 30 && p.crop_width == 10 && p.crop_height == 20);
    cr_assert_eq(p.do_convert_rgb, 0);
    /* ViT and BLIP never crop and refuse a shortest edge, as transformers. */
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"ViTImageProcessor\", \"do_center_crop\": true,"
                             " \"crop_size\": 100}",
                             &p, err, sizeof err),
                 0, "%s", err);
    cr_assert(!p.do_center_crop && p.width == 224 && p.resample == NR_RESAMPLE_BILINEAR);
    cr_assert_float_eq(p.mean[0], 0.5f, 0);
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"ViTImageProcessor\", \"size\": {\"shortest_edge\": 9}}",
                             &p, err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(s_load_json("{\"image_processor_type\": \"BlipImageProcessor\", \"size\": {\"shortest_edge\": 9}}",
                             &p, err, sizeof err),
                 NR_EMODEL);
    cr_assert_not_null(strstr(err, "size"), "%s", err);
    /* Bad sizes. */
    const char *bad[] = {"{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 0}}",
                         ("{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 224,"
                          " \"longest_edge\": 500}}"),
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"crop_size\": {\"shortest_edge\": 9}}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"crop_size\": [1, 2, 3]}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"crop_size\": 99999}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": 22.5}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"do_center_crop\": 1}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"do_convert_rgb\": \"yes\"}",
                         "{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"height\": 9}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nr_preprocess_params_t q = nr_preprocess_default_params();
        q.width = 77;
        char qp[] = "/tmp/nr-proc-XXXXXX";
        int fd = mkstemp(qp);
        cr_assert_eq(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
        close(fd);
        cr_expect_eq(nr_preprocess_load_config(qp, &q, err, sizeof err), NR_EMODEL, "%s", bad[i]);
        cr_expect_eq(q.width, 77, "params changed on error: %s", bad[i]);
        unlink(qp);
    }
    /* The defaults (no class named) are ViT's, and unchanged. */
    p = nr_preprocess_default_params();
    cr_assert(p.processor == NR_PROCESSOR_OTHER && p.width == 224 && !p.do_center_crop && p.shortest_edge == 0);
    cr_assert_eq(nr_preprocess_fixed_size(&p, &w, &h), 0);
    p.do_resize = 0;
    cr_assert_eq(nr_preprocess_fixed_size(&p, &w, &h), NR_EINVAL);
}

/* The crop window computed alone equals the full resize cropped, on random
 * pixels and every filter, including crops that pad; and a 1 x 40000 image
 * under GIT's settings (a 224 x 8960000 resize) costs only the crop. */
Test(processor, window_equals_full_resize_then_crop) {
    unsigned seed = 12345;
    const nr_resample_t filters[] = {NR_RESAMPLE_BILINEAR, NR_RESAMPLE_BICUBIC, NR_RESAMPLE_LANCZOS,
                                     NR_RESAMPLE_BOX, NR_RESAMPLE_HAMMING};
    const int sizes[][5] = {/* sw, sh, shortest_edge, crop_w, crop_h */
                            {37, 151, 100, 64, 64},  {151, 37, 23, 31, 17}, {300, 7, 9, 15, 9},
                            {13, 11, 40, 45, 41},    {64, 64, 64, 65, 63},  {5, 800, 3, 3, 100},
                            {211, 317, 224, 224, 224}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int sw = sizes[s][0], sh = sizes[s][1];
        nr_image_t *img = nr_image_new(sw, sh);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++)
            img->data[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
        for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; fi++) {
            nr_preprocess_params_t p = nr_preprocess_class_params(NR_PROCESSOR_CLIP);
            p.shortest_edge = sizes[s][2];
            p.crop_width = sizes[s][3];
            p.crop_height = sizes[s][4];
            p.resample = filters[fi];
            p.do_center_crop = 0;
            int rw, rh, w, h;
            cr_assert_eq(nr_preprocess_output_size(&p, sw, sh, &rw, &rh), 0);
            unsigned char *full = malloc((size_t)rw * rh * 3);
            cr_assert_eq(nr_preprocess_resize(img->data, sw, sh, full, rw, rh, p.resample), 0);
            p.do_center_crop = 1;
            cr_assert_eq(nr_preprocess_output_size(&p, sw, sh, &w, &h), 0);
            unsigned char *got = malloc((size_t)w * h * 3);
            cr_assert_eq(nr_preprocess_image_u8(img, &p, got, (size_t)w * h * 3, NULL, NULL), 0);
            /* Python's floor division; zeros outside the resized image. */
            const int top = (int)floor((rh - h) / 2.0), left = (int)floor((rw - w) / 2.0);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++) {
                        const int yy = y + top, xx = x + left;
                        const unsigned char want =
                            (yy >= 0 && yy < rh && xx >= 0 && xx < rw) ? full[((size_t)yy * rw + xx) * 3 + c] : 0;
                        cr_assert_eq(got[((size_t)y * w + x) * 3 + c], want, "%dx%d filter %d at %d,%d", sw, sh,
                                     (int)p.resample, x, y);
                    }
            free(full);
            free(got);
        }
        nr_image_destroy(&img);
    }
    nr_image_t *thin = nr_image_new(1, 40000);
    for (size_t i = 0; i < (size_t)40000 * 3; i++) thin->data[i] = (unsigned char)(i * 7);
    nr_preprocess_params_t p = nr_preprocess_class_params(NR_PROCESSOR_CLIP);
    int w, h;
    cr_assert_eq(nr_preprocess_output_size(&p, 1, 40000, &w, &h), 0);
    cr_assert(w == 224 && h == 224);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    cr_assert_eq(nr_preprocess_image(thin, &p, out, 3 * 224 * 224), 0);
    free(out);
    nr_image_destroy(&thin);
}
