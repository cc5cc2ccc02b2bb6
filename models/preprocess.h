/* Image preprocessing for vision encoders, as transformers' slow (PIL)
 * image processors do it: ViTImageProcessor (resize to a fixed size),
 * CLIPImageProcessor (shortest-edge resize + centre crop) and
 * BlipImageProcessor (square resize). PIL-exact resize of 8-bit RGB
 * (Image.resize with BILINEAR/BICUBIC/...: separable, antialiased when
 * shrinking, fixed-point 8-bit passes), centre crop (zero padding where the
 * crop is larger than the image), then rescale, normalize, CHW float. */
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

/* The transformers image processor class a config names (its
 * image_processor_type, else feature_extractor_type). */
typedef enum {
    NR_PROCESSOR_OTHER = 0, /* none or another class: ViT-like keys over the caller's params */
    NR_PROCESSOR_VIT,       /* ViTImageProcessor / ViTFeatureExtractor */
    NR_PROCESSOR_CLIP,      /* CLIPImageProcessor / CLIPFeatureExtractor (GIT) */
    NR_PROCESSOR_BLIP       /* BlipImageProcessor (BLIP) */
} nr_processor_t;

typedef struct {
    nr_processor_t processor; /* the class the settings came from (informational) */
    int width, height;        /* fixed resize size, when shortest_edge is 0 (default 224 x 224) */
    int shortest_edge;        /* > 0: resize so the shorter side is this long, the longer
                                 int(shortest_edge * long / short) (default 0: fixed size) */
    nr_resample_t resample;   /* default NR_RESAMPLE_BILINEAR */
    int do_resize;            /* default 1 */
    int do_center_crop;       /* default 0 */
    int crop_width, crop_height; /* centre crop size, when do_center_crop (default 224 x 224) */
    int do_rescale;           /* default 1 */
    double rescale_factor;    /* default 1/255 */
    int do_normalize;         /* default 1 */
    float mean[3];            /* default 0.5, 0.5, 0.5 */
    float std[3];             /* default 0.5, 0.5, 0.5 */
    int do_convert_rgb;       /* read from the config (default 1); images are always RGB
                                 here, as PIL's convert("RGB") makes them (models/image.h) */
} nr_preprocess_params_t;

/* ViTImageProcessor's defaults (224 x 224 bilinear, mean/std 0.5). */
nr_preprocess_params_t nr_preprocess_default_params(void);

/* The defaults of a processor class, as its transformers constructor sets
 * them: VIT (and OTHER) as above; CLIP: shortest_edge 224, bicubic, centre
 * crop 224 x 224, OpenAI CLIP mean/std; BLIP: 384 x 384 bicubic, OpenAI
 * CLIP mean/std, no crop. */
nr_preprocess_params_t nr_preprocess_class_params(nr_processor_t processor);

/* Reads a Hugging Face preprocessor_config.json. When it names ViT, CLIP or
 * BLIP (image_processor_type, else feature_extractor_type; the *Fast
 * variants too, computed the slow way), missing keys take that class's
 * defaults and the keys mean what that class makes of them; otherwise they
 * are read over *params. Keys: size (int, [h, w], {height, width} or
 * {shortest_edge}, which ViT and BLIP refuse as transformers does; an int is
 * a square except for CLIP, where it is the shortest edge), crop_size (int,
 * [h, w] or {height, width}) and do_center_crop (ignored by ViT and BLIP,
 * which never crop), resample, do_resize, do_rescale, rescale_factor, do_normalize,
 * image_mean, image_std, do_convert_rgb. Returns 0, or NR_EMODEL (file
 * missing, not JSON, bad or unsupported values) with the file named in err;
 * *params is unchanged on error. */
int nr_preprocess_load_config(const char *path, nr_preprocess_params_t *params, char *err, size_t errlen);

/* The size (w, h) of what nr_preprocess_image makes of an in_w x in_h
 * image: the crop size when cropping, else the resize size (which follows
 * the image's aspect ratio with shortest_edge), else the image's size.
 * Returns 0 or NR_EINVAL (bad arguments or sizes, a side over 2^31-1). */
int nr_preprocess_output_size(const nr_preprocess_params_t *params, int in_w, int in_h, int *out_w, int *out_h);

/* The output size when it does not depend on the input image (centre
 * crop, or a fixed-size resize): what a caller checks against the
 * encoder's image_size. Returns 0, or NR_EINVAL when the output size
 * follows the input (shortest-edge resize without a crop, or no resize
 * and no crop) or params is bad. */
int nr_preprocess_fixed_size(const nr_preprocess_params_t *params, int *out_w, int *out_h);

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

/* The 8-bit part of the pipeline: resize (when do_resize) and centre crop
 * (when do_center_crop), writing (h, w, 3) bytes to out, with (w, h) from
 * nr_preprocess_output_size; out_w/out_h may be NULL. Only the cropped
 * window of the resized image is computed, so a very long thin image costs
 * no more than the crop. Returns 0, NR_EINVAL (bad arguments, out_count
 * under 3*w*h) or NR_ENOMEM. */
int nr_preprocess_image_u8(const nr_image_t *img, const nr_preprocess_params_t *params, unsigned char *out,
                           size_t out_count, int *out_w, int *out_h);

/* Whole pipeline: nr_preprocess_image_u8, then rescale and normalize into
 * 3*h*w CHW floats at out (out_count must be at least that), with (w, h)
 * from nr_preprocess_output_size. Returns 0, NR_EINVAL (bad arguments,
 * small buffer) or NR_ENOMEM. */
int nr_preprocess_image(const nr_image_t *img, const nr_preprocess_params_t *params, float *out,
                        size_t out_count);

#endif
