/* Unit tests of models/vision/thumbnail: the size rule, the pixels
 * against a plain area average written here (not the resizer the module
 * uses), the JPEG it makes read back by the image decoder, and the byte
 * bound on an image that does not compress (noise). */
#include "common/error.h"
#include "models/image.h"
#include "models/vision/thumbnail.h"
#include "tests/area_diff.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* A test card: gradients and 40-px blocks, so a wrong scale, offset or
 * channel order shows. */
static nr_image_t *s_card(int w, int h) {
    nr_image_t *img = nr_image_new(w, h);
    cr_assert_not_null(img);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = img->data + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 255 / (w - 1));
            p[1] = (unsigned char)(y * 255 / (h - 1));
            p[2] = ((x / 40 + y / 40) & 1) ? 220 : 30;
        }
    return img;
}

static nr_image_t *s_decode(const unsigned char *jpeg, size_t len) {
    nr_image_t *img = NULL;
    char err[256] = "";
    cr_assert_eq(nr_image_decode(jpeg, len, NULL, &img, err, sizeof err), 0, "%s", err);
    cr_assert_eq(img->format, NR_IMAGE_JPEG);
    return img;
}

Test(thumbnail, size_rule) {
    int w, h;
    nr_thumbnail_size(1000, 500, 256, &w, &h);
    cr_assert(w == 256 && h == 128, "%dx%d", w, h);
    nr_thumbnail_size(600, 900, 256, &w, &h);
    cr_assert(w == 171 && h == 256, "%dx%d", w, h); /* 170.67 rounds up */
    nr_thumbnail_size(100, 60, 256, &w, &h);
    cr_assert(w == 100 && h == 60, "a small image keeps its size: %dx%d", w, h);
    nr_thumbnail_size(5000, 3, 256, &w, &h);
    cr_assert(w == 256 && h == 1, "%dx%d", w, h);
}

Test(thumbnail, downscaled_card_matches_an_area_average) {
    nr_image_t *src = s_card(900, 600);
    unsigned char *jpeg = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(nr_thumbnail_jpeg(src, 256, NR_THUMBNAIL_BYTES, &jpeg, &len, err, sizeof err), 0, "%s", err);
    cr_assert(len > 100 && len <= NR_THUMBNAIL_BYTES, "%zu bytes", len);
    cr_assert(jpeg[0] == 0xFF && jpeg[1] == 0xD8 && jpeg[len - 2] == 0xFF && jpeg[len - 1] == 0xD9);
    nr_image_t *t = s_decode(jpeg, len);
    cr_assert(t->width == 256 && t->height == 171, "%dx%d", t->width, t->height);
    double d = nr_test_area_diff(src, t);
    cr_assert_lt(d, 5.0, "mean difference %.2f from the area average", d);
    /* A wrong picture is far off: the card flipped. */
    nr_image_t *flipped = nr_image_new(900, 600);
    for (int y = 0; y < 600; y++)
        memcpy(flipped->data + (size_t)y * 900 * 3, src->data + (size_t)(599 - y) * 900 * 3, 900 * 3);
    cr_assert_gt(nr_test_area_diff(flipped, t), 20.0);
    nr_image_destroy(&flipped);
    nr_image_destroy(&t);
    free(jpeg);
    nr_image_destroy(&src);
}

Test(thumbnail, small_image_keeps_its_size) {
    nr_image_t *src = s_card(120, 80);
    unsigned char *jpeg = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(nr_thumbnail_jpeg(src, 256, NR_THUMBNAIL_BYTES, &jpeg, &len, err, sizeof err), 0, "%s", err);
    nr_image_t *t = s_decode(jpeg, len);
    cr_assert(t->width == 120 && t->height == 80, "%dx%d", t->width, t->height);
    cr_assert_lt(nr_test_area_diff(src, t), 4.0);
    nr_image_destroy(&t);
    free(jpeg);
    nr_image_destroy(&src);
}

/* Noise does not compress: quality, then size, step down until it fits. */
Test(thumbnail, noise_fits_the_byte_bound) {
    nr_image_t *src = nr_image_new(256, 256); /* already thumbnail-sized: nothing averages it out */
    unsigned seed = 12345;
    for (size_t i = 0; i < (size_t)256 * 256 * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        src->data[i] = (unsigned char)(seed >> 16);
    }
    const size_t bounds[] = {NR_THUMBNAIL_BYTES, 8192};
    for (size_t b = 0; b < 2; b++) {
        unsigned char *jpeg = NULL;
        size_t len = 0;
        char err[256] = "";
        cr_assert_eq(nr_thumbnail_jpeg(src, 256, bounds[b], &jpeg, &len, err, sizeof err), 0, "%s", err);
        cr_assert_leq(len, bounds[b]);
        nr_image_t *t = s_decode(jpeg, len);
        cr_assert(t->width == t->height && t->width <= 256 && t->width >= 16, "%dx%d", t->width, t->height);
        if (b == 1) cr_assert_lt(t->width, 256, "8 KiB of noise cannot be 256 px");
        nr_image_destroy(&t);
        free(jpeg);
    }
    unsigned char *jpeg = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(nr_thumbnail_jpeg(src, 256, 100, &jpeg, &len, err, sizeof err), NR_EINVAL);
    cr_assert_null(jpeg);
    cr_assert(strstr(err, "too few"), "%s", err);
    nr_image_destroy(&src);
}

Test(thumbnail, bad_arguments) {
    unsigned char *jpeg = NULL;
    size_t len = 0;
    char err[128] = "";
    cr_assert_eq(nr_thumbnail_jpeg(NULL, 256, 1000, &jpeg, &len, err, sizeof err), NR_EINVAL);
    nr_image_t *src = s_card(10, 10);
    cr_assert_eq(nr_thumbnail_jpeg(src, 0, 1000, &jpeg, &len, err, sizeof err), NR_EINVAL);
    nr_image_destroy(&src);
}
