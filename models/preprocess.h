/* Image preprocessing for vision encoders: PIL-exact resize of 8-bit RGB
 * (Image.resize with BILINEAR/BICUBIC/...: separable, antialiased when
 * shrinking, fixed-point 8-bit passes), then rescale, normalize, CHW float. */
#ifndef NR_MODELS_PREPROCESS_H
#define NR_MODELS_PREPROCESS_H

#include <stddef.h>

#include "models/image.h"

/* PIL resample filter numbers, as stored in preprocessor_config.json. */
typedef enum {
    NR_RESAMPLE_NEAREST = 0, /* not supported by the resizer */
    NR_RESAMPLE_LANCZOS = 1,
    NR_RESAMPLE_BILINEAR = 2,
    NR_RESAMPLE_BICUBIC = 3,
    NR_RESAMPLE_BOX = 4,
    NR_RESAMPLE_HAMMING = 5
} nr_resample_t;

typedef struct {
    int width, height;      /* output size (default 224 x 224) */
    nr_resample_t resample; /* default NR_RESAMPLE_BILINEAR */
    int do_resize;          /* default 1 */
    int do_rescale;         /* default 1 */
    double rescale_factor;  /* default 1/255 */
    int do_normalize;       /* default 1 */
    float mean[3];          /* default 0.5, 0.5, 0.5 */
    float std[3];           /* default 0.5, 0.5, 0.5 */
} nr_preprocess_params_t;

nr_preprocess_params_t nr_preprocess_default_params(void);

/* Reads a Hugging Face preprocessor_config.json (ViTImageProcessor keys:
 * size (int or {height,width}), resample, do_resize, do_rescale,
 * rescale_factor, do_normalize, image_mean, image_std) over the defaults.
 * Missing keys keep their defaults. Returns 0, or NR_EMODEL (file missing,
 * not JSON, bad values) with the file named in err. */
int nr_preprocess_load_config(const char *path, nr_preprocess_params_t *params, char *err, size_t errlen);

/* Resizes 8-bit RGB (sh, sw, 3) to (dh, dw, 3) exactly as PIL's
 * Image.resize((dw, dh), resample) does on an RGB image (bit-identical to
 * Debian's python3-pil 9.4). Same size is a copy. Returns 0, NR_EINVAL
 * (bad sizes, NEAREST/unknown filter) or NR_ENOMEM. */
int nr_preprocess_resize(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw, int dh,
                         nr_resample_t resample);

/* 8-bit RGB (h, w, 3) -> float CHW (3, h, w): x = u8 * rescale_factor (double,
 * then float), then (x - mean[c]) / std[c] in float, as transformers does. */
void nr_preprocess_normalize(const unsigned char *rgb, int w, int h, const nr_preprocess_params_t *params,
                             float *chw);

/* Whole pipeline: resize `img` to params->width x height (when do_resize),
 * normalize, write 3*height*width floats to out (out_count must be at least
 * that). Returns 0, NR_EINVAL (bad arguments, small buffer) or NR_ENOMEM. */
int nr_preprocess_image(const nr_image_t *img, const nr_preprocess_params_t *params, float *out,
                        size_t out_count);

#endif
