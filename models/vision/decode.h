/* Internal to the image module (models/image.c and models/vision/decode_*.c):
 * the decoder of each format behind nr_image_decode, and the helpers they
 * share. Not for use outside models/. */
#ifndef NR_MODELS_VISION_DECODE_H
#define NR_MODELS_VISION_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "models/image.h"

/* Rejects zero sizes and anything over p->max_pixels (NR_EIMAGE,
 * NR_EIMAGEBOMB with a message naming the size); called with a header's
 * dimensions before any pixel buffer exists. */
int nr_image_check_size(const char *fmt, uint64_t w, uint64_t h, const nr_image_params_t *p, char *err,
                        size_t errlen);

/* Turns img upright by orientation 1..8 (1 = as stored) and records the
 * orientation and the format. Returns 0 or a negative code with a message. */
int nr_image_finish(nr_image_t *img, int orientation, nr_image_format_t format, char *err, size_t errlen);

/* PIL's cmyk2rgb for one channel: ink c (0 = none) under black k. */
static inline unsigned char nr_image_cmyk_channel(int c, int k) {
    int nk = 255 - k;
    int t = c * nk + 128;
    t = ((t >> 8) + t) >> 8;
    int o = nk - t;
    return (unsigned char)(o < 0 ? 0 : o > 255 ? 255 : o);
}

/* Each format's decoder: same contract as nr_image_decode, with the input
 * already known to start with the format's magic bytes and within
 * max_bytes. */
int nr_image_decode_tiff(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                         char *err, size_t errlen);
int nr_image_decode_gif(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                        char *err, size_t errlen);
int nr_image_decode_bmp(const unsigned char *data, size_t size, const nr_image_params_t *p, nr_image_t **out,
                        char *err, size_t errlen);
int nr_image_decode_heif(const unsigned char *data, size_t size, nr_image_format_t format,
                         const nr_image_params_t *p, nr_image_t **out, char *err, size_t errlen);

/* Pages (directories) in a TIFF, at most NR_IMAGE_MAX_PAGES. */
int nr_image_tiff_pages(const unsigned char *data, size_t size, const nr_image_params_t *p, int *count, char *err,
                        size_t errlen);

#endif
