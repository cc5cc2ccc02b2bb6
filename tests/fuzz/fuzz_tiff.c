/* libFuzzer target for the TIFF decoder (models/vision/decode_tiff.c behind
 * nr_image_decode); see fuzz_image_format.h for what must hold. */
#include "tests/fuzz/fuzz_image_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return s_fuzz_format(data, size, NR_IMAGE_TIFF); }
