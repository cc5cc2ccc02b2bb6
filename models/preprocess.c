/* Preprocessing: PIL-exact resize of 8-bit RGB, centre crop, then rescale,
 * normalize and CHW float layout as transformers' slow (PIL) image
 * processors: ViTImageProcessor, CLIPImageProcessor, BlipImageProcessor.
 *
 * The resize follows the algorithm of Pillow's libImaging/Resample.c: for
 * each axis, per output pixel, a window of filter taps centred on
 * (i + 0.5) * scale whose support grows with the scale when shrinking
 * (antialiasing); taps normalised to sum 1, then converted to fixed point
 * with 22 fractional bits. Horizontal pass first (only over the source rows
 * the vertical pass needs), rounded and clipped to uint8, then vertical.
 * Every output pixel depends only on its own taps, so a window of the
 * resized image (the centre crop) is computed alone, bit for bit the same. */
#include "models/preprocess.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/config.h"

#define S_PRECISION_BITS (32 - 8 - 2)

/* transformers' image_utils OPENAI_CLIP_MEAN / OPENAI_CLIP_STD. */
static const double s_clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
static const double s_clip_std[3] = {0.26862954, 0.26130258, 0.27577711};

nr_preprocess_params_t nr_preprocess_default_params(void) {
    nr_preprocess_params_t p;
    memset(&p, 0, sizeof p);
    p.processor = NR_PROCESSOR_OTHER;
    p.width = 224;
    p.height = 224;
    p.shortest_edge = 0;
    p.resample = NR_RESAMPLE_BILINEAR;
    p.do_resize = 1;
    p.do_center_crop = 0;
    p.crop_width = 224;
    p.crop_height = 224;
    p.do_rescale = 1;
    p.rescale_factor = 1.0 / 255.0;
    p.do_normalize = 1;
    for (int c = 0; c < 3; c++) {
        p.mean[c] = 0.5f;
        p.std[c] = 0.5f;
    }
    p.do_convert_rgb = 1;
    return p;
}

nr_preprocess_params_t nr_preprocess_class_params(nr_processor_t processor) {
    nr_preprocess_params_t p = nr_preprocess_default_params();
    p.processor = processor;
    switch (processor) {
    case NR_PROCESSOR_CLIP:
        p.shortest_edge = 224;
        p.resample = NR_RESAMPLE_BICUBIC;
        p.do_center_crop = 1;
        break;
    case NR_PROCESSOR_BLIP:
        p.width = p.height = 384;
        p.resample = NR_RESAMPLE_BICUBIC;
        break;
    default: return p;
    }
    for (int c = 0; c < 3; c++) {
        p.mean[c] = (float)s_clip_mean[c];
        p.std[c] = (float)s_clip_std[c];
    }
    return p;
}

/* ---- filters (PIL's definitions) ------------------------------------------ */

static double s_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double s_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double s_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double s_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double s_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double s_lanczos(double x) { return (-3.0 <= x && x < 3.0) ? s_sinc(x) * s_sinc(x / 3) : 0.0; }

typedef struct {
    double (*fn)(double);
    double support;
} s_filter_t;

static int s_filter_for(nr_resample_t r, s_filter_t *f) {
    switch (r) {
    case NR_RESAMPLE_BOX: *f = (s_filter_t){s_box, 0.5}; return 0;
    case NR_RESAMPLE_BILINEAR: *f = (s_filter_t){s_bilinear, 1.0}; return 0;
    case NR_RESAMPLE_HAMMING: *f = (s_filter_t){s_hamming, 1.0}; return 0;
    case NR_RESAMPLE_BICUBIC: *f = (s_filter_t){s_bicubic, 2.0}; return 0;
    case NR_RESAMPLE_LANCZOS: *f = (s_filter_t){s_lanczos, 3.0}; return 0;
    default: return NR_EINVAL;
    }
}

/* Taps for outputs o0 .. o0+n-1 of one axis resized from in_size to
 * out_size: for window index i, `first[i]` is the first source index and
 * `count[i]` the number of taps, with fixed-point weights at w[i * ksize].
 * Returns ksize (> 0) or a negative code. */
static int s_taps(int in_size, int out_size, int o0, int n_out, const s_filter_t *f, int **first_out,
                  int **count_out, int32_t **w_out) {
    const double scale = (double)(float)in_size / out_size; /* PIL: (double)(in1 - in0) / outSize, floats */
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = f->support * filterscale;
    if (!(support < 1 << 28)) return NR_EINVAL;
    const int ksize = (int)ceil(support) * 2 + 1;
    if ((size_t)n_out > SIZE_MAX / sizeof(double) / (size_t)ksize) return NR_ENOMEM;
    double *k = malloc(sizeof(double) * (size_t)ksize);
    int32_t *w = calloc((size_t)n_out * ksize, sizeof(int32_t));
    int *first = malloc(sizeof(int) * (size_t)n_out);
    int *count = malloc(sizeof(int) * (size_t)n_out);
    if (!k || !w || !first || !count) {
        free(k);
        free(w);
        free(first);
        free(count);
        return NR_ENOMEM;
    }
    const double ss = 1.0 / filterscale;
    for (int i = 0; i < n_out; i++) {
        const double center = (o0 + i + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as PIL */
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        const int n = hi - lo;
        double sum = 0.0;
        for (int x = 0; x < n; x++) {
            k[x] = f->fn((x + lo - center + 0.5) * ss);
            sum += k[x];
        }
        for (int x = 0; x < n; x++) {
            double v = sum != 0.0 ? k[x] / sum : k[x];
            /* Round half away from zero into fixed point. */
            w[(size_t)i * ksize + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << S_PRECISION_BITS))
                                             : (int32_t)(0.5 + v * (1 << S_PRECISION_BITS));
        }
        first[i] = lo;
        count[i] = n > 0 ? n : 0;
    }
    free(k);
    *first_out = first;
    *count_out = count;
    *w_out = w;
    return ksize;
}

static inline unsigned char s_clip8(int32_t v) {
    v >>= S_PRECISION_BITS; /* arithmetic shift: floor, as PIL's lookup index */
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Writes the ww x wh window at (x0, y0) of src (sw x sh) resized to dw x dh
 * into dst (ww x wh, packed). An axis whose size does not change is not
 * filtered (as PIL skips that pass); the window is then a plain copy along
 * it. The window must lie inside dw x dh. */
static int s_resize_window(const unsigned char *src, int sw, int sh, int dw, int dh, int x0, int y0, int ww,
                           int wh, nr_resample_t resample, unsigned char *dst) {
    s_filter_t f;
    if (s_filter_for(resample, &f) < 0) return NR_EINVAL;
    const int need_h = dw != sw, need_v = dh != sh;
    int *hfirst = NULL, *hcount = NULL, *vfirst = NULL, *vcount = NULL;
    int32_t *hw = NULL, *vw = NULL;
    unsigned char *tmp = NULL;
    int rc = 0, hk = 0, vk = 0;
    if (need_h && (hk = s_taps(sw, dw, x0, ww, &f, &hfirst, &hcount, &hw)) < 0) return hk;
    if (need_v && (vk = s_taps(sh, dh, y0, wh, &f, &vfirst, &vcount, &vw)) < 0) {
        rc = vk;
        goto done;
    }
    /* Source rows the vertical pass reads (or the window's rows without one). */
    const int ylo = need_v ? vfirst[0] : y0;
    const int yhi = need_v ? vfirst[wh - 1] + vcount[wh - 1] : y0 + wh;
    const int rows = yhi - ylo;
    const size_t rowbytes = (size_t)ww * 3;
    /* Horizontal pass (or the column copy) into tmp, rows ylo .. yhi-1. */
    tmp = malloc(rowbytes * (size_t)(rows > 0 ? rows : 1));
    if (!tmp) {
        rc = NR_ENOMEM;
        goto done;
    }
    for (int y = 0; y < rows; y++) {
        const unsigned char *s = src + (size_t)(y + ylo) * sw * 3;
        unsigned char *d = tmp + (size_t)y * rowbytes;
        if (!need_h) {
            memcpy(d, s + (size_t)x0 * 3, rowbytes);
            continue;
        }
        for (int x = 0; x < ww; x++) {
            const int32_t *k = hw + (size_t)x * hk;
            const unsigned char *p = s + (size_t)hfirst[x] * 3;
            int32_t a0 = 1 << (S_PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int t = 0; t < hcount[x]; t++) {
                a0 += p[3 * t] * k[t];
                a1 += p[3 * t + 1] * k[t];
                a2 += p[3 * t + 2] * k[t];
            }
            d[3 * x] = s_clip8(a0);
            d[3 * x + 1] = s_clip8(a1);
            d[3 * x + 2] = s_clip8(a2);
        }
    }
    if (!need_v) {
        memcpy(dst, tmp, rowbytes * wh);
        goto done;
    }
    /* Vertical pass. */
    for (int y = 0; y < wh; y++) {
        const int32_t *k = vw + (size_t)y * vk;
        const int r0 = vfirst[y] - ylo;
        unsigned char *d = dst + (size_t)y * rowbytes;
        for (size_t x = 0; x < rowbytes; x += 3) {
            int32_t a0 = 1 << (S_PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int t = 0; t < vcount[y]; t++) {
                const unsigned char *p = tmp + (size_t)(r0 + t) * rowbytes + x;
                a0 += p[0] * k[t];
                a1 += p[1] * k[t];
                a2 += p[2] * k[t];
            }
            d[x] = s_clip8(a0);
            d[x + 1] = s_clip8(a1);
            d[x + 2] = s_clip8(a2);
        }
    }
done:
    free(hfirst);
    free(hcount);
    free(hw);
    free(vfirst);
    free(vcount);
    free(vw);
    free(tmp);
    return rc;
}

int nr_preprocess_resize(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw, int dh,
                         nr_resample_t resample) {
    s_filter_t f;
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0) return NR_EINVAL;
    if (s_filter_for(resample, &f) < 0) return NR_EINVAL;
    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * sh * 3);
        return 0;
    }
    return s_resize_window(src, sw, sh, dw, dh, 0, 0, dw, dh, resample, dst);
}

void nr_preprocess_normalize(const unsigned char *rgb, int w, int h, const nr_preprocess_params_t *params,
                             float *chw) {
    const size_t plane = (size_t)w * h;
    for (int c = 0; c < 3; c++) {
        float *o = chw + c * plane;
        for (size_t i = 0; i < plane; i++) {
            float x = params->do_rescale ? (float)((double)rgb[3 * i + c] * params->rescale_factor)
                                         : (float)rgb[3 * i + c];
            if (params->do_normalize) x = (x - params->mean[c]) / params->std[c];
            o[i] = x;
        }
    }
}

/* Resize size (rw, rh) of an in_w x in_h image, as transformers'
 * get_resize_output_image_size: a fixed size, or with shortest_edge (its
 * default_to_square=False case) the shorter side becomes shortest_edge and
 * the longer int(shortest_edge * long / short), the division in double as
 * Python's true division of two ints. A square counts as width <= height. */
static int s_resize_size(const nr_preprocess_params_t *p, int in_w, int in_h, int *rw, int *rh) {
    if (!p->do_resize) {
        *rw = in_w;
        *rh = in_h;
        return 0;
    }
    if (p->shortest_edge <= 0) {
        if (p->width <= 0 || p->height <= 0) return NR_EINVAL;
        *rw = p->width;
        *rh = p->height;
        return 0;
    }
    const int short_side = in_w <= in_h ? in_w : in_h, long_side = in_w <= in_h ? in_h : in_w;
    const double nl = (double)((int64_t)p->shortest_edge * long_side) / (double)short_side;
    if (!(nl < 2147483648.0) || nl < 1) return NR_EINVAL;
    const int new_long = (int)nl; /* int() truncates */
    if (in_w <= in_h) {
        *rw = p->shortest_edge;
        *rh = new_long;
    } else {
        *rw = new_long;
        *rh = p->shortest_edge;
    }
    return 0;
}

int nr_preprocess_output_size(const nr_preprocess_params_t *params, int in_w, int in_h, int *out_w, int *out_h) {
    int rw, rh;
    if (!params || !out_w || !out_h || in_w <= 0 || in_h <= 0) return NR_EINVAL;
    int rc = s_resize_size(params, in_w, in_h, &rw, &rh);
    if (rc < 0) return rc;
    if (params->do_center_crop) {
        if (params->crop_width <= 0 || params->crop_height <= 0) return NR_EINVAL;
        rw = params->crop_width;
        rh = params->crop_height;
    }
    *out_w = rw;
    *out_h = rh;
    return 0;
}

int nr_preprocess_fixed_size(const nr_preprocess_params_t *params, int *out_w, int *out_h) {
    if (!params || !out_w || !out_h) return NR_EINVAL;
    if (params->do_center_crop) return nr_preprocess_output_size(params, 1, 1, out_w, out_h);
    if (params->do_resize && params->shortest_edge <= 0) return nr_preprocess_output_size(params, 1, 1, out_w, out_h);
    return NR_EINVAL;
}

/* Floor division, as Python's // (for the crop offsets, which may be < 0). */
static int s_floordiv2(int64_t a) { return (int)(a >= 0 ? a / 2 : -((-a + 1) / 2)); }

int nr_preprocess_image_u8(const nr_image_t *img, const nr_preprocess_params_t *params, unsigned char *out,
                           size_t out_count, int *out_w, int *out_h) {
    int rw, rh, w, h;
    if (!img || !img->data || !params || !out || img->width <= 0 || img->height <= 0) return NR_EINVAL;
    if (s_resize_size(params, img->width, img->height, &rw, &rh) < 0) return NR_EINVAL;
    if (nr_preprocess_output_size(params, img->width, img->height, &w, &h) < 0) return NR_EINVAL;
    if (out_count / 3 / (size_t)w < (size_t)h) return NR_EINVAL;
    /* transformers' center_crop: top = (rh - h) // 2, left = (rw - w) // 2;
     * where the crop reaches outside the image (it pads the image with zeros
     * by ceil((h - rh) / 2) first), output pixel (x, y) is resized pixel
     * (x + left, y + top), or 0 outside the image. */
    const int left = params->do_center_crop ? s_floordiv2((int64_t)rw - w) : 0;
    const int top = params->do_center_crop ? s_floordiv2((int64_t)rh - h) : 0;
    const int x0 = left > 0 ? left : 0, y0 = top > 0 ? top : 0; /* window in the resized image */
    const int x1 = (int64_t)left + w < rw ? left + w : rw, y1 = (int64_t)top + h < rh ? top + h : rh;
    const int ww = x1 - x0, wh = y1 - y0;
    const int full = ww == w && wh == h;
    if (!full) memset(out, 0, (size_t)w * h * 3);
    if (out_w) *out_w = w;
    if (out_h) *out_h = h;
    if (ww <= 0 || wh <= 0) return 0;
    unsigned char *win = out;
    if (!full && !(win = malloc((size_t)ww * wh * 3))) return NR_ENOMEM;
    int rc = 0;
    if (rw == img->width && rh == img->height) {
        for (int y = 0; y < wh; y++)
            memcpy(win + (size_t)y * ww * 3, img->data + ((size_t)(y + y0) * img->width + x0) * 3, (size_t)ww * 3);
    } else {
        rc = s_resize_window(img->data, img->width, img->height, rw, rh, x0, y0, ww, wh, params->resample, win);
    }
    if (rc == 0 && !full) {
        const int dx = x0 - left, dy = y0 - top; /* where the window lands in the output */
        for (int y = 0; y < wh; y++)
            memcpy(out + ((size_t)(y + dy) * w + dx) * 3, win + (size_t)y * ww * 3, (size_t)ww * 3);
    }
    if (win != out) free(win);
    return rc;
}

int nr_preprocess_image(const nr_image_t *img, const nr_preprocess_params_t *params, float *out,
                        size_t out_count) {
    int w, h;
    if (!img || !img->data || !params || !out) return NR_EINVAL;
    if (nr_preprocess_output_size(params, img->width, img->height, &w, &h) < 0) return NR_EINVAL;
    if (out_count / 3 / (size_t)w < (size_t)h) return NR_EINVAL;
    const int plain = !params->do_center_crop && (!params->do_resize || (w == img->width && h == img->height));
    if (plain) { /* nothing to resize or crop */
        nr_preprocess_normalize(img->data, w, h, params, out);
        return 0;
    }
    unsigned char *tmp = malloc((size_t)w * h * 3);
    if (!tmp) return NR_ENOMEM;
    int rc = nr_preprocess_image_u8(img, params, tmp, (size_t)w * h * 3, NULL, NULL);
    if (rc == 0) nr_preprocess_normalize(tmp, w, h, params, out);
    free(tmp);
    return rc;
}

/* ---- preprocessor_config.json ---------------------------------------------- */

static int s_json_triple(const cJSON *a, float v[3]) {
    /* Out-of-range doubles are refused before the cast (undefined behaviour). */
    if (cJSON_IsNumber(a)) {
        if (!(fabs(a->valuedouble) <= FLT_MAX)) return -1;
        v[0] = v[1] = v[2] = (float)a->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) return -1;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) <= FLT_MAX)) return -1;
        v[i] = (float)e->valuedouble;
    }
    return 0;
}

static int s_json_flag(const cJSON *root, const char *key, int *out) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!e || cJSON_IsNull(e)) return 0; /* None: the processor's default */
    if (!cJSON_IsBool(e)) return -1;
    *out = cJSON_IsTrue(e);
    return 0;
}

/* The processor class named by image_processor_type (which transformers'
 * AutoImageProcessor reads first), else feature_extractor_type. */
static nr_processor_t s_processor_of(const cJSON *root) {
    static const struct {
        const char *name;
        nr_processor_t p;
    } names[] = {
        {"ViTImageProcessor", NR_PROCESSOR_VIT},   {"ViTImageProcessorFast", NR_PROCESSOR_VIT},
        {"ViTFeatureExtractor", NR_PROCESSOR_VIT}, {"CLIPImageProcessor", NR_PROCESSOR_CLIP},
        {"CLIPImageProcessorFast", NR_PROCESSOR_CLIP}, {"CLIPFeatureExtractor", NR_PROCESSOR_CLIP},
        {"BlipImageProcessor", NR_PROCESSOR_BLIP}, {"BlipImageProcessorFast", NR_PROCESSOR_BLIP},
        /* SiglipImageProcessor (v4.46): BLIP's steps (resize to size, rescale, normalize; no crop) */
        {"SiglipImageProcessor", NR_PROCESSOR_BLIP}, {"SiglipImageProcessorFast", NR_PROCESSOR_BLIP},
    };
    const char *keys[] = {"image_processor_type", "feature_extractor_type"};
    for (int k = 0; k < 2; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!cJSON_IsString(e)) continue;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(e->valuestring, names[i].name) == 0) return names[i].p;
        return NR_PROCESSOR_OTHER;
    }
    return NR_PROCESSOR_OTHER;
}

/* A JSON size side: a whole number in 1 .. 16384. */
static int s_json_side(const cJSON *e, int *out) {
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= 1 && e->valuedouble <= 16384) ||
        e->valuedouble != (double)(int)e->valuedouble)
        return -1;
    *out = (int)e->valuedouble;
    return 0;
}

/* A size as transformers' get_size_dict reads it: an int (a square when
 * square_int, else {shortest_edge}), a 2-list [height, width], or a dict of
 * exactly {height, width} or {shortest_edge} (when shortest_ok). Sets
 * *shortest (0 for a fixed size) and *w, *h. */
static int s_json_size(const cJSON *e, int square_int, int shortest_ok, int *shortest, int *w, int *h) {
    int a, b;
    if (cJSON_IsNumber(e)) {
        if (s_json_side(e, &a) < 0) return -1;
        if (!square_int && !shortest_ok) return -1;
        *shortest = square_int ? 0 : a;
        if (square_int) *w = *h = a;
        return 0;
    }
    if (cJSON_IsArray(e)) {
        if (cJSON_GetArraySize(e) != 2 || s_json_side(cJSON_GetArrayItem(e, 0), &a) < 0 ||
            s_json_side(cJSON_GetArrayItem(e, 1), &b) < 0)
            return -1;
        *shortest = 0;
        *h = a;
        *w = b;
        return 0;
    }
    if (!cJSON_IsObject(e)) return -1;
    const int n = cJSON_GetArraySize(e);
    const cJSON *hh = cJSON_GetObjectItemCaseSensitive(e, "height");
    const cJSON *ww = cJSON_GetObjectItemCaseSensitive(e, "width");
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(e, "shortest_edge");
    if (n == 2 && hh && ww) {
        if (s_json_side(hh, &a) < 0 || s_json_side(ww, &b) < 0) return -1;
        *shortest = 0;
        *h = a;
        *w = b;
        return 0;
    }
    if (n == 1 && se && shortest_ok) {
        if (s_json_side(se, &a) < 0) return -1;
        *shortest = a;
        return 0;
    }
    return -1;
}

int nr_preprocess_load_config(const char *path, nr_preprocess_params_t *params, char *err, size_t errlen) {
    if (!path || !params) return nr_seterr(err, errlen, NR_EINVAL, "nr_preprocess_load_config: bad arguments");
    size_t len = 0;
    char *text = nr_model_read_file(path, (size_t)1 << 20, &len);
    if (!text) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read (missing or over 1 MiB)", path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", path);
    }
    const nr_processor_t proc = s_processor_of(root);
    nr_preprocess_params_t p = proc == NR_PROCESSOR_OTHER ? *params : nr_preprocess_class_params(proc);
    p.processor = proc;
    /* ViT and BLIP resize to {height, width} only and never crop; CLIP reads
     * an int size as the shortest edge. */
    const int crops = proc == NR_PROCESSOR_CLIP || proc == NR_PROCESSOR_OTHER;
    const char *bad = NULL;
    const cJSON *e;
    if ((e = cJSON_GetObjectItemCaseSensitive(root, "size")) &&
        s_json_size(e, proc != NR_PROCESSOR_CLIP, crops, &p.shortest_edge, &p.width, &p.height) < 0)
        bad = crops ? "size (supported: an int, [height, width], {height, width} or {shortest_edge})"
                    : "size (supported: an int, [height, width] or {height, width})";
    if (!bad && crops && (e = cJSON_GetObjectItemCaseSensitive(root, "crop_size"))) {
        int se = 0;
        if (s_json_size(e, 1, 0, &se, &p.crop_width, &p.crop_height) < 0)
            bad = "crop_size (supported: an int, [height, width] or {height, width})";
    }
    if (!bad && crops && s_json_flag(root, "do_center_crop", &p.do_center_crop) < 0) bad = "do_center_crop";
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "resample"))) {
        s_filter_t f;
        if (!cJSON_IsNumber(e) || s_filter_for((nr_resample_t)e->valueint, &f) < 0)
            bad = "resample (supported: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)";
        else
            p.resample = (nr_resample_t)e->valueint;
    }
    if (!bad && s_json_flag(root, "do_resize", &p.do_resize) < 0) bad = "do_resize";
    if (!bad && s_json_flag(root, "do_rescale", &p.do_rescale) < 0) bad = "do_rescale";
    if (!bad && s_json_flag(root, "do_normalize", &p.do_normalize) < 0) bad = "do_normalize";
    if (!bad && s_json_flag(root, "do_convert_rgb", &p.do_convert_rgb) < 0) bad = "do_convert_rgb";
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor"))) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0))
            bad = "rescale_factor";
        else
            p.rescale_factor = e->valuedouble;
    }
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "image_mean")) && s_json_triple(e, p.mean) < 0)
        bad = "image_mean";
    if (!bad && (e = cJSON_GetObjectItemCaseSensitive(root, "image_std"))) {
        if (s_json_triple(e, p.std) < 0 || p.std[0] == 0 || p.std[1] == 0 || p.std[2] == 0) bad = "image_std";
    }
    cJSON_Delete(root);
    if (bad) return nr_seterr(err, errlen, NR_EMODEL, "%s: bad value for %s", path, bad);
    *params = p;
    return 0;
}
