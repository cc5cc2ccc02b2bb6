/* libFuzzer target for the image decode path (models/image.c +
 * models/preprocess.c): any bytes as an uploaded image. Decoding must fail
 * with one of the documented codes or give an image of the size it says,
 * which then preprocesses to 224x224 without error. The pixel limit is
 * lowered to 4 Mpx so that the fuzzer is not slowed down by legitimately
 * large images (the limit itself is unit-tested). */
#include "common/error.h"
#include "models/image.h"
#include "models/preprocess.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_image_params_t params = nr_image_default_params();
    params.max_pixels = (uint64_t)1 << 22;
    nr_image_t *img = NULL;
    char err[512];
    int rc = nr_image_decode(data, size, &params, &img, err, sizeof err);
    if (rc != 0) {
        if (img) abort();
        if (rc != NR_ENOTIMAGE && rc != NR_EIMAGE && rc != NR_EIMAGEBOMB && rc != NR_ETOOBIG &&
            rc != NR_ENOMEM && rc != NR_EINVAL)
            abort(); /* an undocumented code */
        return 0;
    }
    if (!img || img->width <= 0 || img->height <= 0 || !img->data ||
        (uint64_t)img->width * (uint64_t)img->height > params.max_pixels)
        abort();
    /* Touch every byte (ASan checks the buffer is as large as it says). */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img->width * img->height * 3; i++) sum += img->data[i];
    (void)sum;
    nr_preprocess_params_t pp = nr_preprocess_default_params();
    size_t count = (size_t)3 * pp.width * pp.height;
    float *out = malloc(count * sizeof *out);
    if (out && nr_preprocess_image(img, &pp, out, count) != 0) abort();
    free(out);
    nr_image_destroy(&img);
    nr_image_destroy(&img);
    return 0;
}
