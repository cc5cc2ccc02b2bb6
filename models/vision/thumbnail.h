/* A small JPEG of a decoded image, for galleries (the review page): the
 * image (already EXIF-oriented by nr_image_decode) shrunk so its longer
 * side is at most max_side, by area averaging (PIL's BOX filter through
 * nr_preprocess_resize), then encoded with libjpeg at quality 90, 4:4:4.
 * When that is over max_bytes the quality steps down, then the size halves,
 * until it fits. An image smaller than max_side keeps its size. */
#ifndef NR_MODELS_VISION_THUMBNAIL_H
#define NR_MODELS_VISION_THUMBNAIL_H

#include <stddef.h>

#include "models/image.h"

#define NR_THUMBNAIL_SIDE 256      /* default longer side, pixels */
#define NR_THUMBNAIL_BYTES 65536   /* default (and the broker's) byte bound */

/* The thumbnail's size (w, h) for a sw x sh image: the longer side
 * min(max_side, its own), the other in proportion, rounded, at least 1. */
void nr_thumbnail_size(int sw, int sh, int max_side, int *w, int *h);

/* Makes the thumbnail of img into *jpeg (malloc'd, the caller frees) of
 * *len bytes (<= max_bytes). Returns 0, NR_EINVAL (bad arguments, max_side
 * < 1, max_bytes under what even an 8 x 8 JPEG needs), NR_ENOMEM, or
 * NR_EINTERNAL when libjpeg fails (message in err). */
int nr_thumbnail_jpeg(const nr_image_t *img, int max_side, size_t max_bytes, unsigned char **jpeg, size_t *len,
                      char *err, size_t errlen);

#endif
