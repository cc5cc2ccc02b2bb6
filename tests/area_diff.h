/* The thumbnail tests' reference: a plain area average written here, not
 * the resizer models/vision/thumbnail uses. */
#ifndef NR_TESTS_AREA_DIFF_H
#define NR_TESTS_AREA_DIFF_H

#include "models/image.h"

/* Mean absolute difference per channel value between thumb and src
 * averaged over each thumbnail pixel's footprint. */
double nr_test_area_diff(const nr_image_t *src, const nr_image_t *thumb);

#endif
