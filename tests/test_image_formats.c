/* Tests for the TIFF, GIF, BMP, HEIC and AVIF decoders behind
 * nr_image_decode (models/vision/decode_*.c), against the fixtures written
 * by tests/fixtures/make_image_formats.py: the expected pixels come from
 * PIL 9.4 (TIFF, GIF, BMP) and from libheif's heif-convert read by PIL
 * (HEIC, AVIF). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/image.h"
#include "tests/harness.h"

static const char *s_path(const char *name) {
    const char *src = getenv("NR_SOURCE_DIR");
    static char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/image_formats/%s", src ? src : ".", name);
    return path;
}

static char *s_load(const char *name, size_t *size) {
    char *d = nr_harness_read_file(s_path(name), size);
    cr_assert_not_null(d, "cannot read fixture %s (NR_SOURCE_DIR set?)", s_path(name));
    return d;
}

static cJSON *s_manifest(void) {
    char *t = s_load("cases.json", NULL);
    cJSON *m = cJSON_Parse(t);
    free(t);
    cr_assert_not_null(m, "cases.json does not parse");
    return m;
}

/* 1 for a HEIC/AVIF fixture in a build without libheif (NR_HEIF=OFF). */
static int s_no_heif(const char *name) {
#ifdef NR_HAVE_HEIF
    (void)name;
    return 0;
#else
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".heic") || !strcmp(dot, ".avif"));
#endif
}

static nr_image_t *s_decode_page(const char *name, int page) {
    size_t n;
    char *d = s_load(name, &n);
    char err[256] = "";
    nr_image_t *img = NULL;
    nr_image_params_t p = nr_image_default_params();
    p.page = page;
    int rc = nr_image_decode(d, n, &p, &img, err, sizeof(err));
    free(d);
    cr_assert_eq(rc, 0, "%s page %d: decode failed: %d %s", name, page, rc, err);
    cr_assert_not_null(img);
    return img;
}

Test(image_formats, detect_by_magic_bytes) {
    cr_assert_eq(nr_image_detect("II*\0\x08\0\0\0", 8), NR_IMAGE_TIFF);
    cr_assert_eq(nr_image_detect("MM\0*\0\0\0\x08", 8), NR_IMAGE_TIFF);
    cr_assert_eq(nr_image_detect("II+\0\x08\0\0\0", 8), NR_IMAGE_TIFF); /* BigTIFF */
    cr_assert_eq(nr_image_detect("GIF87a", 6), NR_IMAGE_GIF);
    cr_assert_eq(nr_image_detect("GIF89a", 6), NR_IMAGE_GIF);
    cr_assert_eq(nr_image_detect("BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0", 18), NR_IMAGE_BMP);
    cr_assert_eq(nr_image_detect("BMW is a car, not a bitmap", 26), NR_IMAGE_UNKNOWN);
    cr_assert_eq(nr_image_detect("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24), NR_IMAGE_HEIC);
    cr_assert_eq(nr_image_detect("\0\0\0\x18" "ftypavif\0\0\0\0mif1miaf", 24), NR_IMAGE_AVIF);
    cr_assert_eq(nr_image_detect("\0\0\0\x18" "ftypmif1\0\0\0\0mif1avif", 24), NR_IMAGE_AVIF);
    cr_assert_eq(nr_image_detect("\0\0\0\x18" "ftypisom\0\0\0\0isomiso2", 24), NR_IMAGE_UNKNOWN); /* MP4 */
    const char *names[] = {"tiff", "gif", "bmp", "heic", "avif"};
    const nr_image_format_t fmts[] = {NR_IMAGE_TIFF, NR_IMAGE_GIF, NR_IMAGE_BMP, NR_IMAGE_HEIC, NR_IMAGE_AVIF};
    for (int i = 0; i < 5; i++) cr_assert_str_eq(nr_image_format_name(fmts[i]), names[i]);
}

/* Every case equals its reference decode (PIL's, or heif-convert's for
 * HEIF), bit for bit unless the case lists a tolerance. */
Test(image_formats, decode_matches_reference) {
    cJSON *m = s_manifest();
    int n_cases = 0, per_fmt[6] = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "cases")) {
        const char *file = cJSON_GetObjectItem(c, "file")->valuestring;
        if (s_no_heif(file)) continue;
        int page = cJSON_GetObjectItem(c, "page")->valueint;
        int tol = cJSON_GetObjectItem(c, "tolerance")->valueint;
        nr_image_t *img = s_decode_page(file, page);
        nr_image_t *ref = s_decode_page(cJSON_GetObjectItem(c, "decoded")->valuestring, 0);
        cr_assert_str_eq(nr_image_format_name(img->format), cJSON_GetObjectItem(c, "format")->valuestring, "%s",
                         file);
        cr_assert_eq(img->width, cJSON_GetObjectItem(c, "width")->valueint, "%s p%d: width %d", file, page,
                     img->width);
        cr_assert_eq(img->height, cJSON_GetObjectItem(c, "height")->valueint, "%s p%d: height", file, page);
        cr_assert_eq(img->orientation, cJSON_GetObjectItem(c, "orientation")->valueint, "%s: orientation", file);
        size_t nb = (size_t)img->width * img->height * 3, bad = 0;
        int maxd = 0;
        for (size_t i = 0; i < nb; i++) {
            int d = abs((int)img->data[i] - (int)ref->data[i]);
            if (d > tol) bad++;
            if (d > maxd) maxd = d;
        }
        cr_expect_eq(bad, 0, "%s page %d: %zu of %zu bytes differ from the reference by more than %d (max %d)",
                     file, page, bad, nb, tol, maxd);
        per_fmt[img->format - NR_IMAGE_TIFF + 1]++;
        nr_image_destroy(&img);
        nr_image_destroy(&ref);
        n_cases++;
    }
    cr_assert_geq(n_cases, s_no_heif("x.heic") ? 39 : 43);
    for (int f = 1; f <= 5; f++)
        cr_assert(per_fmt[f] >= 2 || s_no_heif(f == 4 ? "x.heic" : "x.avif"), "format %d has %d cases", f, per_fmt[f]);
    cr_log_info("%d TIFF/GIF/BMP/HEIC/AVIF cases match their reference decode", n_cases);
    cJSON_Delete(m);
}

Test(image_formats, bad_inputs_are_rejected_with_their_code) {
    cJSON *m = s_manifest();
    const cJSON *b;
    int n_bad = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(m, "bad")) {
        const char *file = cJSON_GetObjectItem(b, "file")->valuestring;
        if (s_no_heif(file)) continue;
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
    cr_assert_geq(n_bad, s_no_heif("x.heic") ? 13 : 18);
    cJSON_Delete(m);
}

Test(image_formats, messages_name_the_problem) {
    const struct {
        const char *file, *needle;
    } want[] = {{"bad_rle8.bmp", "RLE"},        {"bomb_100000x100000.tif", "100000x100000"},
                {"bad_float.tif", "floating"},  {"bomb_65535x65535.gif", "65535x65535"},
                {"bad_header_only.gif", "no image"}, {"bomb_60000x60000.heic", "60000x60000"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (s_no_heif(want[i].file)) continue;
        size_t n;
        char *d = s_load(want[i].file, &n);
        char err[256] = "";
        nr_image_t *img = NULL;
        cr_assert_lt(nr_image_decode(d, n, NULL, &img, err, sizeof err), 0);
        cr_expect_not_null(strstr(err, want[i].needle), "%s: '%s' lacks '%s'", want[i].file, err, want[i].needle);
        free(d);
    }
}

Test(image_formats, pages) {
    size_t n;
    char *d = s_load("tiff_multipage.tif", &n);
    int count = 0;
    char err[256] = "";
    cr_assert_eq(nr_image_page_count(d, n, NULL, &count, err, sizeof err), 0, "%s", err);
    cr_assert_eq(count, 3);
    nr_image_params_t p = nr_image_default_params();
    nr_image_t *img = NULL;
    p.page = 3;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), NR_EIMAGE);
    cr_assert_not_null(strstr(err, "no page 3"), "%s", err);
    cr_assert_null(img);
    p.page = -1;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), NR_EINVAL);
    free(d);
    const char *single[] = {"tiff_strips.tif", "gif_animated.gif", "bmp_24.bmp", "heic_photo.heic",
                            "avif_photo.avif"};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        if (s_no_heif(single[i])) continue;
        d = s_load(single[i], &n);
        cr_assert_eq(nr_image_page_count(d, n, NULL, &count, err, sizeof err), 0, "%s: %s", single[i], err);
        cr_assert_eq(count, 1, "%s: %d pages", single[i], count);
        p.page = 1;
        cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), NR_EIMAGE, "%s", single[i]);
        free(d);
    }
    d = s_load("bad_truncated_header.tif", &n);
    cr_assert_eq(nr_image_page_count(d, n, NULL, &count, err, sizeof err), NR_EIMAGE);
    free(d);
}

/* The pixel limit holds for each format, checked before decoding. */
Test(image_formats, pixel_limit_per_format) {
    const char *files[] = {"tiff_tiles.tif", "gif_offset.gif", "bmp_4.bmp", "heic_photo.heic", "avif_alpha.avif"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (s_no_heif(files[i])) continue;
        nr_image_t *ok = s_decode_page(files[i], 0);
        uint64_t px = (uint64_t)ok->width * ok->height;
        nr_image_destroy(&ok);
        size_t n;
        char *d = s_load(files[i], &n);
        nr_image_params_t p = nr_image_default_params();
        p.max_pixels = px - 1;
        nr_image_t *img = NULL;
        char err[256] = "";
        cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), NR_EIMAGEBOMB, "%s: %s", files[i], err);
        cr_assert_null(img);
        p.max_pixels = px;
        cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), 0, "%s: %s", files[i], err);
        nr_image_destroy(&img);
        free(d);
    }
}

/* Every prefix is refused, or, where only trailing bytes the decoder
 * does not need were cut (a TIFF directory's tail after the pixels, a
 * GIF's trailer), decodes to exactly the full
 * file's pixels: a cut never yields invented pixels. HEIF every 5th
 * prefix: each try starts a codec. */
Test(image_formats, every_truncation_is_an_error) {
    const struct {
        const char *file;
        size_t step;
    } files[] = {{"tiff_tiles.tif", 1},  {"tiff_strips.tif", 3}, {"tiff_jpeg.tif", 3}, {"gif_interlaced.gif", 1},
                 {"bmp_4.bmp", 1},      {"bmp_565_bitfields.bmp", 2}, {"heic_odd.heic", 5}, {"avif_alpha.avif", 5}};
    int decoded = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        if (s_no_heif(files[f].file)) continue;
        size_t n;
        char *d = s_load(files[f].file, &n);
        nr_image_t *full = s_decode_page(files[f].file, 0);
        for (size_t len = 0; len < n; len += files[f].step) {
            nr_image_t *img = NULL;
            int rc = nr_image_decode(d, len, NULL, &img, NULL, 0);
            if (rc == 0) {
                cr_assert(img->width == full->width && img->height == full->height &&
                              !memcmp(img->data, full->data, (size_t)full->width * full->height * 3),
                          "%s cut to %zu of %zu bytes decodes to other pixels", files[f].file, len, n);
                cr_assert_geq(len + 600, n, "%s cut to %zu of %zu bytes decodes", files[f].file, len, n);
                nr_image_destroy(&img);
                decoded++;
                continue;
            }
            cr_assert(rc == NR_EIMAGE || rc == NR_ENOTIMAGE, "%s cut to %zu of %zu bytes: rc %d", files[f].file, len,
                      n, rc);
            cr_assert_null(img);
        }
        nr_image_destroy(&full);
        free(d);
    }
    cr_log_info("%d prefixes missed only unneeded trailing bytes and decoded whole", decoded);
}

/* Random byte corruption: any result but a crash or a leak (ASan build). */
Test(image_formats, random_corruption_never_crashes) {
    const char *files[] = {"tiff_planar_tiles.tif", "tiff_palette4.tif", "tiff_rgb_lzw.tif", "gif_transparent.gif",
                           "bmp_32_v5_bitfields_topdown.bmp", "bmp_os2_8.bmp", "heic_odd.heic", "avif_photo.avif"};
    unsigned seed = 4242;
    int ok = 0, failed = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        if (s_no_heif(files[f])) continue;
        size_t n;
        char *d = s_load(files[f], &n);
        char *c = malloc(n);
        for (int iter = 0; iter < 60; iter++) {
            memcpy(c, d, n);
            for (int k = 0; k < 1 + iter % 6; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = 8 + (seed >> 8) % (n - 8);
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
                cr_assert(rc == NR_EIMAGE || rc == NR_EIMAGEBOMB || rc == NR_ENOTIMAGE || rc == NR_ENOMEM, "%s: rc %d", files[f], rc);
                failed++;
            }
            nr_image_destroy(&img);
        }
        free(c);
        free(d);
    }
    cr_log_info("corrupted inputs: %d decoded, %d refused", ok, failed);
}

Test(image_formats, tiff_orientation_can_be_turned_off) {
    size_t n;
    char *d = s_load("tiff_orient6.tif", &n);
    nr_image_params_t p = nr_image_default_params();
    p.apply_exif = 0;
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, NULL, 0), 0);
    nr_image_t *plain = s_decode_page("tiff_strips.tif", 0); /* same pixels, no tag */
    cr_assert_eq(img->orientation, 1);
    cr_assert_eq(img->width, plain->width);
    cr_assert_eq(memcmp(img->data, plain->data, (size_t)img->width * img->height * 3), 0);
    nr_image_destroy(&img);
    nr_image_destroy(&plain);
    free(d);
}

#ifdef NR_HAVE_HEIF
/* Found by fuzz_heif: a 1.4 kB HEIC whose ispe says 47x35 but whose grid
 * descriptor says 12032x8960; libheif 1.15 allocated 323 MB for it and
 * decoded it. It is a bomb at the default limit; at a 4 Mpx limit
 * libheif's side limit (2 x 2048 + 256) stops it before that allocation
 * (fuzz_heif runs with -malloc_limit_mb=128 clean). */
Test(image_formats, heif_grid_larger_than_ispe_is_a_bomb) {
    const char *src = getenv("NR_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/seeds/heif/grid_12032x8960_ispe_47x35.heic", src ? src : ".");
    size_t n;
    char *d = nr_harness_read_file(path, &n);
    cr_assert_not_null(d, "%s", path);
    char err[256] = "";
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(d, n, NULL, &img, err, sizeof err), NR_EIMAGEBOMB, "%s", err);
    cr_assert_null(img);
    cr_assert_not_null(strstr(err, "12032x8960"), "%s", err);
    nr_image_params_t p = nr_image_default_params();
    p.max_pixels = (uint64_t)1 << 22;
    cr_assert_eq(nr_image_decode(d, n, &p, &img, err, sizeof err), NR_EIMAGEBOMB, "%s", err);
    cr_assert_not_null(strstr(err, "Security limit"), "libheif's limit stops it: %s", err);
    free(d);
}
#endif

#ifndef NR_HAVE_HEIF
/* Built with NR_HEIF=OFF: HEIC and AVIF are refused, saying why. */
Test(image_formats, heif_refused_without_libheif) {
    size_t n;
    char *d = s_load("heic_photo.heic", &n);
    char err[256] = "";
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(d, n, NULL, &img, err, sizeof err), NR_ENOTIMAGE);
    cr_assert_not_null(strstr(err, "NR_HEIF=OFF"), "%s", err);
    free(d);
}
#endif
