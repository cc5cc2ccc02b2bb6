/* The body shared by the per-format image fuzzers (fuzz_tiff.c, fuzz_gif.c,
 * fuzz_bmp.c, fuzz_heif.c): inputs that do not sniff as the target's
 * format are skipped, so each fuzzer stays on its own decoder. Decoding
 * must fail with a documented code, or give an image of its stated size
 * within the pixel limit (lowered to 4 Mpx so that large legitimate
 * images do not slow the run; the limit itself is unit-tested). For TIFF
 * the page count and the second page are exercised too. */
#ifndef NR_FUZZ_IMAGE_FORMAT_H
#define NR_FUZZ_IMAGE_FORMAT_H

#include "common/error.h"
#include "models/image.h"

#include <stdint.h>
#include <stdlib.h>

static void s_fuzz_decode(const uint8_t *data, size_t size, int page) {
    nr_image_params_t params = nr_image_default_params();
    params.max_pixels = (uint64_t)1 << 22;
    params.page = page;
    nr_image_t *img = NULL;
    char err[512];
    int rc = nr_image_decode(data, size, &params, &img, err, sizeof err);
    if (rc != 0) {
        if (img) abort();
        if (rc != NR_ENOTIMAGE && rc != NR_EIMAGE && rc != NR_EIMAGEBOMB && rc != NR_ETOOBIG && rc != NR_ENOMEM)
            abort(); /* an undocumented code */
        return;
    }
    if (!img || img->width <= 0 || img->height <= 0 || !img->data ||
        (uint64_t)img->width * (uint64_t)img->height > params.max_pixels)
        abort();
    unsigned sum = 0; /* touch every byte: ASan checks the buffer's size */
    for (size_t i = 0; i < (size_t)img->width * img->height * 3; i++) sum += img->data[i];
    (void)sum;
    nr_image_destroy(&img);
}

static int s_fuzz_format(const uint8_t *data, size_t size, nr_image_format_t want) {
    nr_image_format_t f = nr_image_detect(data, size);
    if (f != want && !(want == NR_IMAGE_HEIC && f == NR_IMAGE_AVIF)) return 0;
    s_fuzz_decode(data, size, 0);
    if (f == NR_IMAGE_TIFF) {
        int pages = 0;
        if (nr_image_page_count(data, size, NULL, &pages, NULL, 0) == 0) {
            if (pages < 1 || pages > NR_IMAGE_MAX_PAGES) abort();
            if (pages > 1) s_fuzz_decode(data, size, 1);
        }
    }
    return 0;
}

#endif
